"""The outputs: a terminal table, a Markdown table (docs/benchmarks.md), JSON and a PNG chart,
in a folder outside the source tree unless ``--out`` names one (``bench/results`` to commit)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

from backends import PRECISIONS as MATMUL_PRECISIONS
from mlp.data.datasets import home, user_cache_dir
from mlp.errors import CannotWrite
from mlp.files import atomic_write, cannot_write

#: Names the results folder of a run without ``--out``; else the user cache's ``mlp/bench``.
RESULTS_ENV = "MLP_BENCH_DIR"

#: The files one run writes: ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``.
SUFFIXES = (".json", ".md", ".png")
#: A row whose slowest timed epoch exceeds its fastest by this factor is flagged as noisy.
NOISY_SPREAD = 1.3
COLUMNS = (
    "workload",
    "device",
    "implementation",
    "s/epoch",
    "× limit",
    "vs PyTorch",
    "samples/s",
    "peak RSS",
    "GPU mem",
    "note",
)
#: The project's speed targets ("Speed, round two"): (workload, device, metric, "min" or
#: "max", bound), all of ours. ``ratio_to_limit`` is lower-is-better; ``speed_vs_best_torch``
#: (the fastest PyTorch row's time over ours) and ``bf16_speedup`` (our float32 time over our
#: bfloat16 row's) higher-is-better.
TARGETS = (
    ("std", "cuda", "speed_vs_best_torch", "min", 1.0),
    ("std-b256", "cuda", "speed_vs_best_torch", "min", 1.0),
    ("std-b1024", "cuda", "speed_vs_best_torch", "min", 1.0),
    ("big", "cuda", "speed_vs_best_torch", "min", 1.0),
    ("big", "cuda", "ratio_to_limit", "max", 1.15),
    ("std", "cuda", "ratio_to_limit", "max", 1.4),
    ("big", "cuda", "bf16_speedup", "min", 1.5),
    ("std", "cpu", "ratio_to_limit", "max", 1.15),
    ("big", "cpu", "ratio_to_limit", "max", 1.05),
    ("tiny", "cpu", "ratio_to_limit", "max", 1.6),
)
#: The CPU targets of a whole run rather than of a row: std's training seconds to the test
#: accuracy over the fastest PyTorch row's, and ``mlp-train``'s peak RSS in MB.
TIME_TO_ACCURACY_TARGET = 0.5
RSS_TARGET_MB = 300
#: Where a target's figure is, when not in our float32 row's field of its name: the row of
#: ours at that precision, and its field (``bench.cli.compare_to_float32`` fills it in).
METRIC_SOURCES = {"bf16_speedup": ("bf16", "speed_vs_float32")}
#: What each precision's table holds, above it.
TABLE_HEADINGS = {
    "float32": "float32 matmuls, TF32 off on both sides",
    "tf32": "TF32 on for both sides: our tf32 matmuls and the limit's, PyTorch's allow_tf32",
    "bf16": "bf16 matmuls (bfloat16 operands, float32 sums): the limit and ours only, each "
    "against its float32 row in the note (PyTorch's bfloat16 is autocast, another recipe)",
}
#: How each target's figure reads.
METRIC_NAMES = {
    "ratio_to_limit": "× limit",
    "speed_vs_best_torch": "vs fastest PyTorch",
    "bf16_speedup": "bf16 speed-up over float32",
}
TTA_COLUMNS = ("implementation", "device", "seconds", "epochs", "test accuracy", "note")
DIST_COLUMNS = (
    "workload",
    "processes × threads",
    "s/epoch",
    "vs 1 process",
    "all-reduce alone",
    "its share",
    "bytes/step",
    "note",
)
#: Columns of words (left-aligned); every other column holds numbers or dashes.
TEXT_COLUMNS = ("workload", "device", "implementation", "note")


def precision_of(row: dict[str, Any]) -> str:
    """A row's matmul precision; rows of results written before there was one are float32."""
    return row.get("precision", "float32")


def precision_tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The rows split by precision, one table each: float32 first, then as ``backends``
    lists them (any other after, as first seen); each table keeps the rows' order."""
    order = dict.fromkeys([*MATMUL_PRECISIONS, *(precision_of(r) for r in rows)])
    tables = [(p, [r for r in rows if precision_of(r) == p]) for p in order]
    return [(p, table) for p, table in tables if table]


def table_heading(precision: str, rows: list[dict[str, Any]]) -> str:
    """The line above a precision's table; a reduced precision on the CPU is emulated."""
    heading = TABLE_HEADINGS.get(precision, f"{precision} matmuls")
    if precision != "float32" and any(r["device"] == "cpu" for r in rows):
        heading += "; on the CPU the rounding is emulated: slower, not a speed figure"
    return heading + ":"


def megabytes(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:,.0f} MB"


def note(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('reason', '')}".strip()
    notes = []
    if row.get("impl") == "limit" and row.get("gflops"):
        notes.append(f"{row['gflops']:,.0f} GFLOP/s")
    if row.get("impl") == "limit" and row.get("recorded"):
        notes.append("CUDA graph" if row["device"].startswith("cuda") else "recorded")
    if row.get("compile_seconds") is not None:
        what = "capture" if row.get("compile_mode") == "graph" else "compile"
        notes.append(f"{what} {row['compile_seconds']:.1f} s, not timed")
    if row.get("tf32"):
        notes.append("TF32")
    if row.get("speed_vs_float32"):
        notes.append(f"{row['speed_vs_float32']:.2f}× the float32 row's speed")
    if len(row.get("run_medians", ())) > 1:
        runs = " and ".join(f"{seconds:.3f}" for seconds in row["run_medians"])
        notes.append(f"faster of runs before and after ours ({runs} s)")
    if row.get("threads"):
        notes.append(f"{row['threads']} threads")
    if row.get("dtype") and row["dtype"] != "float32":
        notes.append(row["dtype"])
    if row.get("contended"):
        timed = len(row["epoch_seconds"])
        notes.append(f"machine busy: {row['quiet_epochs']} of {timed} epochs quiet")
    elif row.get("quiet_epochs", 0) < len(row.get("epoch_seconds", [])):
        notes.append(f"median of {row['quiet_epochs']} quiet epochs")
    if row.get("spread", 1.0) > NOISY_SPREAD:
        notes.append(f"noisy: max/min {row['spread']:.2f}")
    return ", ".join(notes)


def row_cells(row: dict[str, Any]) -> list[str]:
    """One result row as table cells."""
    ok = row["status"] == "ok"
    ratio = row.get("ratio_to_limit")
    vs_torch = row.get("speed_vs_torch")
    return [
        row["workload"],
        row["device"],
        row["label"],
        f"{row['median_seconds']:.3f}" if ok else "—",
        f"{ratio:.2f}×" if ok and ratio is not None else "—",
        f"{vs_torch:.2f}×" if ok and vs_torch is not None else "—",
        f"{row['samples_per_second']:,.0f}" if ok else "—",
        megabytes(row.get("peak_rss_bytes")) if ok else "—",
        megabytes(row.get("device_memory_bytes")) if ok and row["device"] != "cpu" else "—",
        note(row),
    ]


def tta_note(row: dict[str, Any]) -> str:
    """Why a time-to-accuracy row has no figure, or what else its figure needs said."""
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('reason', '')}"
    notes = [] if row.get("reached") else [f"not reached in {len(row['accuracy_curve'])} epochs"]
    if row.get("compile_seconds") is not None:
        what = "capture" if row.get("compile_mode") == "graph" else "compile"
        notes.append(f"{what} {row['compile_seconds']:.1f} s, not counted")
    if row.get("contended"):
        notes.append("machine busy during some epochs")
    return ", ".join(notes)


def tta_cells(row: dict[str, Any]) -> list[str]:
    reached = row["status"] == "ok" and row.get("reached")
    curve = row.get("accuracy_curve") or []
    return [
        row["label"],
        row["device"],
        f"{row['seconds']:.1f}" if reached else "—",
        str(row["epochs"]) if reached else "—",
        f"{curve[-1]:.4f}" if curve else "—",
        tta_note(row),
    ]


def tta_best_lines(rows: list[dict[str, Any]], target: float) -> list[str]:
    """Per device, the PyTorch row that reached ``target`` in the fewest training seconds,
    against ours: time to accuracy's verdict, ours against PyTorch's best."""
    lines = []
    for device in dict.fromkeys(r["device"] for r in rows):
        here = [r for r in rows if r["device"] == device]
        ran = [r for r in here if r["impl"] != "mlp" and r["status"] == "ok"]
        reached = [r for r in ran if r.get("reached")]
        if not reached:
            lines += [f"no PyTorch row reached {target} on {device}"] if ran else []
            continue
        best = min(reached, key=lambda r: r["seconds"])
        line = (
            f"fastest PyTorch to {target} on {device}, of {len(ran)} run: {best['label']}, "
            f"{best['seconds']:.1f} s"
        )
        ours = [r for r in here if r["impl"] == "mlp" and r["status"] == "ok" and r.get("reached")]
        if ours:
            speed = best["seconds"] / ours[0]["seconds"]
            line += f"; ours {ours[0]['seconds']:.1f} s, {speed:.2f}× its speed"
        else:
            line += "; ours did not reach it"
        lines.append(line)
    return lines


def dist_cells(row: dict[str, Any]) -> list[str]:
    """One distributed row: its epoch, and in a world, the all-reduce alone and its share."""
    ok = row["status"] == "ok"
    world = ok and row["processes"] > 1
    speed = row.get("speed_vs_one_process")
    notes = [] if ok else [f"{row['status']}: {row.get('reason', '')}".strip()]
    if ok and row["steps"] < row["full_steps"]:
        notes.append(f"{row['steps']} of {row['full_steps']} steps")
    if ok and row.get("contended"):
        notes.append(f"machine busy: {row['quiet_epochs']} of {len(row['epoch_seconds'])} quiet")
    if world:
        notes.append(row.get("mpi", "").split(" (")[0].replace(" Version:", ""))
    return [
        row["workload"],
        row["label"],
        f"{row['median_seconds']:.3f}" if ok else "—",
        f"{speed:.2f}×" if speed is not None else "—",
        f"{row['allreduce_seconds'] * 1e3:.2f} ms" if world else "—",
        f"{row['allreduce_share']:.0%}" if world else "—",
        f"{row['bytes_per_step'] / 1e6:.2f} MB" if world else "—",
        ", ".join(n for n in notes if n),
    ]


def dist_lines(section: dict[str, Any], markdown: bool) -> list[str]:
    """The distributed rows (bench/distributed.py), or the line saying why they were not run."""
    if section.get("status") != "ok":
        return [f"distributed: skipped ({section.get('reason', 'not run')})"] if section else []
    table = markdown_table if markdown else text_table
    return [
        f"distributed, on this machine's CPU ({section['schedule']}): one process on every "
        f"core against {section['processes']} sharing them (mpiexec); all-reduce alone: one "
        "blocking Allreduce of the float32 gradient buffer in that world; its share: that × "
        "steps over the epoch; bytes/step: 2(N−1)/N × 4 × parameters, what each process sends "
        "(docs/scaling.md):",
        *([""] if markdown else []),
        table(DIST_COLUMNS, [dist_cells(r) for r in section["rows"]]),
    ]


def text_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """Columns padded to width; numbers (and dashes) right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def fmt(cells: list[str] | tuple[str, ...]) -> str:
        out = []
        for cell, width, name in zip(cells, widths, header, strict=True):
            numeric = name not in TEXT_COLUMNS
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def markdown_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    """One line: CPU, cores, BLAS and threads, GPU, main versions, commit, date."""
    cpu, blas, versions = machine["cpu"], machine["blas"], machine["versions"]
    blas_version = blas.get("runtime_version") or blas.get("version") or ""
    parts = [
        f"{cpu['model']} ({cpu['usable_cores']} cores)",
        f"{blas.get('name') or 'BLAS'} {blas_version} × {blas.get('threads') or '?'} threads",
    ]
    parts += [g["name"] for g in machine.get("gpus", [])]
    parts.append(
        ", ".join(
            f"{k} {versions[k]}"
            for k in (
                "python",
                "numpy",
                "torch",
                "scikit-learn",
                "cupy-cuda12x",
                "cupy-cuda13x",
                "cupy",
            )
            if k in versions
        )
    )
    git = machine.get("git") or {}
    if git:
        parts.append(f"commit {git['commit'][:10]}{' (modified)' if git['dirty'] else ''}")
    parts.append(machine["date"][:10])
    return " · ".join(parts)


def _pending(workload: str, device: str, metric: str, rows: list[dict[str, Any]]) -> str:
    """Why a target has no figure yet: no such device or workload in the run, no row at the
    precision it needs, or a row it compares failed or was left out."""
    if not any(r["device"].partition(":")[0] == device for r in rows):
        return "needs a GPU" if device == "cuda" else f"needs a {device} run"
    if not any(r["workload"] == workload for r in rows):
        return f"{workload} not in --workloads"
    if metric == "bf16_speedup" and not any(precision_of(r) == "bf16" for r in rows):
        return "no bf16 row of ours: add bf16 to --precisions"
    return {
        "ratio_to_limit": "our row or the limit did not run",
        "speed_vs_best_torch": "our row or every PyTorch row did not run",
        "bf16_speedup": "our float32 or bf16 row did not run",
    }[metric]


def verdict(head: str, what: str, value: float | None, kind: str, bound: float, why: str) -> str:
    """One target's line: the figure against its bound, met or NOT met; pending, and
    ``why``, without a figure."""
    sign = "≥" if kind == "min" else "≤"
    if value is None:
        return f"{head} {what} ({sign} {bound:g}): pending ({why})"
    met = value >= bound if kind == "min" else value <= bound
    shown, digits = f"{value:.2f}", 2

    def side(x: float) -> tuple[bool, bool]:
        return x == bound, (x >= bound if kind == "min" else x <= bound)

    while side(float(shown)) != side(value) and digits < 12:  # 0.996 is not 1.00 against 1
        digits += 1
        shown = f"{value:.{digits}f}"
    return f"{head} {shown} {what} ({sign} {bound:g}): " + ("met" if met else "NOT met")


def run_target_lines(tta: dict[str, Any], cli_rss: dict[str, Any]) -> list[str]:
    """The CPU targets of the whole run, each where the run has its record: time to
    accuracy, ours over the fastest PyTorch row that reached it (NOT met where only
    PyTorch's did), and ``mlp-train``'s peak RSS."""
    lines = []
    if tta:
        target = tta["target"]
        head, what = (
            f"target {tta['workload']} on cpu:",
            f"× the fastest PyTorch's time to {target}",
        )
        on_cpu = [r for r in tta["rows"] if r["device"] == "cpu"]
        here = [r for r in on_cpu if r["status"] == "ok"]
        failed = [r for r in on_cpu if r["impl"] == "mlp" and r["status"] != "ok"]
        ours = [r["seconds"] for r in here if r["impl"] == "mlp" and r.get("reached")]
        raced = [r for r in here if r["impl"] != "mlp"]
        theirs = [r["seconds"] for r in raced if r.get("reached")]
        bound = f"(≤ {TIME_TO_ACCURACY_TARGET:g})"
        if failed:  # not the same as a race ours ran and lost
            reason = failed[0].get("reason", "no reason given")
            lines.append(f"{head} {what} {bound}: NOT met (ours {failed[0]['status']}: {reason})")
        elif theirs and not ours:
            lines.append(f"{head} {what} {bound}: NOT met (ours did not reach it)")
        else:
            ratio = ours[0] / min(theirs) if theirs else None
            why = tta.get("reason", "needs a cpu run")
            if here:
                why = f"no PyTorch row reached {target} on cpu" if raced else "no PyTorch row ran"
            lines.append(verdict(head, what, ratio, "max", TIME_TO_ACCURACY_TARGET, why))
    if cli_rss:
        peak = cli_rss.get("peak_rss_bytes") if cli_rss.get("status") == "ok" else None
        peak_mb = None if peak is None else peak / 1e6
        why = cli_rss.get("reason", "not run")
        head = "target mlp-train on cpu:"
        lines.append(verdict(head, "MB peak RSS", peak_mb, "max", RSS_TARGET_MB, why))
    return lines


def target_lines(
    rows: list[dict[str, Any]],
    tta: dict[str, Any] | None = None,
    cli_rss: dict[str, Any] | None = None,
) -> list[str]:
    """Every target, one line each: the figure, the bound, and met, NOT met or pending;
    none for a run without float32 rows, which every target compares against. With the
    run's time to accuracy or ``mlp-train`` RSS record, its target too."""
    if not any(precision_of(r) == "float32" for r in rows):
        return []
    ours = {
        (r["workload"], r["device"].partition(":")[0], precision_of(r)): r
        for r in rows
        if r["impl"] == "mlp" and r.get("status") == "ok"
    }
    lines = ["targets:"]
    for workload, device, metric, kind, bound in TARGETS:
        precision, field = METRIC_SOURCES.get(metric, ("float32", metric))
        mine = ours.get((workload, device, precision), {})
        value = mine.get(field)
        why = "" if value is not None else _pending(workload, device, metric, rows)
        head = f"target {workload} on {device}:"
        line = verdict(head, METRIC_NAMES[metric], value, kind, bound, why)
        if value is not None and metric == "speed_vs_best_torch":
            fastest = mine["fastest_torch"]
            line += f" (fastest: {fastest['impl']}, of {', '.join(fastest['of'])})"
        lines.append(line)
    return lines + run_target_lines(tta or {}, cli_rss or {})


def summary_text(results: dict[str, Any], markdown: bool = False) -> str:
    """The whole report: header lines, a table per matmul precision, the targets, time to
    accuracy, mlp-train's RSS."""
    table = markdown_table if markdown else text_table
    cfg = results["config"]
    lines = [
        f"machine: {machine_line(results['machine'])}",
        f"data: {cfg['data']}; {cfg['epochs']} timed epoch(s) after {cfg['warmup']} "
        f"warm-up, median; limit: median of {cfg['limit_repeats']} (on a CPU, timed before "
        "and after ours, the faster kept); an epoch during which "
        f"other work used > {cfg['quiet_threshold']:.0%} of the machine is retried "
        f"(up to {cfg['max_extra']} more)",
        "× limit: epoch time over the matmul-only limit (lower is better); vs PyTorch: "
        "eager PyTorch's epoch time over this row's, same workload, device and precision "
        "(higher is faster); PyTorch compile and graph times are one-off, apart from the epochs",
    ]
    short = sorted(
        {
            (r["workload"], r["device"], r["steps"], r["full_steps"])
            for r in results["rows"]
            if r.get("steps") and r["steps"] < r["full_steps"]
        }
    )
    for workload, device, steps, full in short:
        lines.append(f"note: {workload} on {device}: epochs cut to {steps} of {full} steps")
    for precision, rows in precision_tables(results["rows"]):
        lines += [
            "",
            table_heading(precision, rows),
            *([""] if markdown else []),
            table(COLUMNS, [row_cells(r) for r in rows]),
        ]
    tta = results.get("time_to_accuracy") or {}
    cli = results.get("cli_rss") or {}
    targets = target_lines(results["rows"], tta, cli)
    if targets:
        lines += ["", *targets]
    if tta.get("rows"):
        best = tta_best_lines(tta["rows"], tta["target"])
        lines += [
            "",
            f"time to {tta['target']} test accuracy ({tta['workload']}, "
            f"training seconds, evaluation not counted):",
            *([""] if markdown else []),
            table(TTA_COLUMNS, [tta_cells(r) for r in tta["rows"]]),
            *([""] if markdown and best else []),
            *best,
        ]
    elif tta.get("reason"):
        lines += ["", f"time to accuracy: skipped ({tta['reason']})"]
    if cli.get("status") == "ok":
        lines += [
            "",
            f"`{cli['command']}`: peak RSS {megabytes(cli['peak_rss_bytes'])} "
            f"({cli['wall_seconds']:.1f} s)",
        ]
    elif cli.get("reason"):
        lines += ["", f"mlp-train peak RSS: skipped ({cli['reason']})"]
    dist = dist_lines(results.get("distributed") or {}, markdown)
    if dist:
        lines += ["", *dist]
    if results.get("plot"):
        lines += ["", f"chart: {results['plot']}"]
    return "\n".join(lines)


def write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(results: dict[str, Any], path: Path) -> None:
    write_text(json.dumps(results, indent=1, sort_keys=False) + "\n", path)


def default_results_dir() -> Path:
    """``$MLP_BENCH_DIR``, else ``$XDG_CACHE_HOME/mlp/bench`` (``~/.cache/mlp/bench``): never
    the source tree, so a run leaves ``git status`` clean; committing results is a choice
    (``--out bench/results``). ``CannotWrite`` rather than a home folder made up for it
    (``HOME=/nonexistent``), as ``mlp.data.usable_cache_dir`` refuses too."""
    named = os.environ.get(RESULTS_ENV, "")
    if named.strip():
        return Path(named)
    if not os.path.isabs(os.environ.get("XDG_CACHE_HOME", "")) and not home().is_dir():
        raise CannotWrite(
            f"no user cache for the results (the home folder {home()} does not exist): set "
            f"{RESULTS_ENV} or XDG_CACHE_HOME to a folder, or pass --out"
        )
    return user_cache_dir("bench")


def out_folder_problem(folder: Path) -> str | None:
    """Why the results cannot go into ``folder`` (``None``: they can); creates it, so that a
    bad ``--out`` stops the run before its first row, not after hours of them."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "a file has that name; expected a folder"
    except NotADirectoryError:
        return "a file is in its path; expected a folder"
    except OSError as exc:
        return f"cannot create the folder ({exc.strerror or exc})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "the folder is not writable"
    return None


def claim_folder(parent: Path, name: str) -> Path:
    """``parent/name``, else ``name-2``, ``name-3``…: the first that does not exist, created
    here, so that a rerun never replaces an earlier run's folder."""
    for n in itertools.count(1):
        with contextlib.suppress(FileExistsError):
            folder = parent / (name if n == 1 else f"{name}-{n}")
            folder.mkdir(parents=True)
            return folder
    raise AssertionError("itertools.count never ends")


def claim_stem(folder: Path, name: str, results: dict[str, Any]) -> Path:
    """``folder/name``, else ``name-2``, ``name-3``…: the first with none of its files on
    disk, so that a run never replaces an earlier one's results (a same-day rerun).

    The stem is claimed by creating its JSON, exclusively (two runs started together get
    different stems), holding ``results`` so far; the run's later writes replace it.
    """
    for n in itertools.count(1):
        stem = folder / (name if n == 1 else f"{name}-{n}")
        if not any(stem.with_suffix(suffix).exists() for suffix in SUFFIXES):
            with contextlib.suppress(FileExistsError):
                _create_exclusively(stem.with_suffix(".json"), json.dumps(results, indent=1))
                return stem
    raise AssertionError("itertools.count never ends")


def _create_exclusively(path: Path, text: str) -> None:
    """Create ``path`` holding ``text``: ``FileExistsError`` if it exists; after any other
    failure, nothing is left behind."""
    try:
        f = path.open("x", encoding="utf-8")
    except FileExistsError:
        raise
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        with f:
            f.write(text + "\n")
    except BaseException as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise


def plot(results: dict[str, Any], path: Path) -> str | None:
    """A bar chart of each float32 row's ratio to the limit, one panel per device (the
    reduced precisions' rows are in their tables).

    Returns ``None`` when written, else why not (matplotlib missing, nothing to draw).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    rows = [
        r
        for r in results["rows"]
        if r["status"] == "ok" and r["impl"] != "limit" and r.get("ratio_to_limit")
        if precision_of(r) == "float32"
    ]
    devices = list(dict.fromkeys(r["device"] for r in rows))
    if not devices:
        return "no rows to draw"
    workloads = list(dict.fromkeys(r["workload"] for r in results["rows"]))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    width_in = max(8.0, 6.0 * len(devices))
    fig, axes = plt.subplots(1, len(devices), figsize=(width_in, 4.8), squeeze=False)
    width = 0.8 / max(1, len(labels))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = max(r["ratio_to_limit"] for r in rows)
    for ax, device in zip(axes[0], devices, strict=True):
        for j, label in enumerate(labels):
            xs, ys = [], []
            for i, workload in enumerate(workloads):
                match = [
                    r
                    for r in rows
                    if (r["device"], r["label"], r["workload"]) == (device, label, workload)
                ]
                if match:
                    xs.append(i + (j - (len(labels) - 1) / 2) * width)
                    ys.append(match[0]["ratio_to_limit"])
            bars = ax.bar(xs, ys, width, label=label, color=colors[j % len(colors)])
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(workloads)), workloads)
        ax.set_ylim(0, top * 1.12)
        ax.set_title(f"{device}: epoch time / matmul-only limit (lower is better)", fontsize=9)
        ax.set_ylabel("× limit (dashed: the limit)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 3), fontsize=8)
    parts = machine_line(results["machine"]).split(" · ")
    half = (len(parts) + 1) // 2
    fig.suptitle(" · ".join(parts[:half]) + "\n" + " · ".join(parts[half:]), fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=90, format="png"))
    finally:
        plt.close(fig)
    return None
