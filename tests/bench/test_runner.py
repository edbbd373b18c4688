"""The file a row's worker hands its result back in (``bench.runner``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import runner


def _worker_writing(text: str):
    """A stand-in for the worker process that leaves ``text`` as its result file."""

    def run_command(command: list[str], timeout: float, **popen: object) -> dict:
        Path(command[-1]).write_text(text)
        return {
            "returncode": -9,
            "wall_seconds": 1.0,
            "child_peak_rss_bytes": 1 << 20,
            "timed_out": True,
            "output_tail": "",
        }

    return run_command


@pytest.mark.parametrize("text", ['{"status": "ok", "epoch_seco', "", "[1, 2]"])
def test_an_unreadable_result_is_that_rows_error(monkeypatch, text):
    monkeypatch.setattr(runner, "run_command", _worker_writing(text))
    result = runner.run_task({"impl": "mlp"}, timeout=1.0)
    assert result["status"] == "error"
    assert "worker's result" in result["reason"]
    assert result["process_peak_rss_bytes"] == 1 << 20


def test_a_written_result_reads_back_and_leaves_no_temporary_file(tmp_path):
    result = {"status": "ok", "epoch_seconds": [0.25, 0.5], "note": "ü"}
    runner.write_result(result, tmp_path / "result.json")
    assert runner.read_result(tmp_path / "result.json") == result
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert json.loads((tmp_path / "result.json").read_text()) == result
