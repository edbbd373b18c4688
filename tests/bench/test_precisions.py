"""``--precisions``: a table per matmul precision, each row compared within its own.

A benchmark is not a test: nothing here checks a timing. The rows' seconds are made up
(``run_task`` replaced) so that every ratio has one right answer, and one real run on the
CPU checks that bf16 rows exist end to end with figures of their own.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import cli, report
from bench.limit import measure_limit
from bench.ours import train_ours
from bench.timing import Schedule
from bench.workloads import WORKLOADS, synthetic_data
from tests.helpers import run_module


def parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def planned(argv: list[str], device: str) -> list[tuple[str, str]]:
    return [(r["precision"], r["impl"]) for r in cli.plan(parse(*argv), [device])]


def test_each_precision_plans_its_own_rows_ours_first():
    argv = ["--workloads", "std", "--precisions", "bf16,tf32,float32", "--peers", "torch,sklearn"]
    # on the CPU each precision's limit is timed again after ours (bench.cli.BRACKETED)
    ours = [(p, impl) for p in ("float32", "tf32", "bf16") for impl in ("limit", "mlp", "limit")]
    assert planned(argv, "cpu") == [
        *ours,
        ("float32", "textbook"),
        ("float32", "torch"),
        ("float32", "sklearn"),
        ("tf32", "torch"),  # TF32 on; no textbook or scikit-learn row but at float32
    ]
    argv = ["--workloads", "std", "--precisions", "tf32,bf16", "--peers", "torch-graph"]
    assert planned([*argv, "--no-textbook"], "cuda") == [
        ("tf32", "limit"),
        ("tf32", "mlp"),
        ("bf16", "limit"),
        ("bf16", "mlp"),
        ("tf32", "torch-graph"),  # and no PyTorch row at bf16
    ]


def test_order_peer_runs_ours_everywhere_then_each_peer_over_every_workload():
    argv = ["--workloads", "big,std", "--precisions", "float32,bf16", "--no-textbook"]
    argv += ["--peers", "torch-graph,torch", "--order", "peer"]
    rows = [(r["workload"], r["precision"], r["impl"]) for r in cli.plan(parse(*argv), ["cuda"])]
    ours = [(p, impl) for p in ("float32", "bf16") for impl in ("limit", "mlp")]
    assert rows == [
        *(("big", *row) for row in ours),
        *(("std", *row) for row in ours),
        ("big", "float32", "torch-graph"),
        ("std", "float32", "torch-graph"),
        ("big", "float32", "torch"),
        ("std", "float32", "torch"),
    ]
    default = [(r["workload"], r["impl"]) for r in cli.plan(parse(*argv[:-2]), ["cuda"])]
    assert default[4:6] == [("big", "torch-graph"), ("big", "torch")]  # each workload whole


def test_float32_alone_is_the_default_and_every_row_says_so():
    args = parse()
    assert args.precisions == ["float32"]
    assert {r["precision"] for r in cli.plan(args, ["cpu", "cuda"])} == {"float32"}
    assert parse("--precisions", "bf16,float32,bf16").precisions == ["float32", "bf16"]


def test_an_unknown_precision_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        parse("--precisions", "fp8")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unknown precision fp8: choose from float32, tf32, bf16" in err


#: Made-up epoch seconds of each (impl, precision) row of big on cuda.
SECONDS = {
    ("limit", "float32"): 1.0,
    ("mlp", "float32"): 1.2,
    ("torch", "float32"): 3.0,
    ("torch-graph", "float32"): 2.4,
    ("limit", "tf32"): 0.5,
    ("mlp", "tf32"): 0.55,
    ("torch", "tf32"): 1.5,
    ("torch-graph", "tf32"): 1.0,
    ("limit", "bf16"): 0.25,
    ("mlp", "bf16"): 0.4,
}


@pytest.fixture
def measured(monkeypatch) -> dict[tuple[str, str], dict]:
    """Every row of big on cuda at the three precisions, through ``run_benchmark`` with
    each row's seconds taken from ``SECONDS`` and no process started."""
    specs: list[dict] = []

    def fake_run_task(spec: dict, timeout: float) -> dict:
        specs.append(spec)
        return {"status": "ok", "median_seconds": SECONDS[spec["impl"], spec["precision"]]}

    monkeypatch.setattr(cli, "run_task", fake_run_task)
    monkeypatch.setattr(cli, "installed", lambda peer: True)
    args = parse(
        "--workloads", "big", "--precisions", "float32,tf32,bf16", "--peers", "torch,torch-graph",
        "--no-textbook",
    )  # fmt: skip
    rows = cli.run_benchmark(args, False, ["cuda"], {}, {"torch": "2.x"})
    assert [(s["impl"], s["precision"]) for s in specs] == [
        (r["impl"], r["precision"]) for r in rows
    ]  # the worker is told each row's precision
    return {(r["impl"], r["precision"]): r for r in rows}


def test_ratios_and_pytorch_comparisons_stay_within_a_precision(measured):
    mlp, tf32, bf16 = measured["mlp", "float32"], measured["mlp", "tf32"], measured["mlp", "bf16"]
    assert mlp["ratio_to_limit"] == pytest.approx(1.2)
    assert mlp["speed_vs_torch"] == pytest.approx(2.5)
    assert mlp["speed_vs_best_torch"] == pytest.approx(2.0)  # the float32 graph row, 2.4 s
    assert tf32["ratio_to_limit"] == pytest.approx(1.1)
    assert tf32["speed_vs_torch"] == pytest.approx(1.5 / 0.55)
    assert tf32["speed_vs_best_torch"] == pytest.approx(1.0 / 0.55)
    assert measured["torch", "tf32"]["ratio_to_limit"] == pytest.approx(3.0)  # tf32's limit
    assert bf16["ratio_to_limit"] == pytest.approx(1.6)
    assert "speed_vs_torch" not in bf16 and "speed_vs_best_torch" not in bf16
    assert bf16["speed_vs_float32"] == pytest.approx(3.0)
    assert measured["limit", "bf16"]["speed_vs_float32"] == pytest.approx(4.0)
    assert "speed_vs_float32" not in mlp
    assert bf16["label"] == "mlp (this library), bf16" and mlp["label"] == "mlp (this library)"
    assert measured["torch-graph", "tf32"]["label"] == "PyTorch 2.x CUDA graph, tf32"


def test_targets_read_float32_rows_and_bf16_against_float32(measured):
    lines = report.target_lines(list(measured.values()))
    assert "target big on cuda: 1.20 × limit (≤ 1.15): NOT met" in lines  # not tf32's 1.10
    fastest = "met (fastest: torch-graph, of torch, torch-graph)"  # float32's rows alone
    assert f"target big on cuda: 2.00 vs fastest PyTorch (≥ 1): {fastest}" in lines
    assert "target big on cuda: 3.00 bf16 speed-up over float32 (≥ 1.5): met" in lines


def row(impl: str, precision: str | None, seconds: float, status: str = "ok", **more) -> dict:
    out = {"workload": "big", "device": "cuda", "impl": impl, "status": status,
           "median_seconds": seconds, "label": f"{impl} {precision}", **more}  # fmt: skip
    return out if precision is None else {**out, "precision": precision}


def bf16_target(rows: list[dict]) -> str:
    cli.compare_to_float32(rows)
    (line,) = [line for line in report.target_lines(rows) if "bf16" in line]
    return line


def test_the_bf16_target_is_our_float32_time_over_our_bf16_time():
    head = "target big on cuda:"
    what = "bf16 speed-up over float32 (≥ 1.5)"
    fast = [row("mlp", "float32", 2.0), row("mlp", "bf16", 1.0)]
    assert bf16_target(fast) == f"{head} 2.00 {what}: met"
    slow = [row("mlp", None, 1.0), row("mlp", "bf16", 0.8)]  # no precision: an older float32 row
    assert bf16_target(slow) == f"{head} 1.25 {what}: NOT met"
    failed = [row("mlp", "float32", 1.0), row("mlp", "bf16", 0.5, status="error")]
    assert bf16_target(failed) == f"{head} {what}: pending (our float32 or bf16 row did not run)"
    alone = [row("mlp", "float32", 1.0)]
    no_bf16 = "no bf16 row of ours: add bf16 to --precisions"
    assert bf16_target(alone) == f"{head} {what}: pending ({no_bf16})"


def test_a_run_without_float32_rows_has_no_targets():
    assert report.target_lines([row("mlp", "tf32", 1.0), row("mlp", "bf16", 1.0)]) == []


MACHINE = {"cpu": {"model": "a CPU", "usable_cores": 2}, "blas": {}, "versions": {},
           "date": "2026-12-02"}  # fmt: skip
CONFIG = {"data": "synthetic", "epochs": 1, "warmup": 0, "limit_repeats": 5,
          "quiet_threshold": 0.1, "max_extra": 0}  # fmt: skip


def printed(text: str, headings: list[str]) -> list[str]:
    """The report's table headings and its rows' labels, in the order printed."""
    return [
        line if line in headings else line.split(" | ")[2]
        for line in text.splitlines()
        if line in headings or line.startswith("| big |")
    ]


def test_the_report_prints_a_table_per_precision_float32_first():
    rows = [
        row("limit", "bf16", 0.2, samples_per_second=1.0),
        row("limit", None, 1.0, samples_per_second=1.0),  # an older row: float32
        row("mlp", "tf32", 0.5, samples_per_second=1.0),
        row("mlp", "float32", 1.2, samples_per_second=1.0),
        row("torch", "tf32", 0.9, samples_per_second=1.0),
    ]
    text = report.summary_text({"machine": MACHINE, "config": CONFIG, "rows": rows}, True)
    float32, tf32, bf16 = (report.table_heading(p, rows) for p in ("float32", "tf32", "bf16"))
    assert printed(text, [float32, tf32, bf16]) == [
        float32,
        "limit None",
        "mlp float32",
        tf32,
        "mlp tf32",
        "torch tf32",
        bf16,
        "limit bf16",
    ]
    assert tf32.startswith("TF32 on for both sides") and float32.endswith("TF32 off on both sides:")
    assert "emulated" in report.table_heading("bf16", [{"device": "cpu"}])
    assert "emulated" not in report.table_heading("float32", [{"device": "cpu"}])


def test_a_bf16_run_on_the_cpu_has_rows_and_a_table_of_its_own(tmp_path):
    done = run_module(
        "bench", "--workloads", "tiny", "--devices", "cpu", "--precisions", "float32,bf16",
        "--steps", "3", "--epochs", "1", "--warmup", "0", "--peers", "none", "--no-textbook",
        "--no-time-to-accuracy", "--no-cli-rss", "--no-distributed", "--no-plot",
        "--data", "synthetic", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    (path,) = tmp_path.glob("*-cpu-*.json")
    results = json.loads(path.read_text())
    assert results["config"]["precisions"] == ["float32", "bf16"]
    rows = {(r["impl"], r["precision"]): r for r in results["rows"]}
    assert list(rows) == [(impl, p) for p in ("float32", "bf16") for impl in ("limit", "mlp")]
    for impl in ("limit", "mlp"):
        bf16 = rows[impl, "bf16"]
        assert bf16["status"] == "ok", bf16
        assert bf16["median_seconds"] > 0 and bf16["speed_vs_float32"] > 0
        assert bf16["limit_seconds"] == rows["limit", "bf16"]["median_seconds"]
        assert bf16["label"].endswith(", bf16")
    assert math.isfinite(rows["mlp", "bf16"]["final_loss"])
    assert rows["mlp", "bf16"]["ratio_to_limit"] == pytest.approx(
        rows["mlp", "bf16"]["median_seconds"] / rows["limit", "bf16"]["median_seconds"]
    )
    float32_heading, bf16_heading = (
        report.table_heading(p, [{"device": "cpu"}]) for p in ("float32", "bf16")
    )
    for text in (done.stdout, path.with_suffix(".md").read_text()):
        assert text.index(float32_heading) < text.index("mlp (this library), bf16")
        assert text.index(bf16_heading) < text.index("mlp (this library), bf16")
        assert text.index(float32_heading) < text.index(bf16_heading)
    ratio = rows["mlp", "float32"]["ratio_to_limit"]
    assert f"target tiny on cpu: {ratio:.2f} × limit (≤ 1.6)" in done.stdout


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_the_limit_and_ours_run_at_a_reduced_precision_on_a_gpu(cuda_backend, precision):
    """Tensor-core products replay as a CUDA graph, as float32 ones do; our model trains."""
    schedule = Schedule(warmup=1, epochs=2, max_extra=0)
    limit = measure_limit(WORKLOADS["tiny"], "cuda", 1000, schedule, precision=precision)
    assert limit["recorded"] is True and limit["median_seconds"] > 0
    X, y = synthetic_data(1000)
    ours = train_ours(WORKLOADS["tiny"], "cuda", X, y, schedule, precision=precision)
    assert ours["median_seconds"] > 0 and math.isfinite(ours["final_loss"])
