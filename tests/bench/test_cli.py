"""``python -m bench``'s options and output folder: one line on stderr for a bad one, never a
traceback, and a rerun that never replaces earlier results."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import cli
from mlp import files
from tests.helpers import ROOT, assert_one_line, run_module

TINY_BENCH = [
    "--workloads", "tiny", "--steps", "3", "--epochs", "1", "--warmup", "0", "--peers", "none",
    "--no-textbook", "--no-time-to-accuracy", "--no-cli-rss", "--no-plot", "--data", "synthetic",
    "--devices", "cpu",
]  # fmt: skip


def disk_full(fd: int) -> None:
    raise OSError(28, "No space left on device")


def test_bench_help_still_lists_defaults():
    from bench import cli

    text = cli.build_parser().format_help()
    assert "(default: 3)" in text and "(default: tiny,std,big)" in text


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


def test_bench_disk_full_mid_run_is_one_line(tmp_path, monkeypatch, capsys):
    from bench import cli

    monkeypatch.setattr(files.os, "fsync", disk_full)  # the first save, after the first row
    assert cli.main([*TINY_BENCH, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("python -m bench: error: cannot write ")
    assert err[-1].endswith(".json: No space left on device")
    assert not any("Traceback" in line for line in err)
    (path,) = tmp_path.glob("*.json")  # the claimed file: whole JSON, no rows yet
    assert json.loads(path.read_text())["complete"] is False


def test_bench_stopped_part_way_reports_the_rows_it_did(tmp_path, monkeypatch, capsys):
    """A time limit's SIGTERM (here its interrupt, at the third row) still prints the table
    and the targets of the rows done, as the GPU check's summary reads them."""
    real_row, calls = cli.run_row, []

    def third_stops(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_row(*args)

    monkeypatch.setattr(cli, "run_row", third_stops)
    assert cli.main([*TINY_BENCH, "--out", str(tmp_path)]) == 130
    out = capsys.readouterr().out
    assert re.search(r"^target tiny on cpu: [0-9.]+ × limit \(≤ 1\.6\): (met|NOT met)$", out, re.M)
    assert re.search(r"^tiny +cpu +mlp \(this library\)", out, re.M)  # the table's rows
    (path,) = tmp_path.glob("*.json")
    assert len(json.loads(path.read_text())["rows"]) == 2


def git_status() -> set[str] | None:
    """The repository's changed and untracked files (``None`` outside a git checkout)."""
    if shutil.which("git") is None:
        return None
    done = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def test_bench_writes_nothing_into_the_source_tree_by_default(tmp_path):
    """A run without ``--out`` goes to ``$MLP_BENCH_DIR``: ``git status`` as it was before."""
    before, committed = git_status(), sorted((ROOT / "bench" / "results").iterdir())
    done = run_module("bench", *TINY_BENCH, env={"MLP_BENCH_DIR": str(tmp_path / "runs")})
    assert done.returncode == 0, done.stderr
    (json_path,) = (tmp_path / "runs").glob("*-cpu-*.json")
    assert f"results: {json_path}" in done.stdout and f"results: {json_path}" in done.stderr
    assert json_path.with_suffix(".md").is_file()
    assert sorted((ROOT / "bench" / "results").iterdir()) == committed
    if before is not None:  # others' edits may come and go; the run must add no entry
        assert git_status() - before == set()


def test_bench_default_folder_is_the_user_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLP_BENCH_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(TINY_BENCH) == 0
    (json_path,) = (tmp_path / "cache" / "mlp" / "bench").glob("*.json")
    assert f"results: {json_path}" in capsys.readouterr().out


def test_bench_out_is_honoured_over_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MLP_BENCH_DIR", str(tmp_path / "default"))
    assert cli.main([*TINY_BENCH, "--out", str(tmp_path / "chosen")]) == 0
    assert len(list((tmp_path / "chosen").glob("*.json"))) == 1
    assert not (tmp_path / "default").exists()


def test_bench_without_a_home_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """No results folder made up under a home that is not there (``HOME=/nonexistent``)."""
    for name in ("MLP_BENCH_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    monkeypatch.setattr(cli, "run", lambda *args: pytest.fail("a row ran"))
    with pytest.raises(SystemExit) as exc:
        cli.main(TINY_BENCH)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert f"the home folder {tmp_path / 'nohome'} does not exist" in err and "MLP_BENCH_DIR" in err
    assert not (tmp_path / "nohome").exists()


def test_bench_requested_peer_that_is_missing_is_one_line(tmp_path, monkeypatch, capsys):
    """Named in ``--peers``, a peer must be there: say so before hours of rows, not after."""
    monkeypatch.setattr(cli, "installed", lambda peer: False)
    monkeypatch.setattr(cli, "run", lambda *args: pytest.fail("a row ran"))
    with pytest.raises(SystemExit) as exc:
        cli.main([*TINY_BENCH, "--peers", "torch", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert "--peers torch: torch is not installed (pip install -e '.[bench-torch]'" in err


def test_bench_default_peers_that_are_missing_are_rows(monkeypatch):
    """Left to the default, a missing peer is only a row that says so (a plain checkout)."""
    monkeypatch.setattr(cli, "installed", lambda peer: False)
    args = cli.build_parser().parse_args([])
    assert args.peers == list(cli.PEERS) and not args.peers_requested
    assert args.peers[0] == "torch" and args.peers[-1] == "sklearn"
    row = {"workload": "tiny", "device": "cpu", "impl": "sklearn", "samples": 64}
    assert cli.run_row(row, args, real=False, probes={})["status"] == "missing"
