"""``mpiexec -n 2 mlp-train``: one run on two processes. Rank 0 alone prints and writes; a
failure on one process ends both in seconds, with one line; processes started with other
settings are refused; a run saved by one world size resumes on another, bit for bit as an
unbroken run would go (float64, to rounding)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlp.checkpoint import load_checkpoint
from mlp.cli import train
from tests.helpers import ROOT, mpiexec, mpiexec_or_skip, one_line, repo_env, run

TRAIN = [sys.executable, "-m", "mlp.cli.train"]


@pytest.fixture
def launcher() -> str:
    return mpiexec_or_skip()


def quick(dataset, *extra) -> list:
    return [*TRAIN, "--data-dir", dataset, "--no-download", "--hidden", "16", *extra]


def error_lines(stderr: str) -> list[str]:
    """Our lines on stderr (the MPI library may add its own about the abort)."""
    return [line for line in stderr.splitlines() if line.startswith("mlp-train")]


def test_rank_0_alone_prints_and_writes(launcher, dataset, tmp_path):
    mine = ["--save", tmp_path / "run.npz", "--log", tmp_path / "log.jsonl"]
    theirs = ["--save", tmp_path / "other.npz", "--log", tmp_path / "other.jsonl"]
    done = mpiexec(
        launcher, quick(dataset, "--epochs", "2", *mine), quick(dataset, "--epochs", "2", *theirs)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("test accuracy:") == 1
    assert done.stdout.count("data-parallel: 2 processes on 1 machine") == 1
    assert done.stdout.count("epoch   2/2") == 1
    assert not (tmp_path / "other.npz").exists() and not (tmp_path / "other.jsonl").exists()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in records] == [2, 2]
    assert load_checkpoint(tmp_path / "run.npz").epoch == 2


def test_a_failure_on_rank_1_ends_both_in_seconds_with_one_line(launcher, dataset, tmp_path):
    started = time.monotonic()
    done = mpiexec(
        launcher,
        quick(dataset, "--epochs", "50"),
        quick(tmp_path / "missing", "--epochs", "50"),
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mlp-train (rank 1): error: ") and "missing" in lines[0]
    assert "epoch  50/50" not in done.stdout


def test_a_usage_error_on_rank_1_alone_ends_both(launcher, dataset, tmp_path):
    """Rank 1's --save folder is missing (it is only rank 0's machine that has it): rank 1
    fails before it joins the world, and rank 0 waited for it in MPI's start-up for ever."""
    started = time.monotonic()
    done = mpiexec(
        launcher,
        quick(dataset, "--save", tmp_path / "run.npz"),
        quick(dataset, "--save", tmp_path / "missing" / "run.npz"),
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "missing" in lines[0], done.stderr
    assert "test accuracy" not in done.stdout


def test_processes_started_with_other_settings_are_refused(launcher, dataset):
    done = mpiexec(
        launcher,
        quick(dataset, "--batch-size", "32"),
        quick(dataset, "--batch-size", "64"),
        timeout=60,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = error_lines(done.stderr)
    assert lines and all("disagree on batch_size: 64 on rank 1, 32 on rank 0" in x for x in lines)
    assert "epoch" not in done.stdout


def weights(path) -> np.ndarray:
    """The weights and the optimizer's moments of a checkpoint, as one vector."""
    saved = load_checkpoint(path)
    arrays = {**saved.params, **saved.optimizer_state}
    return np.concatenate([np.ravel(arrays[key]) for key in sorted(arrays)]).astype(np.float64)


@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_a_run_resumes_on_another_number_of_processes(launcher, dataset, tmp_path, first, then):
    common = ["--dtype", "float64", "--batch-size", "50", "--quiet"]
    unbroken, broken = tmp_path / "unbroken.npz", tmp_path / "broken.npz"

    def on(processes: int, *argv) -> None:
        program = quick(dataset, *common, *argv)
        done = mpiexec(launcher, *[program] * processes)
        assert done.returncode == 0, done.stderr

    on(2, "--epochs", "2", "--save", unbroken)
    on(first, "--epochs", "1", "--save", broken)
    on(then, "--epochs", "2", "--resume", broken)
    assert load_checkpoint(broken).epoch == 2
    np.testing.assert_allclose(weights(broken), weights(unbroken), rtol=0, atol=1e-9)


def test_a_world_of_one_is_a_world(launcher, dataset):
    done = mpiexec(launcher, quick(dataset, "--distributed"))
    assert done.returncode == 0, done.stderr
    assert "data-parallel: 1 process on 1 machine" in done.stdout


def test_insisting_on_a_world_outside_a_launcher_is_one_line(dataset, capsys, monkeypatch):
    from mlp import distributed

    for name in distributed.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(train.main, ["--data-dir", dataset, "--distributed"], capsys)
    assert code == 2  # how it was started: a mistake, as the README's rule has it
    assert "no MPI launcher started this process" in one_line(err)


def started(launcher: str, program: list) -> subprocess.Popen:
    """``mpiexec -n 2 program`` in a session of its own (a terminal's process group), once
    its first epoch has ended."""
    argv = [launcher, "-n", "2", *(str(a) for a in program)]
    process = subprocess.Popen(
        argv, cwd=ROOT, env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("epoch   1/"):
            return process
    pytest.fail(f"no epoch ended: {process.communicate(timeout=30)}")


def rank_pid(rank: int, marker: str) -> int:
    """The process of ``rank`` whose command line holds ``marker`` (MPICH's PMI_RANK)."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if marker.encode() in command and f"PMI_RANK={rank}".encode() in environ:
            return int(entry.name)
    pytest.fail(f"no process of rank {rank}")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes through /proc")
def test_ctrl_c_ends_both_and_rank_0_says_what_it_kept(launcher, dataset, tmp_path):
    saved = tmp_path / "run.npz"
    process = started(launcher, quick(dataset, "--epochs", "500", "--save", saved))
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mlp-train: interrupted; {saved} holds epoch ")
    assert load_checkpoint(saved).epoch >= 1


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes through /proc")
def test_a_process_killed_outright_ends_the_other(launcher, dataset, tmp_path):
    program = quick(dataset, "--epochs", "500", "--log", tmp_path / "log.jsonl")
    process = started(launcher, program)
    os.kill(rank_pid(1, str(tmp_path)), signal.SIGKILL)  # what the out-of-memory killer does
    started_at = time.monotonic()
    process.communicate(timeout=30)
    assert time.monotonic() - started_at < 20
    assert process.returncode != 0
