"""The stronger PyTorch rows (``bench/torch_peers.py``) and the targets section.

A benchmark is not a test: nothing here checks a timing, only that each variant trains on a
tiny model, reports its compile time apart from its epochs, and skips what its device cannot
run; and that the report prints every target as met, NOT met or pending.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import cli, extras, report
from bench.timing import Schedule
from bench.workloads import Workload

#: A model small enough that ``torch.compile`` spends its time compiling, not training.
SMALL = Workload("small", (16, 8, 4), 8, "adam", 1e-2)
SCHEDULE = Schedule(warmup=1, epochs=2, max_extra=0)


def small_data(samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=samples).astype(np.int64)
    X = rng.random((samples, 16), dtype=np.float32)
    X[np.arange(samples), y] += 1.0  # learnable: the class is the brightest of four features
    return X, y


def trained(impl: str, samples: int = 64) -> dict:
    torch_peers = pytest.importorskip("bench.torch_peers")
    pytest.importorskip("torch")
    X, y = small_data(samples)
    return torch_peers.train_variant(impl, SMALL, "cpu", X, y, SCHEDULE)


def check_trained(out: dict) -> None:
    assert out.get("status", "ok") == "ok", out
    assert all(math.isfinite(s) and s > 0 for s in out["epoch_seconds"])
    assert math.isfinite(out["median_seconds"]) and out["median_seconds"] > 0
    assert all(math.isfinite(loss) for loss in out["losses"])
    assert out["losses"][-1] < out["losses"][0]  # three epochs of Adam at lr 1e-2 learn
    assert out["tf32"] is False and out["matmul_precision"] == "highest"


def test_pytorch_starts_from_weights_scaled_as_ours():
    """He normal weights and zero biases, as ``MLP`` starts: a race to an accuracy compares
    training, not starting points (``nn.Linear``'s own uniform start is 2.45× smaller)."""
    pytest.importorskip("torch")
    from bench.peers import torch_model
    from bench.workloads import WORKLOADS
    from mlp import MLP

    ours = MLP(list(WORKLOADS["std"].sizes), seed=0)
    theirs = [m for m in torch_model(WORKLOADS["std"]) if hasattr(m, "weight")]
    for layer, linear in zip(ours.linears, theirs, strict=True):
        weights = linear.weight.detach().numpy()
        assert weights.T.shape == layer.weight.shape
        assert np.std(weights) == pytest.approx(np.std(layer.weight), rel=0.05)
        assert not linear.bias.detach().numpy().any() and not np.any(layer.bias)


def test_fused_adam_trains_on_the_cpu():
    out = trained("torch-fused", samples=60)  # a last, smaller batch too
    check_trained(out)
    assert "compile_seconds" not in out


def test_compiled_step_trains_and_reports_its_compile_time_apart():
    """One mode only (compiling takes ~20 s on two cores); max-autotune is the same path."""
    out = trained("torch-compile-ro")
    check_trained(out)
    assert out["compile_mode"] == "reduce-overhead"
    assert out["compile_seconds"] > 0 and out["compile_seconds"] not in out["epoch_seconds"]
    row = {"status": "ok", **out}
    assert f"compile {out['compile_seconds']:.1f} s, not timed" in report.note(row)


def test_the_graph_row_skips_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the graph row runs")
    out = trained("torch-graph")
    assert out == {"status": "skipped", "reason": "needs CUDA (torch.cuda.graph)"}
    args = cli.build_parser().parse_args(["--peers", "torch-graph"])
    row = {"workload": "tiny", "device": "cpu", "impl": "torch-graph", "samples": 64}
    assert cli.run_row(row, args, real=False, probes={}) == out
    row = {**row, "label": "PyTorch CUDA graph", **out}
    assert report.row_cells(row)[-1] == "skipped: needs CUDA (torch.cuda.graph)"


def test_tf32_is_off_unless_asked_for():
    torch_peers = pytest.importorskip("bench.torch_peers")
    torch = pytest.importorskip("torch")
    try:
        assert torch_peers.set_precision(True) == {"tf32": True, "matmul_precision": "high"}
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch_peers.set_precision(False)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"


def test_pytorch_rows_turn_tf32_on_at_tf32_and_have_no_bf16_row():
    torch_peers = pytest.importorskip("bench.torch_peers")
    pytest.importorskip("torch")
    from bench import peers

    X, y = small_data()
    try:
        fused = torch_peers.train_fused(SMALL, "cpu", X, y, SCHEDULE, precision="tf32")
        assert fused["tf32"] is True and fused["matmul_precision"] == "high"
        eager = peers.train_torch(SMALL, "cpu", X, y, SCHEDULE, precision="tf32")
        assert eager["tf32"] is True
    finally:
        torch_peers.set_precision(False)
    assert peers.train_torch(SMALL, "cpu", X, y, SCHEDULE)["tf32"] is False  # set back
    with pytest.raises(ValueError, match="PyTorch rows run at float32 or tf32, not 'bf16'"):
        torch_peers.train_fused(SMALL, "cpu", X, y, SCHEDULE, precision="bf16")


def impls(argv: list[str], device: str) -> list[str]:
    rows = cli.plan(cli.build_parser().parse_args(["--workloads", "std", *argv]), [device])
    return [r["impl"] for r in rows]


def test_compiled_and_graph_rows_are_on_by_default_on_a_gpu_only():
    cpu = ["limit", "mlp", "limit", "textbook", "torch", "torch-fused", "sklearn"]
    assert impls([], "cpu") == cpu
    assert impls([], "cuda") == [
        "limit", "mlp", "textbook", "torch", "torch-fused", "torch-compile",
        "torch-compile-ro", "torch-graph",
    ]  # fmt: skip
    named = ["--peers", "torch-compile,torch-graph", "--no-textbook"]
    assert impls(named, "cpu") == ["limit", "mlp", "limit", "torch-compile", "torch-graph"]


def test_every_pytorch_row_installs_pytorch_once(capsys):
    assert extras.main(["--peers", "torch-fused,torch-compile,torch-graph"]) == 0
    assert capsys.readouterr().out == "bench,bench-torch\n"
    assert extras.missing_reason("torch-compile").startswith("torch is not installed")


def row(workload, device, impl, seconds, **more):
    return {"workload": workload, "device": device, "impl": impl, "status": "ok",
            "median_seconds": seconds, **more}  # fmt: skip


def test_ours_is_compared_with_the_fastest_pytorch_row():
    rows = [
        row("std", "cuda", "mlp", 2.0),
        row("std", "cuda", "torch", 4.0),
        row("std", "cuda", "torch-compile", 1.0),
        row("std", "cuda", "torch-graph", 0.5, status="error"),
    ]
    cli.compare_to_torch(rows)
    assert rows[0]["speed_vs_torch"] == pytest.approx(2.0)
    assert rows[0]["speed_vs_best_torch"] == pytest.approx(0.5)
    assert rows[0]["fastest_torch"] == {"impl": "torch-compile", "of": ["torch", "torch-compile"]}
    assert rows[2]["speed_vs_torch"] == pytest.approx(4.0)
    assert "speed_vs_best_torch" not in rows[2]  # ours alone are held to the targets


def test_a_figure_that_rounds_to_its_bound_shows_the_digits_that_decide():
    assert report.verdict("t:", "vs x", 0.996, "min", 1.0, "").endswith("0.996 vs x (≥ 1): NOT met")
    assert report.verdict("t:", "× y", 1.1504, "max", 1.15, "").endswith(
        "1.1504 × y (≤ 1.15): NOT met"
    )
    assert report.verdict("t:", "× y", 1.149, "max", 1.15, "").endswith("1.149 × y (≤ 1.15): met")
    assert report.verdict("t:", "× y", 1.2, "max", 1.15, "").endswith("1.20 × y (≤ 1.15): NOT met")
    # past .5g too: it showed 1.15 and 300 against those bounds, NOT met
    assert report.verdict("t:", "× y", 1.150004, "max", 1.15, "").endswith(
        "1.150004 × y (≤ 1.15): NOT met"
    )
    assert report.verdict("t:", "MB", 300.004, "max", 300, "").endswith(
        "300.004 MB (≤ 300): NOT met"
    )
    assert report.verdict("t:", "× y", 1.15, "max", 1.15, "").endswith("1.15 × y (≤ 1.15): met")
    # and where rounding would carry it across: 1.1549 is not 1.15 against 1.154, but 1.155
    assert report.verdict("t:", "× y", 1.1549, "max", 1.154, "").endswith(
        "1.155 × y (≤ 1.154): NOT met"
    )


def test_the_targets_section_prints_every_target():
    rows = [
        row("std", "cpu", "mlp", 1.0, ratio_to_limit=1.1),
        row("big", "cpu", "mlp", 1.0, ratio_to_limit=1.2),
    ]
    lines = report.target_lines(rows)
    assert lines[0] == "targets:" and len(lines) == 1 + len(report.TARGETS)
    assert "target std on cpu: 1.10 × limit (≤ 1.15): met" in lines
    assert "target big on cpu: 1.20 × limit (≤ 1.05): NOT met" in lines
    assert "target tiny on cpu: × limit (≤ 1.6): pending (tiny not in --workloads)" in lines
    assert "target std-b256 on cuda: vs fastest PyTorch (≥ 1): pending (needs a GPU)" in lines
    assert all(line.endswith(("met", ")")) for line in lines[1:])
    fastest = {"impl": "torch-graph", "of": ["torch-graph", "torch"]}
    gpu = report.target_lines(
        [row("big", "cuda", "mlp", 1.0, speed_vs_best_torch=1.2, fastest_torch=fastest)]
    )
    met = "met (fastest: torch-graph, of torch-graph, torch)"
    assert f"target big on cuda: 1.20 vs fastest PyTorch (≥ 1): {met}" in gpu
    bf16 = "bf16 speed-up over float32 (≥ 1.5): pending (no bf16 row of ours: add bf16 to"
    bf16 += " --precisions)"
    assert f"target big on cuda: {bf16}" in gpu
    assert "target big on cuda: × limit (≤ 1.15): pending (our row or the limit did not run)" in gpu
