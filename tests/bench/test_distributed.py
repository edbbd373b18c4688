"""bench/distributed.py: the all-reduce model and the projection built on it (formulas and
shapes, no timings), the bench's distributed rows skipped with a reason, and, where MPI is
here, one tiny real two-process measurement that must give finite positive numbers."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from bench import cli, report
from bench import distributed as dist
from bench.distributed import LINKS, Link, StepCurve
from bench.timing import Schedule
from bench.workloads import WORKLOADS
from tests.helpers import ROOT, mpiexec_or_skip

STD = dist.parameters_of(WORKLOADS["std"].sizes)
BIG = dist.parameters_of(WORKLOADS["big"].sizes)
#: A CPU-like curve: a fixed cost per step plus a cost per row (per-row cost never rising).
LINEAR = StepCurve(((1, 3e-4), (64, 1e-3), (1024, 1.2e-2)), 3e-4, "made up")


def test_parameters_are_the_models():
    assert (STD, BIG) == (535_818, 5_824_522)


@pytest.mark.parametrize("parameters", [STD, BIG, 1])
def test_ring_bytes_from_none_to_twice_the_buffer(parameters):
    assert dist.ring_bytes(parameters, 1) == 0
    assert dist.ring_bytes(parameters, 2) == 4 * parameters
    assert dist.ring_bytes(parameters, 4) == 6 * parameters
    assert dist.ring_bytes(parameters, 10**6) == pytest.approx(8 * parameters, rel=1e-5)
    assert dist.ring_bytes(parameters, 10**6) < 8 * parameters
    assert dist.ring_bytes(parameters, 2, itemsize=8) == 8 * parameters
    with pytest.raises(ValueError):
        dist.ring_bytes(parameters, 0)


def test_allreduce_time_is_the_alpha_beta_model():
    link = Link("test", bandwidth=1e9, alpha=1e-6)
    assert dist.allreduce_seconds(STD, 1, link) == 0
    assert dist.allreduce_seconds(STD, 8, link) == pytest.approx(6e-6 + 7 / 8 * 8 * STD / 1e9)
    ring = dist.allreduce_seconds(STD, 8, link, ring_latency=True)
    assert ring == pytest.approx(14e-6 + 7 / 8 * 8 * STD / 1e9)
    times = [dist.allreduce_seconds(BIG, n, link) for n in (2, 4, 8, 64, 512)]
    assert times == sorted(times)


def test_the_step_curve_passes_through_its_points_and_keeps_its_floor():
    curve = StepCurve(((256, 2.0), (128, 1.0), (1024, 4.0)), floor=0.5)
    assert [curve(b) for b in (128, 256, 1024)] == [1.0, 2.0, 4.0]  # sorted, then exact
    assert curve(192) == pytest.approx(1.5)
    assert curve(64) == 0.5  # in proportion below the first point: 64/128 × 1.0
    assert curve(1) == 0.5  # the floor
    assert curve(2048) == pytest.approx(4.0 + 2.0 / 768 * 1024)  # the last slope
    alone = StepCurve(((512, 1.0),), floor=0.1)
    assert alone(1024) == 2.0 and alone(256) == 0.5 and alone(8) == 0.1
    with pytest.raises(ValueError):
        StepCurve((), floor=0.0)


def test_a_step_on_fewer_rows_is_never_taken_as_slower_than_one_on_more():
    curve = StepCurve(((1, 3.0), (2, 1.0), (4, 2.0), (8, 1.5), (16, 4.0)), floor=0.1)
    assert curve.measured == ((1, 3.0), (2, 1.0), (4, 2.0), (8, 1.5), (16, 4.0))
    assert curve.points == ((1, 1.0), (2, 1.0), (4, 1.5), (8, 1.5), (16, 4.0))
    assert curve.to_dict()["measured"][0] == [1, 3.0]
    (line,) = dist.curve_lines({"std": StepCurve(((1, 3e-3), (2, 1e-3)), 0)})
    assert "1: 3 ms (taken as 1 ms), 2: 1 ms" in line


def curves():
    return {**dist.gpu_curves(), "linear": LINEAR}


@pytest.mark.parametrize("name", ["std", "big", "linear"])
@pytest.mark.parametrize("workers", [2, 8, 64, 512])
def test_efficiency_is_at_most_one_and_rises_with_bandwidth(name, workers):
    curve = curves()[name]
    batch = 4096
    for scaling, arg in ((dist.strong_scaling, batch), (dist.weak_scaling, 128)):
        previous = 0.0
        for bandwidth in (1e8, 1e9, 1e10, 1e11, 1e12):
            step, eff = scaling(curve, STD, arg, workers, Link("x", bandwidth, 5e-6))
            assert 0 < eff <= 1 and step > 0
            assert eff >= previous
            previous = eff
    fast, slow = Link("fast", 1e12, 1e-6), Link("slow", 1e12, 1e-4)
    assert (
        dist.weak_scaling(curve, BIG, 64, workers, fast)[1]
        > dist.weak_scaling(curve, BIG, 64, workers, slow)[1]
    )


def test_strong_scaling_needs_a_row_per_worker_and_one_worker_is_perfect():
    link = LINKS["ib400"]
    assert dist.strong_scaling(LINEAR, STD, 128, 512, link) is None
    assert dist.strong_scaling(LINEAR, STD, 128, 1, link) == (LINEAR(128), 1.0)
    assert dist.weak_scaling(LINEAR, STD, 128, 1, link) == (LINEAR(128), 1.0)


def test_the_batch_for_the_target_is_the_smallest_that_reaches_it():
    link = LINKS["eth25"]
    for n in (8, 64):
        b = dist.smallest_batch(lambda b, n=n: dist.weak_scaling(LINEAR, STD, b, n, link)[1])
        assert b is not None and b > 1 and dist.weak_scaling(LINEAR, STD, b, n, link)[1] >= 0.9
        assert dist.weak_scaling(LINEAR, STD, b // 2, n, link)[1] < 0.9
    assert dist.smallest_batch(lambda b: 0.5) is None


def test_the_gpu_curves_are_the_committed_h200_step_times():
    found = dist.gpu_curves()
    assert set(found) == {"std", "big"}
    assert [b for b, _ in found["std"].points] == [128, 256, 1024]
    assert [b for b, _ in found["big"].points] == [512]
    assert found["std"].floor == found["big"].floor == found["std"].points[0][1]
    assert all(0 < t < 1e-3 for c in found.values() for _, t in c.points)
    assert "H200" in found["std"].source


def test_the_tables_have_a_row_per_workload_link_and_worker_count():
    tables = dist.tables(dist.gpu_curves(), {"std": LINEAR, "big": LINEAR})
    assert set(tables) == {"gpu", "cpu"}
    gpu, cpu = tables["gpu"]["rows"], tables["cpu"]["rows"]
    assert len(gpu) == 2 * 3 * 3 and len(cpu) == 2 * 2 * 6
    assert {(r["link"], r["workers"]) for r in gpu} == {
        (link, n) for link in ("nvlink4", "ib400", "eth25") for n in (8, 64, 512)
    }
    assert {r["workers"] for r in cpu} == {2, 4, 8, 16, 32, 64}
    assert {r["link"] for r in cpu} == {"ib400", "eth25"}
    for row in gpu + cpu:
        assert row["bytes_per_step"] == dist.ring_bytes(row["parameters"], row["workers"])
        assert 0 < row["weak_efficiency"] <= 1
        assert row["strong_efficiency"] is None or 0 < row["strong_efficiency"] <= 1
    std_512 = next(r for r in gpu if (r["workload"], r["workers"]) == ("std", 512))
    assert std_512["strong_efficiency"] is None  # 128 rows for 512 GPUs
    text = dist.table_text(tables)
    assert "### GPUs" in text and "### CPU nodes" in text
    assert text.count("\n| std (B 128) |") == 9 + 12
    header = "| " + " | ".join(dist.PROJECTION_COLUMNS) + " |"
    assert text.count(header) == 2


def test_table_command_prints_the_gpu_projection():
    done = subprocess.run(
        [sys.executable, "-m", "bench.distributed", "--table", "--no-cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "### GPUs" in done.stdout and "NVLink 4" in done.stdout
    assert "### CPU nodes" not in done.stdout
    nothing = subprocess.run(
        [sys.executable, "-m", "bench.distributed"], cwd=ROOT, capture_output=True, text=True
    )
    assert nothing.returncode == 2 and "--table" in nothing.stderr


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--no-distributed"], "--no-distributed"),
        (["--workloads", "tiny"], "none of std, big in --workloads"),
    ],
)
def test_the_bench_rows_are_skipped_with_a_reason(argv, reason):
    args = cli.build_parser().parse_args(argv)
    section = dist.run_section(args, real=False, devices=["cpu"])
    assert section == {"processes": 2, "rows": [], "status": "skipped", "reason": reason}
    assert report.dist_lines(section, markdown=False) == [f"distributed: skipped ({reason})"]


def test_without_mpi_the_rows_are_skipped_not_a_crash(monkeypatch):
    monkeypatch.setattr(dist.importlib.util, "find_spec", lambda name: None)
    args = cli.build_parser().parse_args(["--workloads", "std"])
    section = dist.run_section(args, real=False, devices=["cpu"])
    assert section["status"] == "skipped" and section["rows"] == []
    assert section["reason"] == "mpi4py is not installed (pip install -e '.[dist]')"
    assert dist.run_section(args, False, devices=["cuda"])["reason"] == "no cpu in --devices"


def test_two_real_processes_give_finite_positive_numbers():
    """A few steps of tiny on synthetic data, alone and as a world of two under mpiexec."""
    mpiexec_or_skip()
    start = time.perf_counter()
    rows = dist.measure_pair("tiny", 6, False, Schedule(warmup=1, epochs=1, max_extra=0), 60)
    assert time.perf_counter() - start < 60
    alone, world = rows
    for row in rows:
        assert row["status"] == "ok", row.get("reason", "") + row.get("output_tail", "")
        assert math.isfinite(row["median_seconds"]) and row["median_seconds"] > 0
        assert row["steps"] == 6 and row["parameters"] == dist.parameters_of((784, 128, 10))
    assert (alone["processes"], world["processes"]) == (1, 2)
    assert alone["bytes_per_step"] == 0 and world["bytes_per_step"] == 4 * world["parameters"]
    assert len(world["threads_each"]) == 2
    for key in ("allreduce_seconds", "allreduce_share", "speed_vs_one_process"):
        assert math.isfinite(world[key]) and world[key] > 0, key
    cells = report.dist_cells(world)
    assert cells[1] == world["label"] and cells[5].endswith("%")
