"""Time to accuracy against PyTorch's strongest rows: which race, and the verdict.

A benchmark is not a test: the planned races and the report are checked with made-up
results; one race runs for real, in-process, on a tiny model and a made-up dataset, to
check that a PyTorch variant trains with its own step (no timing is checked).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bench import cli, extras, report, worker
from tests.bench.test_torch_peers import SMALL


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_every_pytorch_row_races_on_a_gpu_and_eager_alone_on_the_cpu_by_default():
    assert cli.tta_impls(parse(), "cpu") == ["mlp", "torch"]
    assert cli.tta_impls(parse(), "cuda") == ["mlp", *extras.TORCH_ROWS]
    named = parse("--peers", "torch-fused,torch-graph,sklearn")
    assert cli.tta_impls(named, "cpu") == ["mlp", "torch-fused", "torch-graph"]
    assert cli.tta_impls(parse("--peers", "none"), "cuda") == ["mlp"]


#: Made-up training seconds to the target of each row that reaches it.
SECONDS = {"mlp": 2.0, "torch": 10.0, "torch-graph": 4.0}


def test_each_race_runs_in_a_worker_and_the_report_names_pytorchs_best(monkeypatch):
    specs: list[dict] = []

    def fake_run_task(spec: dict, timeout: float) -> dict:
        specs.append(spec)
        impl = spec["impl"].removeprefix("tta-")
        return {"status": "ok", "reached": True, "seconds": SECONDS[impl], "epochs": 3,
                "accuracy_curve": [0.8, 0.88, 0.9]}  # fmt: skip

    monkeypatch.setattr(cli, "run_task", fake_run_task)
    monkeypatch.setattr(cli, "installed", lambda peer: True)
    args = parse("--peers", "torch,torch-graph", "--max-epochs", "7")
    out = cli.time_to_accuracy(args, True, ["cpu", "cuda"], {"torch": "2.x"})
    assert [(s["impl"], s["device"]) for s in specs] == [
        ("tta-mlp", "cpu"), ("tta-torch", "cpu"),  # the graph row needs CUDA: no process
        ("tta-mlp", "cuda"), ("tta-torch", "cuda"), ("tta-torch-graph", "cuda"),
    ]  # fmt: skip
    assert {(s["workload"], s["target"], s["max_epochs"]) for s in specs} == {("std", 0.89, 7)}
    graph_on_cpu = out["rows"][2]
    assert (graph_on_cpu["impl"], graph_on_cpu["status"]) == ("torch-graph", "skipped")
    assert report.tta_best_lines(out["rows"], 0.89) == [
        "fastest PyTorch to 0.89 on cpu, of 1 run: PyTorch 2.x, 10.0 s; ours 2.0 s, "
        "5.00× its speed",
        "fastest PyTorch to 0.89 on cuda, of 2 run: PyTorch 2.x CUDA graph, 4.0 s; ours 2.0 s, "
        "2.00× its speed",
    ]
    results = {"machine": {"cpu": {"model": "a CPU", "usable_cores": 2}, "blas": {},
               "versions": {}, "date": "2026-12-02"},
               "config": {"data": "real", "epochs": 1, "warmup": 0, "limit_repeats": 5,
                          "quiet_threshold": 0.1, "max_extra": 0},
               "rows": [], "time_to_accuracy": out}  # fmt: skip
    text = report.summary_text(results)
    assert "skipped: needs CUDA (torch.cuda.graph)" in text
    assert "fastest PyTorch to 0.89 on cuda, of 2 run: PyTorch 2.x CUDA graph, 4.0 s" in text


def test_the_verdict_when_pytorch_or_ours_falls_short():
    def race(impl: str, reached: bool, seconds: float = 1.0) -> dict:
        return {"impl": impl, "device": "cuda", "label": impl, "status": "ok",
                "reached": reached, "seconds": seconds, "accuracy_curve": [0.8]}  # fmt: skip

    missing = {"impl": "torch-fused", "device": "cuda", "label": "fused", "status": "missing"}
    assert report.tta_best_lines([race("mlp", True), race("torch", False), missing], 0.89) == [
        "no PyTorch row reached 0.89 on cuda"
    ]
    assert report.tta_best_lines([race("mlp", False), race("torch", True, 3.0), missing], 0.89) == [
        "fastest PyTorch to 0.89 on cuda, of 1 run: torch, 3.0 s; ours did not reach it"
    ]
    assert report.tta_best_lines([race("mlp", True), missing], 0.89) == []  # none raced
    compiled = {**race("torch-compile-ro", True), "compile_seconds": 31.4, "compile_mode": "x"}
    assert report.tta_note(compiled) == "compile 31.4 s, not counted"


def test_the_cpu_targets_of_the_whole_run():
    """Time to accuracy against the fastest PyTorch row on the CPU (ours over theirs,
    ≤ 0.5) and mlp-train's peak RSS (≤ 300 MB), each met, NOT met or pending."""

    def race(impl: str, seconds: float | None, device: str = "cpu") -> dict:
        return {"impl": impl, "device": device, "status": "ok", "reached": seconds is not None,
                "seconds": seconds}  # fmt: skip

    def lines(rows, rss=None, **tta):
        cli_rss = {"status": "ok", "peak_rss_bytes": rss} if rss else {"reason": "--no-cli-rss"}
        return report.run_target_lines({"target": 0.89, "workload": "std", "rows": rows, **tta},
                                       cli_rss)  # fmt: skip

    head = "target std on cpu: "
    what = "× the fastest PyTorch's time to 0.89 (≤ 0.5)"
    fastest = [race("mlp", 4.0), race("torch", 12.0), race("torch-fused", 10.0)]
    assert lines(fastest, 275e6) == [
        f"{head}0.40 {what}: met",
        "target mlp-train on cpu: 275.00 MB peak RSS (≤ 300): met",
    ]
    assert lines([race("mlp", 6.0), race("torch", 10.0)], 301e6) == [
        f"{head}0.60 {what}: NOT met",
        "target mlp-train on cpu: 301.00 MB peak RSS (≤ 300): NOT met",
    ]
    assert lines([race("mlp", None), race("torch", 10.0)])[0] == (
        f"{head}{what}: NOT met (ours did not reach it)"
    )
    assert lines([race("mlp", 4.0), race("torch", None)])[0] == (
        f"{head}{what}: pending (no PyTorch row reached 0.89 on cpu)"
    )
    assert lines([race("mlp", 4.0)])[0] == f"{head}{what}: pending (no PyTorch row ran)"
    crashed = {"impl": "mlp", "device": "cpu", "status": "error", "reason": "MemoryError"}
    assert lines([crashed, race("torch", 10.0)])[0] == (  # it said "ours did not reach it"
        f"{head}{what}: NOT met (ours error: MemoryError)"
    )
    on_a_gpu = [race("mlp", 1.0, "cuda"), race("torch", 9.0, "cuda")]  # not the CPU's target
    assert lines(on_a_gpu)[0] == f"{head}{what}: pending (needs a cpu run)"
    skipped = lines([], reason="--no-time-to-accuracy")
    assert skipped == [
        f"{head}{what}: pending (--no-time-to-accuracy)",
        "target mlp-train on cpu: MB peak RSS (≤ 300): pending (--no-cli-rss)",
    ]


def test_the_worker_hands_each_race_to_its_loop(monkeypatch):
    from bench import accuracy

    calls = []
    monkeypatch.setattr(accuracy, "time_to_accuracy_ours", lambda *a: calls.append(("ours", a)))
    monkeypatch.setattr(
        accuracy, "time_to_accuracy_torch", lambda *a, impl: calls.append((impl, a))
    )
    spec = {"device": "cuda", "workload": "std", "target": 0.89, "max_epochs": 30}
    for impl in ("tta-mlp", "tta-torch", "tta-torch-graph"):
        worker.time_to_accuracy({**spec, "impl": impl}, SMALL)
    task = (SMALL, "cuda", 0.89, 30)
    assert calls == [("ours", task), ("torch", task), ("torch-graph", task)]


def made_up_dataset(rng: np.random.Generator) -> SimpleNamespace:
    """uint8 images of SMALL's 16 features, the class the one bright feature of four."""

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, size=n).astype(np.uint8)
        X = rng.integers(0, 100, size=(n, 16)).astype(np.uint8)
        X[np.arange(n), y] = 255
        return X, y

    (X_train, y_train), (X_test, y_test) = split(252), split(128)  # a last batch of 4
    return SimpleNamespace(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)


@pytest.mark.parametrize("impl", ["torch", "torch-fused"])
def test_a_pytorch_row_races_with_its_own_step(impl, monkeypatch):
    pytest.importorskip("torch")
    from bench import accuracy, torch_peers

    data = made_up_dataset(np.random.default_rng(0))
    monkeypatch.setattr("mlp.data.load_dataset", lambda name: data)
    used = []
    ready = torch_peers.ready_trainer
    monkeypatch.setattr(
        torch_peers, "ready_trainer", lambda impl, *a: used.append(impl) or ready(impl, *a)
    )
    out = accuracy.time_to_accuracy_torch(SMALL, "cpu", 0.9, 20, impl=impl)
    assert used == [impl]
    assert out["reached"] and out["accuracy_curve"][-1] >= 0.9
    assert out["epochs"] == len(out["accuracy_curve"]) and out["seconds"] > 0
    assert out["tf32"] is False and "compile_seconds" not in out


def test_the_graph_race_is_skipped_without_cuda(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the graph race runs")
    from bench import accuracy

    monkeypatch.setattr("mlp.data.load_dataset", lambda name: pytest.fail("data loaded"))
    out = accuracy.time_to_accuracy_torch(SMALL, "cpu", 0.9, 20, impl="torch-graph")
    assert out == {"status": "skipped", "reason": "needs CUDA (torch.cuda.graph)"}


@pytest.mark.cuda
def test_the_graph_race_replays_its_captured_step_on_a_gpu(cuda_backend, monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"this PyTorch ({torch.__version__}) has no CUDA")
    from bench import accuracy

    data = made_up_dataset(np.random.default_rng(0))
    monkeypatch.setattr("mlp.data.load_dataset", lambda name: data)
    out = accuracy.time_to_accuracy_torch(SMALL, "cuda", 0.9, 20, impl="torch-graph")
    assert out["reached"] and out["accuracy_curve"][-1] >= 0.9
    assert out["compile_mode"] == "graph" and out["compile_seconds"] > 0
