"""Data-parallel training measured on this machine, and its scaling projected on paper.

- **The bench's distributed rows** (``python -m bench``, ``--no-distributed`` to leave them
  out; docs/scaling.md): one epoch of std and big with one process on all of this machine's
  cores, then with two processes under ``mpiexec -n 2`` sharing them (half each), as
  ``fit(..., communicator=...)`` trains; and, in that same world, the blocking ``Allreduce``
  of a gradient-sized buffer alone, timed to say what share of an epoch the all-reduce is.
  Two processes on one machine split its cores rather than add any: the rows measure what the
  data-parallel path costs, not a speed-up from more hardware.
- **The projection** (``python -m bench.distributed --table``): an α–β model of the
  all-reduce, with the compute of a step taken from measured step times (the committed H200
  run for GPUs, this machine for CPU nodes), gives the step time and scaling efficiency at
  8-512 GPUs and 2-64 CPU nodes, and the batch that keeps efficiency at 90 % or more.

mpi4py is imported only inside the world's processes: the bench itself never starts MPI.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .machine import cpu_cores
from .runner import ROOT, run_task, write_result
from .timing import OtherWork, Schedule, run_epochs
from .workloads import EPOCH_SAMPLES, WORKLOADS, Workload, epoch_samples, steps_per_epoch

#: The workloads the bench's distributed rows run (those of them in ``--workloads``).
DISTRIBUTED_WORKLOADS = ("std", "big")
#: Processes in the bench's world: this machine's cores are shared between them.
PROCESSES = 2
#: Bytes per gradient value: the flat buffer is float32.
FLOAT32 = 4
#: The committed GPU run whose step times the GPU projection takes (docs/benchmarks.md).
GPU_RESULTS = ROOT / "bench" / "results" / "2026-11-27-cpu-intel-xeon-cuda-nvidia-h200-3.json"
#: Batch sizes at which ``--table`` measures this machine's step time, one process.
CPU_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: The efficiency the projection asks a batch size to keep.
TARGET_EFFICIENCY = 0.9
#: Batch sizes tried for that target: powers of two up to 2**26 (67M samples).
CANDIDATE_BATCHES = tuple(2**k for k in range(27))


# ---------------------------------------------------------------------------- the model
def ring_bytes(parameters: int, workers: int, itemsize: int = FLOAT32) -> float:
    """Bytes each worker sends (and as many it receives) in one all-reduce of ``parameters``
    values: 2(N−1)/N × itemsize × P. A ring's reduce-scatter and all-gather each pass N−1
    pieces of P/N values; recursive halving and doubling moves the same bytes."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return 2 * (workers - 1) / workers * itemsize * parameters


@dataclass(frozen=True)
class Link:
    """What one worker's all-reduce runs over: bandwidth per direction (bytes/s) and the
    latency α of one round of messages (s)."""

    name: str
    bandwidth: float
    alpha: float


#: The links projected. β: NVLink 4 is 900 GB/s both ways per H100/H200 (450 each way);
#: one 400 Gb/s NIC per GPU (an HGX node's eight) is 50 GB/s; 25 Gb/s is 3.125 GB/s.
#: α (assumed): NCCL's own tuning model (src/graph/tuning.cc, ring, Simple protocol) charges
#: 3.4 µs per step over NVLink and 9.6 µs over the network; TCP over 25 GbE, 30 µs.
LINKS: dict[str, Link] = {
    "nvlink4": Link("NVLink 4 (450 GB/s)", 450e9, 3.4e-6),
    "ib400": Link("InfiniBand 400 Gb/s (50 GB/s)", 50e9, 9.6e-6),
    "eth25": Link("Ethernet 25 Gb/s (3.125 GB/s)", 3.125e9, 30e-6),
}
#: The projection's scenarios: links and worker counts, for GPUs and for CPU nodes.
GPU_SCENARIOS = (("nvlink4", "ib400", "eth25"), (8, 64, 512))
CPU_SCENARIOS = (("ib400", "eth25"), (2, 4, 8, 16, 32, 64))


def allreduce_seconds(
    parameters: int, workers: int, link: Link, itemsize: int = FLOAT32, ring_latency: bool = False
) -> float:
    """The α–β time of one bandwidth-optimal all-reduce: 2·log2(N)·α + 2(N−1)/N·itemsize·P/β
    (Rabenseifner's recursive halving and doubling, Thakur, Rabenseifner & Gropp 2005: the
    ring's bytes in 2·log2 N rounds); ``ring_latency``: a plain ring's 2(N−1)·α instead."""
    if workers == 1:
        return 0.0
    rounds = 2 * (workers - 1) if ring_latency else 2 * math.ceil(math.log2(workers))
    return rounds * link.alpha + ring_bytes(parameters, workers, itemsize) / link.bandwidth


@dataclass(frozen=True)
class StepCurve:
    """Seconds per training step against the batch, from measured points: linear between
    them; above the largest, the last segment's slope (in proportion to the batch when only
    one point is measured); below the smallest, in proportion to the batch but never under
    ``floor``, the launch- (or interpreter-) bound step: a GPU at batch 128 runs twenty
    small kernels of a few µs each, which a smaller batch does not make fewer.

    A step on fewer rows is never taken to be slower than one measured on more: each point
    is lowered to the fastest measured at a larger batch (on a shared machine, a point above
    a later one is noise). ``measured`` keeps the points as given."""

    points: tuple[tuple[int, float], ...]
    floor: float
    source: str = ""
    measured: tuple[tuple[int, float], ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a step curve needs at least one measured point")
        measured = tuple(sorted(self.points))
        envelope, fastest = [], math.inf
        for batch, seconds in reversed(measured):
            fastest = min(fastest, seconds)
            envelope.append((batch, fastest))
        object.__setattr__(self, "measured", measured)
        object.__setattr__(self, "points", tuple(reversed(envelope)))

    def __call__(self, batch: float) -> float:
        (b0, t0), (bn, tn) = self.points[0], self.points[-1]
        if batch <= b0:
            return max(min(self.floor, t0), t0 * batch / b0)
        if batch >= bn:
            if len(self.points) == 1:
                return tn * batch / bn
            bp, tp = self.points[-2]
            return tn + (tn - tp) / (bn - bp) * (batch - bn)
        for (lo, tlo), (hi, thi) in itertools.pairwise(self.points):
            if lo <= batch <= hi:
                return tlo + (thi - tlo) * (batch - lo) / (hi - lo)
        raise AssertionError("the points cover every batch between the first and the last")

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": [list(p) for p in self.measured],
            "points": [list(p) for p in self.points],
            "floor": self.floor,
            "source": self.source,
        }


def strong_scaling(
    curve: StepCurve, parameters: int, batch: int, workers: int, link: Link
) -> tuple[float, float] | None:
    """``(step seconds, efficiency)`` at a fixed global batch: each of N workers computes
    B/N rows, then the all-reduce (no overlap: conservative); efficiency T1 / (N × TN).
    ``None`` when the batch leaves some worker without rows."""
    if batch < workers:
        return None
    step = curve(batch / workers) + allreduce_seconds(parameters, workers, link)
    return step, curve(batch) / (workers * step)


def weak_scaling(
    curve: StepCurve, parameters: int, per_worker: int, workers: int, link: Link
) -> tuple[float, float]:
    """``(step seconds, efficiency)`` with each worker's batch fixed (the global batch N×b):
    efficiency T1 / TN, the compute of the step over the compute and the all-reduce."""
    step = curve(per_worker) + allreduce_seconds(parameters, workers, link)
    return step, curve(per_worker) / step


def smallest_batch(efficiency: Callable[[int], float | None]) -> int | None:
    """The smallest of ``CANDIDATE_BATCHES`` whose efficiency reaches ``TARGET_EFFICIENCY``."""
    for batch in CANDIDATE_BATCHES:
        value = efficiency(batch)
        if value is not None and value >= TARGET_EFFICIENCY:
            return batch
    return None


def parameters_of(sizes: Sequence[int]) -> int:
    """Weights and biases of a dense network with these layer sizes."""
    return sum(m * n + n for m, n in itertools.pairwise(sizes))


def projected(curve: StepCurve, name: str, key: str, workers: int) -> dict[str, Any]:
    """One row of the projection: workload ``name`` over link ``key`` on ``workers``: bytes
    and seconds of the all-reduce, strong scaling at the workload's batch, weak scaling at
    that batch per worker, and the smallest batch of each that keeps 90 %."""
    workload, link = WORKLOADS[name], LINKS[key]
    parameters, batch = parameters_of(workload.sizes), workload.batch_size
    strong = strong_scaling(curve, parameters, batch, workers, link)
    weak = weak_scaling(curve, parameters, batch, workers, link)

    def strong_efficiency(b: int) -> float | None:
        found = strong_scaling(curve, parameters, b, workers, link)
        return None if found is None else found[1]

    return {
        "workload": name,
        "parameters": parameters,
        "batch": batch,
        "link": key,
        "workers": workers,
        "bytes_per_step": ring_bytes(parameters, workers),
        "allreduce_seconds": allreduce_seconds(parameters, workers, link),
        "ring_latency_allreduce_seconds": allreduce_seconds(
            parameters, workers, link, ring_latency=True
        ),
        "compute_seconds": curve(batch),
        "strong_step_seconds": None if strong is None else strong[0],
        "strong_efficiency": None if strong is None else strong[1],
        "weak_step_seconds": weak[0],
        "weak_efficiency": weak[1],
        "strong_batch_for_target": smallest_batch(strong_efficiency),
        "weak_batch_for_target": smallest_batch(
            lambda b: weak_scaling(curve, parameters, b, workers, link)[1]
        ),
    }


def projection(
    curves: dict[str, StepCurve], links: Sequence[str], workers: Sequence[int]
) -> list[dict[str, Any]]:
    """``projected`` for every workload (a name of ``WORKLOADS``, with its curve), link and
    worker count, in that order."""
    return [
        projected(curve, name, key, n)
        for name, curve in curves.items()
        for key in links
        for n in workers
    ]


# ---------------------------------------------------------------------- measured step times
def gpu_curves(path: Path = GPU_RESULTS) -> dict[str, StepCurve]:
    """std's and big's step times on the GPU of a committed bench run: each ``mlp`` row's
    epoch seconds over its steps, std's from its three batch sizes (std, std-b256,
    std-b1024 share the model); the floor is the shortest step measured on that GPU."""
    results = json.loads(path.read_text())
    points: dict[tuple[int, ...], list[tuple[int, float]]] = {}
    for row in results["rows"]:
        if row["impl"] != "mlp" or row["device"] == "cpu" or row.get("status") != "ok":
            continue
        workload = results["workloads"][row["workload"]]
        step = row["median_seconds"] / row["steps"]
        points.setdefault(tuple(workload["sizes"]), []).append((workload["batch_size"], step))
    if not points:
        raise ValueError(f"{path}: no GPU rows of this library")
    floor = min(t for found in points.values() for _, t in found)
    gpu = next((d for d in results["machine"].get("devices", {}).values()), {})
    source = f"{gpu.get('device_name', 'GPU')}, {path.name}"
    return {
        name: StepCurve(tuple(points[WORKLOADS[name].sizes]), floor, source)
        for name in DISTRIBUTED_WORKLOADS
        if WORKLOADS[name].sizes in points
    }


def measure_step(workload: Workload, batch: int, X: Any, y: Any, seconds: float) -> float:
    """Seconds per step of ``fit`` at ``batch`` rows, one process with every core: a short
    epoch to compile and estimate, then epochs of enough steps to fill ``seconds``, median."""
    from mlp import MLP

    from .ours import make_optimizer

    model = MLP(list(workload.sizes), activation=workload.activation, dtype="float32", seed=0)
    optimizer = make_optimizer(workload)
    steps = [3]

    def run_epoch(i: int) -> float:
        rows = steps[0] * batch
        (record,) = model.fit(
            X[:rows], y[:rows], epochs=i + 1, initial_epoch=i, seed=0, shuffle=True,
            batch_size=batch, optimizer=optimizer,
        )  # fmt: skip
        return record["seconds"]

    estimate = min(run_epoch(0), run_epoch(1)) / steps[0]
    steps[0] = max(3, min(X.shape[0] // batch, math.ceil(seconds / max(estimate, 1e-9))))
    out = run_epochs(lambda i: run_epoch(i + 2), Schedule(warmup=1, epochs=5, max_extra=3))
    return out["median_seconds"] / steps[0]


def cpu_curves(
    batches: Sequence[int] = CPU_BATCHES,
    seconds: float = 0.4,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, StepCurve]:
    """std's and big's step times on this machine, one process on all its cores, at each
    of ``batches`` (synthetic data: the step's time does not depend on the values)."""
    from .workloads import synthetic_data

    X, y = synthetic_data(EPOCH_SAMPLES)
    measured = {}
    for name in DISTRIBUTED_WORKLOADS:
        workload = WORKLOADS[name]
        measure_step(workload, 64, X, y, seconds)  # not kept: compiles, allocates, warms up
        found = []
        for batch in batches:
            found.append((batch, measure_step(workload, batch, X, y, seconds)))
            log(f"{name} at batch {batch}: {duration(found[-1][1])} per step")
        measured[name] = found
    floor = min(t for found in measured.values() for _, t in found)
    cores = cpu_cores()
    source = f"this machine, 1 process × {cores} core{'s' * (cores > 1)}"
    return {name: StepCurve(tuple(found), floor, source) for name, found in measured.items()}


# ---------------------------------------------------------------------- the world's worker
class WorldWork(OtherWork):
    """Other work on the machine during an epoch of a world of processes on it: each one's
    CPU time is the timed work's, not other work; rank 0's judgement holds for all, so
    that every process runs the same number of epochs."""

    def __init__(self, world: Any) -> None:
        self.world = world

    def start(self) -> None:
        self.world.barrier()
        super().start()

    def own_seconds(self) -> float:
        return self.world.comm.allreduce(super().own_seconds())

    def stop(self) -> float | None:
        return self.world.comm.bcast(super().stop(), root=0)


def time_allreduce(world: Any, parameters: int, seconds: float = 0.5) -> dict[str, Any]:
    """The blocking ``Allreduce`` of ``parameters`` float32 values alone, in ``world``:
    seconds per call, the median of 5 rounds (each the slowest process's mean), the calls
    per round chosen so that all of them take about ``seconds``."""
    import numpy as np
    from mpi4py import MPI

    comm = world.comm
    buffer = np.zeros(parameters, np.float32)

    def round_of(calls: int) -> float:
        comm.Barrier()
        start = time.perf_counter()
        for _ in range(calls):
            comm.Allreduce(MPI.IN_PLACE, buffer)
        return comm.allreduce((time.perf_counter() - start) / calls, op=MPI.MAX)

    round_of(3)
    calls = max(5, min(2000, int(seconds / 5 / max(round_of(5), 1e-9))))
    rounds = [round_of(calls) for _ in range(5)]
    return {
        "allreduce_seconds": statistics.median(rounds),
        "allreduce_rounds": rounds,
        "allreduce_calls": calls,
    }


def measure(spec: dict[str, Any], world: Any = None) -> dict[str, Any]:
    """One distributed row in one of its processes: the workload's epochs (``fit`` with
    ``communicator=world``, each epoch the slowest process's seconds), each process's BLAS
    held to ``threads`` (the environment cannot make the two cases unequal), and in a world
    of several, the all-reduce alone."""
    import threadpoolctl

    from mlp import MLP
    from mlp.distributed import blas_threads

    from .memory import reset_peak_rss
    from .ours import make_optimizer
    from .workloads import training_data

    def hold_threads() -> None:
        """Again before every epoch: Numba's first use loads SciPy, whose own OpenBLAS
        would otherwise run as many threads as there are cores."""
        threadpoolctl.threadpool_limits(spec["threads"], user_api="blas")

    hold_threads()
    workload = WORKLOADS[spec["workload"]]
    X, y, source = training_data(spec["real"], spec["samples"])
    reset = reset_peak_rss()
    model = MLP(
        list(workload.sizes), activation=workload.activation, device="cpu", dtype="float32", seed=0
    )
    optimizer = make_optimizer(workload)
    losses: list[float] = []

    def run_epoch(i: int) -> float:
        hold_threads()
        (record,) = model.fit(
            X, y, epochs=i + 1, initial_epoch=i, seed=0, shuffle=True,
            batch_size=workload.batch_size, optimizer=optimizer, communicator=world,
        )  # fmt: skip
        losses.append(record["loss"])
        if world is None:
            return record["seconds"]
        from mpi4py import MPI

        return world.comm.allreduce(record["seconds"], op=MPI.MAX)

    schedule = Schedule(spec["warmup"], spec["epochs"], spec["max_extra"])
    out = run_epochs(run_epoch, schedule, WorldWork(world) if world is not None else None)
    size = 1 if world is None else world.size
    steps = steps_per_epoch(workload, spec["samples"])
    out.update(
        processes=size,
        threads_each=[blas_threads()] if world is None else world.comm.allgather(blas_threads()),
        parameters=model.num_parameters,
        steps=steps,
        step_seconds=out["median_seconds"] / steps,
        bytes_per_step=ring_bytes(model.num_parameters, size),
        final_loss=losses[-1],
        data=source,
        rss_reset_after_data=reset,
    )
    if world is not None:
        out.update(time_allreduce(world, model.num_parameters))
        out["allreduce_share"] = out["allreduce_seconds"] * steps / out["median_seconds"]
        out["mpi"] = world.library()
        out["overlap"] = world.overlap
    return out


def worker_main(spec: dict[str, Any], result_path: Path) -> int:
    """``python -m bench.worker`` for a ``dist`` spec, in each process of the world (or the
    one process): rank 0 writes the result; a failure on any rank ends them all, rather than
    leave the others waiting in a collective until the row's timeout."""
    from .memory import peak_rss_bytes
    from .worker import classify

    world = None
    if spec["processes"] > 1:
        from mlp.distributed import Communicator

        world = Communicator()
    root = world is None or world.is_root
    try:
        if world is not None and world.size != spec["processes"]:
            raise RuntimeError(f"started {world.size} processes, expected {spec['processes']}")
        result = {"status": "ok", **measure(spec, world)}
    except Exception as exc:
        result = classify(exc, spec)
        if world is not None and world.size > 1:
            if root:
                write_result(result, result_path)
            traceback.print_exc()
            world.abort(1)
    result["peak_rss_bytes"], result["rss_source"] = peak_rss_bytes()
    if root:
        write_result(result, result_path)
    return 0 if result["status"] == "ok" else 1


# ---------------------------------------------------------------------- the bench's rows
def launcher() -> str | None:
    """The MPI launcher beside this Python (the ``dist`` extra's MPICH), else on ``PATH``."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def unavailable() -> str | None:
    """Why the distributed rows cannot run here (``None``: they can)."""
    for module in ("mpi4py", "threadpoolctl"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dist]')"
    if launcher() is None:
        return "no mpiexec beside this Python or on PATH (pip install -e '.[dist]' brings MPICH's)"
    if cpu_cores() < PROCESSES:
        return f"{cpu_cores()} core: {PROCESSES} processes need {PROCESSES}"
    return None


def measure_pair(
    name: str,
    steps: int | None,
    real: bool,
    schedule: Schedule,
    timeout: float,
    log: Callable[[str], None] = lambda message: None,
) -> list[dict[str, Any]]:
    """Workload ``name`` with one process on every core, then ``PROCESSES`` processes under
    the launcher sharing them; the second row says its speed against the first."""
    workload, cores = WORKLOADS[name], cpu_cores()
    samples = epoch_samples(workload, steps)
    rows = []
    for processes in (1, PROCESSES):
        threads = max(1, cores // processes)
        row: dict[str, Any] = {
            "workload": name,
            "processes": processes,
            "threads": threads,
            "label": f"{processes} × {threads}",
            "samples": samples,
            "steps": steps_per_epoch(workload, samples),
            "full_steps": steps_per_epoch(workload, EPOCH_SAMPLES),
        }
        log(f"distributed: {name}, {processes} process(es) × {threads} BLAS thread(s) …")
        spec = {
            **row,
            "impl": "dist",
            "device": "cpu",
            "real": real,
            "warmup": schedule.warmup,
            "epochs": schedule.epochs,
            "max_extra": schedule.max_extra,
        }
        command = [] if processes == 1 else [launcher() or "mpiexec", "-n", str(processes)]
        row.update(run_task(spec, timeout, launcher=command))
        rows.append(row)
    alone, world = rows
    if alone["status"] == "ok" and world["status"] == "ok":
        world["speed_vs_one_process"] = alone["median_seconds"] / world["median_seconds"]
    return rows


def run_section(
    args: argparse.Namespace,
    real: bool,
    devices: Sequence[str],
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The bench's distributed rows, or why they are skipped: ``--no-distributed``, no CPU
    in ``--devices``, neither std nor big in ``--workloads``, or no MPI here. The epochs are
    cut as the CPU rows' are (``--steps``, ``--cpu-steps``); at most 1 warm-up and 2 timed
    epochs (1 more if busy) per row, so that the four rows add a few minutes, not ten."""
    out: dict[str, Any] = {"processes": PROCESSES, "rows": []}
    names = [n for n in args.workloads if n in DISTRIBUTED_WORKLOADS]
    why = (
        "--no-distributed"
        if not args.distributed
        else "no cpu in --devices"
        if "cpu" not in devices
        else f"none of {', '.join(DISTRIBUTED_WORKLOADS)} in --workloads"
        if not names
        else unavailable()
    )
    if why:
        return {**out, "status": "skipped", "reason": why}
    schedule = Schedule(min(args.warmup, 1), min(args.epochs, 2), min(args.max_extra, 1))
    out["schedule"] = (
        f"{schedule.epochs} timed epoch(s) after {schedule.warmup} warm-up, median, "
        f"up to {schedule.max_extra} more if the machine was busy"
    )
    for name in names:
        steps = args.steps
        if name in args.cpu_steps:
            steps = min(steps or args.cpu_steps[name], args.cpu_steps[name])
        out["rows"] += measure_pair(name, steps, real, schedule, args.row_timeout, log)
    return {**out, "status": "ok"}


# ---------------------------------------------------------------------- tables
def duration(seconds: float | None) -> str:
    """``87 µs``, ``1.23 ms``, ``2.41 s``; ``—`` for none."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs" if seconds >= 1e-5 else f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def megabytes(n: float | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} MB"


def percent(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}" if x >= 0.1 else f"{x:.1%}"


def batch_text(batch: int | None, workers: int = 1) -> str:
    """A batch for the target: ``> 67,108,864`` when no candidate reaches it; ``*`` marks
    one whose global batch (``workers`` × it) is more than an epoch of Fashion-MNIST."""
    if batch is None:
        return f"> {CANDIDATE_BATCHES[-1]:,}"
    return f"{batch:,}" + ("*" if batch * workers > EPOCH_SAMPLES else "")


PROJECTION_COLUMNS = (
    "workload",
    "link",
    "N",
    "bytes/step",
    "all-reduce",
    "strong: step",
    "strong: eff.",
    "weak: step",
    "weak: eff.",
    "B for ≥ 90 %",
    "b for ≥ 90 %",
)


def projection_cells(row: dict[str, Any]) -> list[str]:
    return [
        f"{row['workload']} (B {row['batch']})",
        LINKS[row["link"]].name.split(" (")[0],
        str(row["workers"]),
        megabytes(row["bytes_per_step"]),
        duration(row["allreduce_seconds"]),
        duration(row["strong_step_seconds"]),
        percent(row["strong_efficiency"]) if row["strong_efficiency"] is not None else "B < N",
        duration(row["weak_step_seconds"]),
        percent(row["weak_efficiency"]),
        batch_text(row["strong_batch_for_target"]),
        batch_text(row["weak_batch_for_target"], row["workers"]),
    ]


def curve_lines(curves: dict[str, StepCurve]) -> list[str]:
    """One line per curve: where its numbers come from, and each measured point."""
    lines = []
    for name, curve in curves.items():
        points = ", ".join(
            f"{b}: {duration(t)}" + ("" if t == used else f" (taken as {duration(used)})")
            for (b, t), (_, used) in zip(curve.measured, curve.points, strict=True)
        )
        lines.append(
            f"- {name} ({curve.source}), seconds per step by batch: {points}; "
            f"floor {duration(curve.floor)}"
        )
    return lines


def table_text(tables: dict[str, Any]) -> str:
    """The projection as Markdown: per device class, its curves, then its table."""
    from .report import markdown_table

    titles = {"gpu": "GPUs", "cpu": "CPU nodes"}
    lines = []
    for device, found in tables.items():
        lines += [f"### {titles[device]}", "", *curve_lines(found["curves"]), ""]
        cells = [projection_cells(r) for r in found["rows"]]
        lines.append(markdown_table(PROJECTION_COLUMNS, cells))
        ring = [r for r in found["rows"] if r["workers"] == max(found["workers"])]
        lines += [
            "",
            "A plain ring's latency, 2(N−1)·α, at N = "
            f"{max(found['workers'])}: "
            + "; ".join(
                f"{r['workload']} over {LINKS[r['link']].name.split(' (')[0]} "
                f"{duration(r['ring_latency_allreduce_seconds'])} per all-reduce"
                for r in ring
            ),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def tables(
    gpu: dict[str, StepCurve] | None, cpu: dict[str, StepCurve] | None
) -> dict[str, dict[str, Any]]:
    """The projection of each device class whose curves are given."""
    out = {}
    for device, curves, (links, workers) in (
        ("gpu", gpu, GPU_SCENARIOS),
        ("cpu", cpu, CPU_SCENARIOS),
    ):
        if curves:
            out[device] = {
                "curves": curves,
                "links": list(links),
                "workers": list(workers),
                "rows": projection(curves, links, workers),
            }
    return out


def build_parser() -> argparse.ArgumentParser:
    from mlp.cli.common import OneLineParser

    p = OneLineParser(
        prog="python -m bench.distributed",
        description="Project data-parallel step time and efficiency (docs/scaling.md).",
    )
    p.add_argument("--table", action="store_true", help="print the projected tables (Markdown)")
    p.add_argument(
        "--gpu-results",
        type=Path,
        default=GPU_RESULTS,
        help="a bench run's JSON whose GPU rows give the GPU step times",
    )
    p.add_argument(
        "--cpu",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure this machine's step times (two minutes or so) for the CPU-node table",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("nothing to do: --table prints the projection")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    gpu = gpu_curves(args.gpu_results)
    cpu = cpu_curves(log=log) if args.cpu else None
    found = tables(gpu, cpu)
    print(table_text(found), end="")
    if args.json is not None:
        plain = {
            device: {**t, "curves": {n: c.to_dict() for n, c in t["curves"].items()}}
            for device, t in found.items()
        }
        plain["links"] = {k: vars(link) for k, link in LINKS.items()}  # type: ignore[assignment]
        args.json.write_text(json.dumps(plain, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
