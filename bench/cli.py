"""``python -m bench``: run the rows, print the table, write JSON, Markdown and a PNG chart."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from backends import PRECISIONS as MATMUL_PRECISIONS
from mlp import checks
from mlp.cli.common import OneLineParser, checked, named_path, report_errors
from mlp.errors import CannotWrite, InvalidArgument

from . import distributed, report
from .extras import PEERS, TORCH_ROWS, choices, installed, missing_reason, parse_peers
from .machine import machine_info, slug
from .peers import TORCH_PRECISIONS
from .report import precision_of
from .runner import run_command, run_task
from .timing import QUIET
from .workloads import (
    DATASET,
    DEFAULT_WORKLOADS,
    EPOCH_SAMPLES,
    WORKLOADS,
    epoch_samples,
    real_data_problem,
    steps_per_epoch,
)

PROG = "python -m bench"
DEVICES = ("cpu", "cuda")
IMPLS = ("limit", "mlp", "textbook", *PEERS)
#: Where the peers run.
PEER_DEVICES = {"torch": ("cpu", "cuda"), "sklearn": ("cpu",)}
#: Rows the default ``--peers`` brings on a GPU only: on the CPU, ``torch.compile`` takes
#: 20-60 s per mode and workload (a default ``make bench`` much longer), and a CUDA graph
#: has nothing to capture. Named in ``--peers``, they run on the CPU too (the graph row
#: then says it needs CUDA).
CUDA_BY_DEFAULT = ("torch-compile", "torch-compile-ro", "torch-graph")
#: Rows that cannot run on a device, and why: reported as skipped, with no process started.
NEEDS = {("torch-graph", "cpu"): "needs CUDA (torch.cuda.graph)"}
#: Matmul precisions a run can time, each its own table: float32 first.
PRECISIONS = tuple(MATMUL_PRECISIONS)
#: The rows planned at every precision: the limit, then this library.
OURS = ("limit", "mlp")
#: Devices whose limit is timed again right after our row, the faster run kept: a VM's CPU
#: drifts by up to 2× between minutes (tiny's limit: 0.13 s, then 0.25 s an epoch), and a
#: ratio is only side by side where the limit brackets what it is compared with.
BRACKETED = ("cpu",)


def accuracy_target(name: str, value: object) -> float:
    """A test accuracy to reach: 0 would be reached before training, above 1 never."""
    number = checks.finite_number(name, value)
    if not 0.0 < number <= 1.0:
        raise InvalidArgument(f"{name} must be an accuracy in (0, 1], got {value!r}")
    return number


def _cpu_steps(text: str) -> dict[str, int]:
    """``"50"`` → every workload; ``"big=30,std=200"`` → per workload."""
    out: dict[str, int] = {}
    for item in text.split(","):
        name, _, value = item.strip().rpartition("=")
        names = [name] if name else list(WORKLOADS)
        if any(n not in WORKLOADS for n in names) or not value.isdigit() or int(value) <= 0:
            raise argparse.ArgumentTypeError(
                f"expected N or WORKLOAD=N[,...] with N > 0 (workloads: {', '.join(WORKLOADS)}),"
                f" got {text!r}"
            )
        out.update(dict.fromkeys(names, int(value)))
    return out


def _precisions(text: str) -> list[str]:
    """``--precisions``: a subset of ``PRECISIONS``, in their order (float32 first, the one
    the others are compared with) whatever the order given."""
    chosen = choices("precision", PRECISIONS)(text)
    return [p for p in PRECISIONS if p in chosen]


class _Requested(argparse.Action):
    """Stores the option and notes that it was given: a peer asked for by name must be
    installed, while one that only the default brings may be a row saying it is missing."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_requested", True)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Time one training epoch of each workload against the matmul-only limit.",
        epilog="Exit status 1 when a row of this library or the limit fails (or a device named "
        "in --devices is unavailable); peers that fail or are missing are only reported.",
    )
    p.add_argument(
        "--workloads",
        type=choices("workload", tuple(WORKLOADS)),
        default=list(DEFAULT_WORKLOADS),
        help="comma-separated, from " + ",".join(WORKLOADS),
    )
    p.add_argument(
        "--devices",
        default="auto",
        help="cpu, cuda or cpu,cuda; auto = cpu, plus cuda when it works here",
    )
    p.add_argument(
        "--peers",
        type=parse_peers,
        action=_Requested,
        default=list(PEERS),
        help=f"{','.join(PEERS)} (the default; {','.join(CUDA_BY_DEFAULT)} on the CPU only "
        "when named), a subset, or none; a peer named here must be installed, while a default "
        "one that is not is a row that says so",
    )
    p.add_argument(
        "--precisions",
        type=_precisions,
        default=["float32"],
        help="matmul precisions, a table each: float32 (TF32 off on both sides), tf32 (TF32 "
        "on for both), bf16 (the limit and ours, against our float32; no PyTorch row); on the "
        "CPU the rounding is emulated, slowly",
    )
    p.add_argument(
        "--textbook",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the textbook NumPy (CuPy on cuda) loop",
    )
    p.add_argument(
        "--epochs",
        type=checked(checks.positive_int, "timed epochs"),
        default=3,
        help="timed epochs per row",
    )
    p.add_argument(
        "--warmup",
        type=checked(checks.whole_number, "warm-up epochs"),
        default=1,
        help="untimed epochs before them",
    )
    p.add_argument(
        "--max-extra",
        type=checked(checks.whole_number, "extra epochs"),
        default=3,
        help="extra epochs at most when other work on the machine disturbed some (0: none)",
    )
    p.add_argument(
        "--limit-repeats",
        type=checked(checks.positive_int, "limit repeats"),
        default=None,
        help="timed repetitions of the limit (default: max(5, --epochs))",
    )
    p.add_argument(
        "--steps",
        type=checked(checks.positive_int, "steps"),
        default=None,
        help="cut every epoch to this many steps (quick runs, smoke tests)",
    )
    p.add_argument(
        "--cpu-steps",
        type=_cpu_steps,
        default={},
        metavar="N|WORKLOAD=N,...",
        help="cut CPU epochs only (all workloads, or e.g. big=30)",
    )
    p.add_argument(
        "--data",
        choices=("auto", "real", "synthetic"),
        default="auto",
        help=f"{DATASET} from disk, synthetic of the same shape, or real when present",
    )
    p.add_argument(
        "--out",
        type=named_path,
        default=None,
        help=f"folder for the JSON, Markdown and PNG results (default: ${report.RESULTS_ENV}, "
        "else ~/.cache/mlp/bench; --out bench/results to commit them)",
    )
    p.add_argument(
        "--plot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the PNG bar chart (needs matplotlib)",
    )
    p.add_argument(
        "--time-to-accuracy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="seconds until the std model reaches --target on the real test set, ours against "
        "the PyTorch rows of --peers (on the CPU eager PyTorch alone unless they are named)",
    )
    p.add_argument(
        "--target",
        type=checked(accuracy_target, "target", float),
        default=0.89,
        help="test accuracy to reach",
    )
    p.add_argument(
        "--max-epochs",
        type=checked(checks.positive_int, "max epochs"),
        default=30,
        help="give up time to accuracy after this many epochs",
    )
    p.add_argument(
        "--cli-rss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak RSS of `mlp-train --epochs 1` on the real dataset",
    )
    p.add_argument(
        "--distributed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="std and big (those in --workloads) on the CPU: one process on every core "
        f"against {distributed.PROCESSES} under mpiexec sharing them, and the all-reduce's "
        "share of an epoch (skipped, saying why, without mpi4py or mpiexec)",
    )
    p.add_argument(
        "--order",
        choices=("workload", "peer"),
        default="workload",
        help="workload: each workload's rows together (the default); peer: ours for every "
        "workload first, then each peer over every workload in --peers order, so that a run "
        "cut short by a time limit has ours everywhere and the first peers",
    )
    p.add_argument(
        "--row-timeout",
        type=checked(checks.positive_number, "row timeout", float),
        default=1800,
        help="seconds per row at most",
    )
    p.set_defaults(peers_requested=False)
    return p


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews every number."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_devices(spec: str, timeout: float) -> tuple[list[str], dict[str, Any]]:
    """The devices to run, and for each CUDA device, what the probe found."""
    auto = spec.strip() == "auto"
    wanted = list(DEVICES) if auto else choices("device", DEVICES)(spec)
    devices, found = [], {}
    for device in wanted:
        if device != "cpu":
            probe = run_task({"impl": "probe", "device": device}, timeout=min(timeout, 300))
            found[device] = probe
            if probe["status"] != "ok" and auto:
                log(f"{device}: not used ({probe.get('reason', probe['status'])})")
                continue
        devices.append(device)
    return devices, found


def row_label(impl: str, device: str, versions: dict[str, str], precision: str = "float32") -> str:
    """What a row is, in words; a reduced precision named after it (tables, chart, logs)."""
    torch = f"PyTorch {versions.get('torch', '')}".strip()
    label = {
        "limit": "matmul-only limit",
        "mlp": "mlp (this library)",
        "textbook": f"textbook {'NumPy' if device == 'cpu' else 'CuPy'} loop",
        "torch": torch,
        "torch-fused": f"{torch} fused Adam",
        "torch-compile": f"{torch} compile max-autotune",
        "torch-compile-ro": f"{torch} compile reduce-overhead",
        "torch-graph": f"{torch} CUDA graph",
        "sklearn": "scikit-learn MLPClassifier",
    }[impl]
    return label if precision == "float32" else f"{label}, {precision}"


def runs_at(impl: str, precision: str) -> bool:
    """Whether ``impl`` has a row at ``precision``: every row at float32; the limit and ours
    at every precision; PyTorch's at those it has (TF32 on at tf32), the textbook loop and
    scikit-learn at float32 alone."""
    if precision == "float32" or impl in OURS:
        return True
    return impl in TORCH_ROWS and precision in TORCH_PRECISIONS


def runs_on(impl: str, device: str, args: argparse.Namespace) -> bool:
    """Whether ``impl`` has a row on ``device``: each peer where it runs, and the rows of
    ``CUDA_BY_DEFAULT`` on the CPU only when ``--peers`` names them."""
    if device not in PEER_DEVICES.get(impl, DEVICES):
        return False
    return not (device == "cpu" and impl in CUDA_BY_DEFAULT and not args.peers_requested)


def epoch_steps(args: argparse.Namespace, workload: str, device: str) -> int | None:
    """The steps an epoch is cut to (``None``: a whole epoch): ``--steps``, and on the CPU
    ``--cpu-steps`` too, the smaller of the two."""
    steps = args.steps
    if device == "cpu" and workload in args.cpu_steps:
        steps = min(steps or args.cpu_steps[workload], args.cpu_steps[workload])
    return steps


def plan(args: argparse.Namespace, devices: list[str]) -> list[dict[str, Any]]:
    """Every row to run, in order: per workload and device, ours at each precision (its
    limit first, and on a ``BRACKETED`` device again after it, marked ``again``), then the
    others at each precision they have. Ours come first so that a run cut short (a time
    limit) still has them; each table keeps this order. ``--order peer`` runs ours for
    every workload first, then each of the others over every workload, in their order."""
    others = [*(["textbook"] if args.textbook else []), *args.peers]
    rows = []
    for name in args.workloads:
        workload = WORKLOADS[name]
        for device in devices:
            samples = epoch_samples(workload, epoch_steps(args, name, device))
            ours = (*OURS, "limit") if device.partition(":")[0] in BRACKETED else OURS
            pairs = [(p, impl, i == 2) for p in args.precisions for i, impl in enumerate(ours)]
            pairs += [
                (p, impl, False) for p in args.precisions for impl in others if runs_at(impl, p)
            ]
            rows += [
                {
                    "workload": name,
                    "device": device,
                    "impl": impl,
                    "precision": precision,
                    "samples": samples,
                    "steps": steps_per_epoch(workload, samples),
                    "full_steps": steps_per_epoch(workload, EPOCH_SAMPLES),
                    **({"again": True} if again else {}),
                }
                for precision, impl, again in pairs
                if runs_on(impl, device, args)
            ]
    if args.order == "peer":  # a stable sort: each workload's own block keeps its order
        rows.sort(key=lambda row: -1 if row["impl"] in OURS else others.index(row["impl"]))
    return rows


def cannot_run(impl: str, device: str) -> dict[str, str] | None:
    """A row's result with no process started: its peer missing, or its device unable to
    run it (``None``: it can run)."""
    if impl in PEERS and not installed(impl):
        return {"status": "missing", "reason": missing_reason(impl)}
    need = NEEDS.get((impl, device.partition(":")[0]))
    return {"status": "skipped", "reason": need} if need else None


def run_row(
    row: dict[str, Any], args: argparse.Namespace, real: bool, probes: dict[str, Any]
) -> dict[str, Any]:
    """Measure one planned row, unless its peer is missing or its device unavailable."""
    probe = probes.get(row["device"])
    if probe is not None and probe["status"] != "ok":
        return {"status": "unavailable", "reason": probe.get("reason", "device unavailable")}
    refused = cannot_run(row["impl"], row["device"])
    if refused:
        return refused
    spec = {
        **row,
        "warmup": args.warmup,
        "epochs": args.epochs,
        "max_extra": args.max_extra,
        "real": real,
        "repeats": args.limit_repeats or max(5, args.epochs),
    }
    return run_task(spec, args.row_timeout)


def finish_row(row: dict[str, Any], limit: dict[str, Any] | None) -> None:
    """Add throughput and the ratio to the limit of this workload, device and precision."""
    if row["status"] != "ok":
        return
    row["samples_per_second"] = row["samples"] / row["median_seconds"]
    if limit and limit["status"] == "ok":
        row["limit_seconds"] = limit["median_seconds"]
        row["ratio_to_limit"] = row["median_seconds"] / limit["median_seconds"]


def same_setting(row: dict[str, Any]) -> tuple[str, str, str]:
    """What rows compared with each other share: workload, device and matmul precision."""
    return row["workload"], row["device"], precision_of(row)


def compare_to_torch(rows: list[dict[str, Any]]) -> None:
    """Add each row's speed relative to PyTorch on the same workload, device and precision.

    ``speed_vs_torch`` is eager PyTorch's epoch time over this row's: above 1.0 is faster.
    ``speed_vs_best_torch`` (ours only) is the fastest PyTorch row's (eager, fused,
    compiled, CUDA graph) over ours, as the targets compare; ``fastest_torch`` says which
    row that was, of which that ran.
    """
    torch_seconds: dict[tuple[str, str, str], float] = {}
    ran: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["impl"] in TORCH_ROWS and r.get("status") == "ok":
            key = same_setting(r)
            if r["impl"] == "torch":
                torch_seconds[key] = r["median_seconds"]
            ran.setdefault(key, []).append(r)
    for r in rows:
        key = same_setting(r)
        reference = torch_seconds.get(key)
        if r["impl"] not in ("torch", "limit") and r.get("status") == "ok" and reference:
            r["speed_vs_torch"] = reference / r["median_seconds"]
        if r["impl"] == "mlp" and r.get("status") == "ok" and key in ran:
            best = min(ran[key], key=lambda t: t["median_seconds"])
            r["speed_vs_best_torch"] = best["median_seconds"] / r["median_seconds"]
            r["fastest_torch"] = {"impl": best["impl"], "of": [t["impl"] for t in ran[key]]}


def compare_to_float32(rows: list[dict[str, Any]]) -> None:
    """Add ``speed_vs_float32`` to the limit's and our rows at a reduced precision: the
    float32 row's epoch time over this one's, same workload and device (above 1.0: faster).
    Ours at bf16 is the ``bf16_speedup`` target's figure; the limit's, what bf16 products
    alone gain."""
    float32 = {
        (r["impl"], r["workload"], r["device"]): r["median_seconds"]
        for r in rows
        if r["impl"] in OURS and r.get("status") == "ok" and precision_of(r) == "float32"
    }
    for r in rows:
        reference = float32.get((r["impl"], r["workload"], r["device"]))
        if precision_of(r) != "float32" and r.get("status") == "ok" and reference:
            r["speed_vs_float32"] = reference / r["median_seconds"]


def run_benchmark(
    args: argparse.Namespace,
    real: bool,
    devices: list[str],
    probes: dict[str, Any],
    versions: dict[str, str],
    save: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
) -> list[dict[str, Any]]:
    """Run every planned row in turn; ``save`` gets the rows done so far after each one.
    A limit timed ``again`` is folded into the first (``keep_faster_limit``), not a row."""
    planned = plan(args, devices)
    done: list[dict[str, Any]] = []
    limits: dict[tuple[str, str, str], dict[str, Any]] = {}
    for i, row in enumerate(planned, 1):
        row["label"] = row_label(row["impl"], row["device"], versions, row["precision"])
        again = " (again, the faster run kept)" if row.get("again") else ""
        log(f"[{i}/{len(planned)}] {row['workload']} on {row['device']}: {row['label']}{again} …")
        row["load_average_before"] = load_average()
        result = run_row(row, args, real, probes)
        row.update(result)
        key = same_setting(row)
        if row.pop("again", False) and key in limits:
            finish_row(row, row)  # for its log line
            limits[key] = keep_faster_limit(limits[key], row)
            done = [
                limits[key] if r["impl"] == "limit" and same_setting(r) == key else r for r in done
            ]
            for r in done:
                if same_setting(r) == key:
                    finish_row(r, limits[key])
        else:
            if row["impl"] == "limit":
                limits[key] = row
            finish_row(row, limits.get(key))
            done.append(row)
        cells = report.row_cells(row)
        log(
            f"    {cells[3]} s/epoch, {cells[4]} limit"
            if row["status"] == "ok"
            else f"    {report.note(row)}"
        )
        compare_to_torch(done)
        compare_to_float32(done)
        save(list(done))
    return done


def keep_faster_limit(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """The limit's row from its two runs: the faster (a limit bounds what the products can
    do), with both runs' medians in ``run_medians`` (ratios are then conservative)."""
    runs = [r for r in (first, again) if r["status"] == "ok"]
    if not runs:
        return first
    kept = dict(min(runs, key=lambda r: r["median_seconds"]))
    kept["run_medians"] = [r["median_seconds"] for r in runs]
    return kept


def tta_impls(args: argparse.Namespace, device: str) -> list[str]:
    """Ours, then the PyTorch rows of ``--peers`` that race it to the target: on a GPU every
    one, to find PyTorch's best; on the CPU eager PyTorch alone unless ``--peers`` names the
    variants (each is another run of many epochs, a compile on top)."""
    torch_rows = [p for p in args.peers if p in TORCH_ROWS]
    if device == "cpu" and not args.peers_requested:
        torch_rows = [p for p in torch_rows if p == "torch"]
    return ["mlp", *torch_rows]


def time_to_accuracy(
    args: argparse.Namespace, real: bool, devices: list[str], versions: dict[str, str]
) -> dict[str, Any]:
    """Training seconds to ``--target`` on std, ours against each PyTorch row of
    ``tta_impls``, float32 (TF32 off), on every device."""
    out: dict[str, Any] = {"target": args.target, "workload": "std", "rows": []}
    if not args.time_to_accuracy:
        return {**out, "reason": "--no-time-to-accuracy"}
    if not real:
        return {**out, "reason": f"{DATASET} is not on disk (see README: make data)"}
    for device in devices:
        for impl in tta_impls(args, device):
            row: dict[str, Any] = {
                "impl": impl,
                "device": device,
                "label": row_label(impl, device, versions),
            }
            log(f"time to {args.target}: {row['label']} on {device} …")
            refused = cannot_run(impl, device)
            if refused:
                row.update(refused)
            else:
                row.update(
                    run_task(
                        {
                            "impl": f"tta-{impl}",
                            "device": device,
                            "workload": "std",
                            "target": args.target,
                            "max_epochs": args.max_epochs,
                        },
                        args.row_timeout,
                    )
                )
            out["rows"].append(row)
    return out


def cli_rss(args: argparse.Namespace, real: bool) -> dict[str, Any]:
    """Peak RSS of one short ``mlp-train`` run (the whole process, as a user runs it)."""
    if not args.cli_rss:
        return {"status": "skipped", "reason": "--no-cli-rss"}
    if not real:
        return {"status": "skipped", "reason": f"{DATASET} is not on disk"}
    argv = ["--dataset", DATASET, "--epochs", "1", "--device", "cpu"]
    log("mlp-train peak RSS …")
    done = run_command([sys.executable, "-m", "mlp", *argv], args.row_timeout)
    out = {
        "command": "mlp-train " + " ".join(argv),
        "wall_seconds": done["wall_seconds"],
        "peak_rss_bytes": done["child_peak_rss_bytes"],
        "source": "wait4 ru_maxrss",
    }
    if done["returncode"] != 0:
        return {**out, "status": "error", "reason": done["output_tail"].strip()[-300:]}
    return {**out, "status": "ok"}


def output_stem(machine: dict[str, Any], devices: list[str], probes: dict[str, Any]) -> str:
    """``2026-11-27-cpu-intel-xeon`` (+ ``-cuda-<gpu>`` when a GPU ran)."""
    parts = [machine["date"][:10]]
    for device in devices:
        if device == "cpu":
            parts += ["cpu", slug(machine["cpu"]["model"])]
        else:
            parts += ["cuda", slug(probes.get(device, {}).get("device_name", "gpu"))]
    return "-".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if a row of ours failed (peers only report theirs),
    or with one line if its results cannot be written. SIGTERM unwinds through ``run_task``,
    which kills the running row, as Ctrl-C does (``report_errors``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [p for p in args.peers if not installed(p)] if args.peers_requested else []
    if missing:
        parser.error(f"--peers {','.join(args.peers)}: {'; '.join(map(missing_reason, missing))}")
    given = args.out is not None
    if not given:
        try:
            args.out = report.default_results_dir()
        except CannotWrite as exc:
            parser.error(str(exc))
    why = report.out_folder_problem(args.out)
    if why:
        name = "--out" if given else "results folder"
        parser.error(f"{name} {str(args.out)!r}: {why}")
    interrupted = 'rows done so far, if any, are in the results JSON ("complete": false)'
    return report_errors(PROG, lambda: run(args, parser, argv), interrupted=interrupted)


def use_real_data(data: str, parser: argparse.ArgumentParser) -> bool:
    """Whether the rows train on Fashion-MNIST: ``--data real`` insists (a usage error if it
    cannot be found), ``auto`` falls back on synthetic data and says why."""
    if data == "synthetic":
        return False
    problem = real_data_problem()
    if problem and data == "real":
        parser.error(f"--data real: {problem}")
    if problem:
        log(f"note: synthetic data: {problem}")
    return problem is None


def run(
    args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> int:
    """Everything after parsing: the rows, then the results on disk and the table."""
    try:
        devices, probes = resolve_devices(args.devices, args.row_timeout)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    real = use_real_data(args.data, parser)
    machine = machine_info()
    machine["devices"] = {d: p for d, p in probes.items()}
    machine["load_average_start"] = load_average()
    if (machine["load_average_start"] or 0) > 0.5:
        log(
            f"warning: load average {machine['load_average_start']:.2f} before the start: "
            "other work on this machine will skew the timings"
        )
    versions = machine["versions"]
    data = f"{DATASET} (real)" if real else "synthetic, Fashion-MNIST-shaped (60000 × 784)"
    log(f"data: {data}; devices: {', '.join(devices)}")

    results: dict[str, Any] = {
        "schema": 1,
        "machine": machine,
        "config": {
            "workloads": args.workloads,
            "devices": devices,
            "peers": args.peers,
            "precisions": args.precisions,
            "textbook": args.textbook,
            "epochs": args.epochs,
            "warmup": args.warmup,
            "max_extra": args.max_extra,
            "quiet_threshold": QUIET,
            "limit_repeats": args.limit_repeats or max(5, args.epochs),
            "steps": args.steps,
            "cpu_steps": args.cpu_steps,
            "data": data,
            "real_data": real,
            "distributed": args.distributed,
            "argv": list(sys.argv[1:] if argv is None else argv),
        },
        "workloads": {n: WORKLOADS[n].to_dict() for n in args.workloads},
    }
    claim = {**results, "rows": [], "complete": False}
    stem = report.claim_stem(args.out, output_stem(machine, devices, probes), claim)
    later = ".md and .png" if args.plot else ".md"
    log(f"results: {stem.with_suffix('.json')} (its {later} beside it at the end)")

    def save_partial(rows: list[dict[str, Any]]) -> None:
        """Keep what is done on disk: a run cut short (a time limit) still leaves its rows."""
        results["rows"] = rows
        report.write_json({**results, "complete": False}, stem.with_suffix(".json"))

    results["rows"] = []
    try:
        results["rows"] = run_benchmark(args, real, devices, probes, versions, save_partial)
        results["time_to_accuracy"] = time_to_accuracy(args, real, devices, versions)
    except KeyboardInterrupt:  # a time limit's SIGTERM, Ctrl-C: the report of what was done
        print(report.summary_text(results), flush=True)
        raise
    results["cli_rss"] = cli_rss(args, real)
    results["distributed"] = distributed.run_section(args, real, devices, log)
    results["complete"] = True
    if args.plot:
        why = report.plot(results, stem.with_suffix(".png"))
        results["plot"] = stem.with_suffix(".png").name if why is None else f"none ({why})"
    else:
        results["plot"] = "none (--no-plot)"
    report.write_json(results, stem.with_suffix(".json"))
    report.write_text(report.summary_text(results, markdown=True) + "\n", stem.with_suffix(".md"))
    print(report.summary_text(results))
    print(f"\nresults: {stem.with_suffix('.json')}")

    ours = [r for r in results["rows"] if r["impl"] not in PEERS]
    failed = [
        r
        for r in ours
        if r["status"] == "error" or (r["status"] == "unavailable" and args.devices != "auto")
    ]
    failed += [
        r
        for r in results["time_to_accuracy"]["rows"]
        if r["impl"] not in PEERS and r["status"] == "error"
    ]
    failed += [r for r in results["distributed"]["rows"] if r["status"] == "error"]
    return 1 if failed else 0
