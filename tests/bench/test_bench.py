"""Smoke test of the benchmark: it runs end to end on a few steps and writes its JSON.

A benchmark is not a test: nothing here checks a timing, only that the bench runs and
that its results have the expected structure. Needs neither PyTorch nor scikit-learn."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from bench import cli, report
from bench.limit import epoch_flops
from bench.workloads import WORKLOADS, batch_sizes, epoch_samples, synthetic_data
from tests.helpers import ROOT


def test_bench_runs_end_to_end(tmp_path):
    command = [
        sys.executable, "-m", "bench", "--workloads", "tiny", "--devices", "cpu",
        "--peers", "none", "--steps", "3", "--epochs", "1", "--no-plot",
        "--no-time-to-accuracy", "--no-cli-rss", "--data", "synthetic", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "matmul-only limit" in done.stdout and "× limit" in done.stdout

    (path,) = tmp_path.glob("*-cpu-*.json")
    results = json.loads(path.read_text())
    assert {"machine", "config", "workloads", "rows", "time_to_accuracy", "cli_rss"} <= set(results)
    assert results["complete"] is True
    machine = results["machine"]
    assert machine["cpu"]["usable_cores"] >= 1 and machine["cpu"]["model"]
    assert {"python", "numpy", "mlp"} <= set(machine["versions"])
    assert "threads" in machine["blas"] and machine["date"]
    assert results["config"]["data"].startswith("synthetic")

    rows = {row["impl"]: row for row in results["rows"]}
    assert set(rows) == {"limit", "mlp", "textbook"}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert (row["workload"], row["device"]) == ("tiny", "cpu")
        assert row["samples"] == 3 * 64 and row["steps"] == 3 and row["full_steps"] == 938
        assert row["median_seconds"] > 0 and row["samples_per_second"] > 0
        assert row["ratio_to_limit"] > 0 and row["limit_seconds"] > 0
        assert row["peak_rss_bytes"] > 0
    assert rows["limit"]["ratio_to_limit"] == 1.0
    assert rows["limit"]["recorded"] is True  # replayed as ours are (backends/recording.py)
    assert len(rows["mlp"]["epoch_seconds"]) == 1
    assert rows["mlp"]["threads"] >= 1  # BLAS's, inside the fit (the `fast` extra's threadpoolctl)
    assert path.with_suffix(".md").exists() and not path.with_suffix(".png").exists()


@pytest.mark.cuda
def test_the_limit_is_recorded_on_a_gpu(cuda_backend):
    """On a GPU the limit's products replay as a CUDA graph, as fit's step does, so both
    are timed without the host's launch costs."""
    from bench.limit import measure_limit
    from bench.timing import Schedule
    from bench.workloads import WORKLOADS

    out = measure_limit(WORKLOADS["tiny"], "cuda", 1000, Schedule(warmup=1, epochs=2))
    assert out["recorded"] is True and out["median_seconds"] > 0


def test_missing_peer_is_reported(monkeypatch):
    monkeypatch.setattr(cli, "installed", lambda peer: False)
    args = cli.build_parser().parse_args(["--peers", "torch"])
    row = {"workload": "tiny", "device": "cpu", "impl": "torch", "samples": 64}
    assert cli.run_row(row, args, real=False, probes={}) == {
        "status": "missing",
        "reason": "torch is not installed (pip install -e '.[bench-torch]', or make bench)",
    }


def test_plan_caps_cpu_steps_and_keeps_sklearn_on_the_cpu():
    args = cli.build_parser().parse_args(
        ["--workloads", "std,big", "--cpu-steps", "big=5", "--peers", "torch,sklearn"]
    )
    rows = cli.plan(args, ["cpu", "cuda"])
    big_cpu = [r for r in rows if (r["workload"], r["device"]) == ("big", "cpu")]
    assert {r["steps"] for r in big_cpu} == {5}
    assert {r["steps"] for r in rows if r["workload"] == "std"} == {469}
    assert not [r for r in rows if r["impl"] == "sklearn" and r["device"] == "cuda"]
    assert [r["impl"] for r in big_cpu] == ["limit", "mlp", "limit", "textbook", "torch", "sklearn"]
    assert [r.get("again", False) for r in big_cpu] == [False, False, True, False, False, False]
    big_cuda = [r for r in rows if (r["workload"], r["device"]) == ("big", "cuda")]
    assert [r["impl"] for r in big_cuda] == ["limit", "mlp", "textbook", "torch"]


def test_the_cpu_limit_is_timed_again_after_ours_and_the_faster_run_kept(monkeypatch):
    """A drifting CPU: the limit's second run (after ours) was faster, so it is the limit of
    every row of the setting, ours included, and the table has one limit row."""
    medians = {"limit": [0.25, 0.13], "mlp": [0.2], "textbook": [0.3]}

    def run_row(row, args, real, probes):
        return {"status": "ok", "median_seconds": medians[row["impl"]].pop(0)}

    monkeypatch.setattr(cli, "run_row", run_row)
    args = cli.build_parser().parse_args(["--workloads", "tiny", "--peers", "none"])
    saved = []
    rows = cli.run_benchmark(
        args, False, ["cpu"], {}, {}, save=lambda rows: saved.append(copy.deepcopy(rows))
    )
    assert [r["impl"] for r in rows] == ["limit", "mlp", "textbook"]
    limit, ours, textbook = rows
    assert limit["median_seconds"] == 0.13 and limit["run_medians"] == [0.25, 0.13]
    assert ours["ratio_to_limit"] == pytest.approx(0.2 / 0.13)
    assert textbook["ratio_to_limit"] == pytest.approx(0.3 / 0.13)
    assert [len(s) for s in saved] == [1, 2, 2, 3]
    assert saved[1][1]["ratio_to_limit"] == pytest.approx(0.2 / 0.25)  # before the second run


@pytest.mark.parametrize("bad", [["--peers", "jax"], ["--workloads", "huge"], ["--steps", "0"]])
def test_bad_options_are_usage_errors(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(bad)
    assert exc.value.code == 2


def test_epoch_shapes_and_flops():
    std = WORKLOADS["std"]
    assert batch_sizes(std, epoch_samples(std)) == [(128, 468), (96, 1)]
    assert epoch_samples(std, steps=3) == 384
    # forward + dW for each layer, dx for all but the first: 2 FLOPs per multiply-add
    per_row = 2 * (2 * (784 * 512 + 512 * 256 + 256 * 10) + (512 * 256 + 256 * 10))
    assert epoch_flops(std, 60_000) == per_row * 60_000
    X, y = synthetic_data(100)
    assert X.shape == (100, 784) and X.dtype.name == "float32" and 0 <= X.min() <= X.max() <= 1
    assert y.min() >= 0 and y.max() <= 9


def test_report_formats_failed_rows():
    row = {"workload": "std", "device": "cuda", "label": "PyTorch", "status": "missing",
           "reason": "torch is not installed"}  # fmt: skip
    cells = report.row_cells(row)
    assert cells[3] == "—" and cells[-1] == "missing: torch is not installed"


def test_speed_vs_torch_and_targets():
    def row(workload, device, impl, seconds, status="ok"):
        return {"workload": workload, "device": device, "impl": impl, "status": status,
                "median_seconds": seconds}  # fmt: skip

    rows = [
        row("std", "cuda", "limit", 0.5),
        row("std", "cuda", "mlp", 2.0),
        row("std", "cuda", "torch", 3.0),
        row("big", "cuda", "mlp", 4.0),
        row("big", "cuda", "torch", 3.0),
        row("std", "cpu", "mlp", 1.0),
        row("std", "cpu", "torch", 9.0, status="failed"),
    ]
    rows[3]["ratio_to_limit"] = 1.25
    cli.compare_to_torch(rows)
    assert rows[1]["speed_vs_torch"] == pytest.approx(1.5)
    assert rows[3]["speed_vs_torch"] == pytest.approx(0.75)
    assert "speed_vs_torch" not in rows[0] and "speed_vs_torch" not in rows[2]
    assert "speed_vs_torch" not in rows[5]  # its PyTorch row failed: nothing to compare to
    lines = report.target_lines(rows)
    of = "(fastest: torch, of torch)"
    assert f"target std on cuda: 1.50 vs fastest PyTorch (≥ 1): met {of}" in lines
    assert f"target big on cuda: 0.75 vs fastest PyTorch (≥ 1): NOT met {of}" in lines
    assert "target big on cuda: 1.25 × limit (≤ 1.15): NOT met" in lines


def test_batch_size_variants_share_the_std_model():
    for name, batch in (("std-b256", 256), ("std-b1024", 1024)):
        variant = WORKLOADS[name]
        assert variant.sizes == WORKLOADS["std"].sizes and variant.batch_size == batch
        assert variant.optimizer == "adam"
    assert cli.build_parser().parse_args([]).workloads == ["tiny", "std", "big"]


def test_op_timings_run_end_to_end(device, capsys):
    from bench import ops

    assert ops.main(["--device", device, "--calls", "3"]) == 0
    out = capsys.readouterr().out
    assert "µs  matmul x·W" in out and "Adam over 535,818 parameters" in out
    if device == "cuda":  # CuPy's own matmul route, the bare launch costs, graph replays
        assert "µs  cupy.matmul x·W" in out and "µs  launch: RawKernel" in out
        assert "µs  forward 128×784·784×512: linear (one product)" in out
        assert "cuBLASLt plans with an algorithm: " in out and " RELU_BIAS " in out
        assert "µs  Adam over 5,824,522, its count on the device" in out
    assert "µs  gather a batch and its labels" in out
    assert sum(m * n + n for m, n in ((784, 512), (512, 256), (256, 10))) == ops.PARAMETERS
    big = ((784, 2048), (2048, 2048), (2048, 10))
    assert sum(m * n + n for m, n in big) == ops.BIG_PARAMETERS
    with pytest.raises(SystemExit):
        ops.main(["--calls", "0"])


def test_layer_products_agree_and_replay_from_a_recording(device):
    """Both ways of a layer's forward, and of its gradients, give the same numbers, and each
    replays recorded (on the CPU, a recording of the bodies stands in for the CUDA graph)."""
    from backends import get_backend
    from bench import ops

    be = get_backend(device)
    calls = list(ops.layer_products(be).values())
    assert len(calls) == 8

    def numbers(result):
        parts = result if isinstance(result, tuple) else (result,)
        return [be.to_numpy(part).copy() for part in parts]

    for apart, folded in zip(calls[::2], calls[1::2], strict=True):
        for got, expected in zip(numbers(folded()), numbers(apart()), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    for call in calls:
        us = ops.replayed_microseconds(be, call, 2)
        assert us is not None and us > 0


def test_op_timings_on_a_bad_device_say_so_in_one_line(capsys):
    from bench import ops

    with pytest.raises(SystemExit) as exc:  # a bad command line: exit status 2
        ops.main(["--device", "tpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "python -m bench.ops: error: argument --device: unknown device 'tpu'" in err
    assert err.count("\n") == 1


def test_a_given_commit_names_a_copied_tree(monkeypatch):
    """A lent GPU machine's copy of the tree carries older git metadata: MLP_COMMIT says
    which commit its files are, and the results do not call it modified."""
    from bench.machine import git_commit

    monkeypatch.setenv("MLP_COMMIT", "b0b4c2e")
    assert git_commit() == {"commit": "b0b4c2e", "dirty": None, "from": "MLP_COMMIT"}
    monkeypatch.delenv("MLP_COMMIT")
    assert git_commit().get("from") is None
