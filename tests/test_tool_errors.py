"""Bad input to the benchmark and the small tools: one line on stderr, never a traceback.

A usage error is ``prog: error: …`` and exit status 2, a runtime failure the same line and 1;
nothing already written is lost.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlp import files

ROOT = Path(__file__).resolve().parent.parent


def run_module(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m argv…`` from the repository root, as a user runs it."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(done: subprocess.CompletedProcess, prog: str, status: int) -> str:
    """The exit status, and stderr as one ``prog: error:`` line; returns that line."""
    assert done.returncode == status, done.stderr + done.stdout
    assert done.stderr.startswith(f"{prog}: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--epochs", "0"],
        ["mlp.cli.download", "cifar"],
        ["mlp.cli.synthetic", "unused-folder", "0", "5"],
        ["bench.ops", "--calls", "0"],
        ["bench.ops", "--device", ""],
        ["bench.ops", "--device", "tpu"],
    ],
)
def test_usage_errors_are_one_line(argv):
    done = run_module(*argv)
    assert_one_line(done, f"python -m {argv[0]}", 2)
    assert "usage:" not in done.stderr and not (ROOT / "unused-folder").exists()


def test_bench_help_still_lists_defaults():
    from bench import cli

    text = cli.build_parser().format_help()
    assert "(default: 3)" in text and "(default: tiny,std,big)" in text


@pytest.mark.parametrize(
    ("folder", "counts", "status", "says"),
    [
        ("", ["5", "5"], 2, "expected a path, got ''"),
        ("afile", ["5", "5"], 1, "it is a file, not a folder"),
        ("afile/sub", ["5", "5"], 1, "Not a directory"),
        ("data", ["99999999999999999999"], 2, "N_TRAIN must be at most 4294967295"),
        ("data", ["5", "-1"], 2, "argument n_test"),
    ],
)
def test_synthetic_bad_input_is_one_line(
    tmp_path, monkeypatch, capsys, folder, counts, status, says
):
    from mlp.cli import synthetic

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("kept\n")
    try:
        code = synthetic.main([folder, *counts])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == status and says in err, err
    assert err.startswith("python -m mlp.cli.synthetic: error: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written here
    assert (tmp_path / "afile").read_text() == "kept\n"


def test_synthetic_unwritable_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """As root a chmod stops nothing, so the file system's refusal is simulated."""
    import mlp.data.synthetic
    from mlp.cli import synthetic

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(mlp.data.synthetic, "write_idx", refuse)
    assert synthetic.main([str(tmp_path / "data"), "5", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m mlp.cli.synthetic: error: cannot write the dataset to ")
    assert err.rstrip().endswith("Permission denied") and err.count("\n") == 1


@pytest.mark.parametrize(
    "bad",
    [
        ["--warmup", "-1"],
        ["--row-timeout", "0"],
        ["--row-timeout", "-1"],
        ["--row-timeout", "nan"],
        ["--row-timeout", "inf"],
        ["--max-extra", "-5"],
        ["--target", "nan"],
        ["--target", "2"],
        ["--target", "0"],
        ["--epochs", "-3"],
        ["--limit-repeats", "0"],
        ["--steps", "x"],
        ["--max-epochs", "0"],
        ["--cpu-steps", "big=-1"],
    ],
)
def test_bench_numbers_are_range_checked(bad, capsys):
    from bench import cli

    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(bad)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and re.search(f"argument {bad[0]}: .*(must be|expected)", err), err
    assert err.startswith("python -m bench: error: ") and err.count("\n") == 1


def test_bench_numbers_in_range_are_accepted():
    from bench import cli

    args = cli.build_parser().parse_args(
        ["--warmup", "0", "--max-extra", "0", "--target", "1", "--row-timeout", "0.5"]
    )
    assert (args.warmup, args.max_extra, args.target, args.row_timeout) == (0, 0, 1.0, 0.5)


TINY_BENCH = [
    "--workloads", "tiny", "--steps", "3", "--epochs", "1", "--warmup", "0", "--peers", "none",
    "--no-textbook", "--no-time-to-accuracy", "--no-cli-rss", "--no-plot", "--data", "synthetic",
    "--devices", "cpu",
]  # fmt: skip


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("afile", "a file has that name"),
        ("afile/sub", "a file is in its path"),
        pytest.param(
            "/proc/mlp-bench-out",
            "cannot create the folder",
            marks=pytest.mark.skipif(not Path("/proc").is_dir(), reason="no /proc"),
        ),
    ],
)
def test_bench_out_that_cannot_hold_results_is_one_line(tmp_path, out, says):
    (tmp_path / "afile").write_text("kept\n")
    done = run_module("bench", *TINY_BENCH, "--out", str(tmp_path / out))
    err = assert_one_line(done, "python -m bench", 2)
    assert f"--out '{tmp_path / out}': {says}" in err and "[1/" not in err  # no row ran
    assert (tmp_path / "afile").read_text() == "kept\n"


def test_bench_empty_out_is_a_usage_error(capsys):
    from bench import cli

    with pytest.raises(SystemExit) as exc:  # not the current directory, silently
        cli.build_parser().parse_args(["--out", ""])
    assert (
        exc.value.code == 2 and "argument --out: expected a path, got ''" in capsys.readouterr().err
    )


def test_bench_unwritable_out_folder_stops_before_any_row(tmp_path, monkeypatch, capsys):
    """As root a chmod stops nothing, so the folder's refusal is simulated."""
    from bench import cli

    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    monkeypatch.setattr(cli, "run", lambda *args: pytest.fail("a row ran"))
    with pytest.raises(SystemExit) as exc:
        cli.main([*TINY_BENCH, "--out", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "the folder is not writable" in err and err.count("\n") == 1


def test_bench_rerun_never_replaces_earlier_results(tmp_path):
    first = run_module("bench", *TINY_BENCH, "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    (json_path,) = tmp_path.glob("*.json")
    kept = json_path.read_text()
    # a second run the same day whose every row fails (times out) gets its own files
    failed = run_module("bench", *TINY_BENCH, "--out", str(tmp_path), "--row-timeout", "0.001")
    assert failed.returncode == 1, failed.stderr
    second = json_path.with_name(json_path.stem + "-2.json")
    assert f"results: {second}" in failed.stdout
    assert json_path.read_text() == kept and json.loads(second.read_text())["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [json_path.name, second.name, json_path.stem + ".md", second.stem + ".md"]
    )


def test_results_stem_skips_any_taken_name(tmp_path):
    from bench import report

    (tmp_path / "day-cpu.png").write_bytes(b"a chart")  # a run that left only its chart
    (tmp_path / "day-cpu-2.md").write_text("a table")
    stem = report.claim_stem(tmp_path, "day-cpu", {"rows": []})
    assert stem == tmp_path / "day-cpu-3"
    assert json.loads(stem.with_suffix(".json").read_text()) == {"rows": []}
    assert report.claim_stem(tmp_path, "day-cpu", {}) == tmp_path / "day-cpu-4"


def disk_full(fd: int) -> None:
    raise OSError(28, "No space left on device")


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


def test_bench_disk_full_mid_run_is_one_line(tmp_path, monkeypatch, capsys):
    from bench import cli

    monkeypatch.setattr(cli.signal, "signal", lambda *args: None)
    monkeypatch.setattr(files.os, "fsync", disk_full)  # the first save, after the first row
    assert cli.main([*TINY_BENCH, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("python -m bench: error: cannot write ")
    assert err[-1].endswith(".json: No space left on device")
    assert not any("Traceback" in line for line in err)
    (path,) = tmp_path.glob("*.json")  # the claimed file: whole JSON, no rows yet
    assert json.loads(path.read_text())["complete"] is False
