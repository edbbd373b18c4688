"""The results files: a stem claimed once, and JSON, Markdown and PNG written atomically."""

from __future__ import annotations

import json
import re

import pytest

from mlp import files


def disk_full(fd: int) -> None:
    raise OSError(28, "No space left on device")


def test_results_stem_skips_any_taken_name(tmp_path):
    from bench import report

    (tmp_path / "day-cpu.png").write_bytes(b"a chart")  # a run that left only its chart
    (tmp_path / "day-cpu-2.md").write_text("a table")
    stem = report.claim_stem(tmp_path, "day-cpu", {"rows": []})
    assert stem == tmp_path / "day-cpu-3"
    assert json.loads(stem.with_suffix(".json").read_text()) == {"rows": []}
    assert report.claim_stem(tmp_path, "day-cpu", {}) == tmp_path / "day-cpu-4"


def test_results_writes_are_atomic(tmp_path, monkeypatch):
    from bench import report

    path = tmp_path / "results.json"
    report.write_json({"rows": [1]}, path)
    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match=re.escape(f"cannot write {path}: No space left on device")):
        report.write_json({"rows": [1, 2]}, path)
    assert json.loads(path.read_text()) == {"rows": [1]}  # the earlier file, whole
    md = tmp_path / "results.md"
    with pytest.raises(OSError, match=r"cannot write .*results\.md"):
        report.write_text("| table |\n", md)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_plot_is_written_atomically(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from bench import report

    path = tmp_path / "chart.png"
    path.write_bytes(b"an earlier chart")
    rows = [
        {"workload": "tiny", "device": "cpu", "impl": impl, "label": impl, "status": "ok",
         "ratio_to_limit": ratio}
        for impl, ratio in (("limit", 1.0), ("mlp", 1.5))
    ]  # fmt: skip
    machine = {
        "cpu": {"model": "a CPU", "usable_cores": 2}, "blas": {}, "versions": {},
        "date": "2026-11-27",
    }  # fmt: skip
    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*chart\.png: No space left on device"):
        report.plot({"rows": rows, "machine": machine}, path)
    assert path.read_bytes() == b"an earlier chart"
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]
    monkeypatch.undo()
    assert report.plot({"rows": rows, "machine": machine}, path) is None
    assert path.read_bytes().startswith(b"\x89PNG")
