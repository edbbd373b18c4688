"""Reading a checkpoint that may be corrupt or hostile: nothing is read before it is checked.

The metadata comes first, from a member of bounded size, and is checked against its schema,
types and ranges included (``check_meta``). It says which arrays the file holds, their
shapes and their dtype: every other member must be one of them, and each ``.npy`` header is
compared with what the metadata implies before a byte of its data is read, which must then
be exactly that long. So a file costs no more memory than the model it describes, and any
corruption of the zip or ``.npy`` structure ends in one ``CheckpointError``.
"""

from __future__ import annotations

import itertools
import json
import math
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import checks, optim
from .errors import CheckpointError, InvalidArgument
from .losses import loss_for
from .optim import SGD, Adam, AdamW, Optimizer

FORMAT = "mlp-checkpoint"
FORMAT_VERSION = 3  # 2 adds early stopping's best.params; 3 last.params
#: The versions this reader takes: each earlier one is the next without its addition.
READS = (1, 2, 3)
META = "__meta__"
#: The optimizers a file names, by their class's name.
STORED_OPTIMIZERS: dict[str, type[Optimizer]] = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
#: The model's settings the metadata stores (``MLP.config()``), each an ``MLP`` argument.
MODEL_SETTINGS = ("sizes", "activation", "dtype", "seed", "dropout", "init", "output_activation")
#: Settings added since: a file written before them holds their default.
LATER_SETTINGS = {"loss": "cross_entropy"}
#: The metadata member's largest size: a history of a million epochs fits in far less.
MAX_META_BYTES = 64 << 20
#: The most a zip member inflates: deflate codes at most 258 bytes in 2 bits (~1032:1).
DEFLATE_EXPANSION = 1032
#: What a malformed zip or ``.npy`` member raises while it is read: corruption, never a bug.
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    SyntaxError,
    tokenize.TokenError,
    NotImplementedError,  # "compression method not supported", "zip file version"
    RuntimeError,  # an "encrypted" member
    OverflowError,
)


class _Bad(Exception):
    """A problem in the metadata: ``incomplete`` when a field is missing."""

    def __init__(self, text: str, incomplete: bool = False) -> None:
        super().__init__(text)
        self.incomplete = incomplete


def read(path: Path) -> tuple[dict[str, Any], Optimizer | None, dict[str, np.ndarray]]:
    """The checked metadata, the optimizer it describes (or ``None``) and every array, by
    member name without ``.npy``."""
    try:
        with path.open("rb") as f:
            magic = f.read(6)
        if not magic:
            raise CheckpointError(path, "empty file (truncated, or never written)")
        if magic.startswith(b"\x93NUMPY"):
            raise CheckpointError(path, "not an mlp checkpoint (a single .npy array)")
        if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip file's first record
            raise CheckpointError(path, "not an mlp checkpoint (not an .npz file)")
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if len(members) < len(archive.infolist()):  # which copy counts is the reader's
                raise CheckpointError(path, "an entry appears twice (a tampered file)")
            meta_info = members.pop(META + ".npy", None)
            if meta_info is None:
                raise CheckpointError(path, f"not an mlp checkpoint (no {META} entry)")
            if meta_info.file_size > MAX_META_BYTES:
                raise CheckpointError(
                    path, f"metadata of {meta_info.file_size:,} bytes: no checkpoint has as much"
                )
            meta = parse_meta(path, _read_member(path, archive, meta_info, None, np.uint8))
            optimizer = check_meta(path, meta)
            expected = _expected_members(path, meta, optimizer, set(members))
            dtype = np.dtype(meta["model"]["dtype"])
            arrays = {
                name[: -len(".npy")]: _read_member(path, archive, members[name], shape, dtype)
                for name, shape in expected.items()
            }
    except CheckpointError:
        raise
    except PermissionError as exc:
        raise CheckpointError(path, f"cannot read ({exc.strerror})") from None
    except ARCHIVE_ERRORS as exc:
        raise CheckpointError(path, f"truncated or corrupt checkpoint ({_one_line(exc)})") from None
    return meta, optimizer, arrays


def stored_epoch(path: Path) -> int | None:
    """The epoch the checkpoint at ``path`` holds, from its metadata alone (what a stopped
    run reports it kept); ``None`` where no checkpoint can be read there."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(META + ".npy")
            if info.file_size > MAX_META_BYTES:
                return None
            meta = parse_meta(path, _read_member(path, archive, info, None, np.uint8))
    except (CheckpointError, *ARCHIVE_ERRORS):
        return None
    epoch = meta.get("epoch") if isinstance(meta, dict) else None
    return epoch if type(epoch) is int else None


def _read_member(
    path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, shape: Any, dtype: Any
) -> np.ndarray:
    """A member's array, its header checked first: ``shape`` (``None``: any 1-D length) and
    ``dtype``, C order, then exactly that much data, read into memory allocated once."""
    entry = info.filename[: -len(".npy")]
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # NumPy writes these two only; zipfile inflates bzip2 and LZMA reads without a limit
        raise CheckpointError(
            path,
            f"{_what(entry)} is compressed by method {info.compress_type}, which NumPy "
            "never writes (not an mlp checkpoint)",
        )
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise ValueError(f"{entry}: .npy format version {version}")
        stored_shape, fortran, stored_dtype = read_header(f)
        if stored_dtype.hasobject:
            raise CheckpointError(
                path, "holds pickled objects, which are never loaded (not an mlp checkpoint)"
            )
        wanted = (len(stored_shape) == 1) if shape is None else (stored_shape == tuple(shape))
        if not wanted or stored_dtype != np.dtype(dtype) or fortran:
            need = "a 1-D array" if shape is None else f"{np.dtype(dtype)}{list(shape)}"
            is_in, needs_in = (" in Fortran order", " in C order") if fortran else ("", "")
            raise CheckpointError(
                path,
                f"{_what(entry)} is {stored_dtype}{list(stored_shape)}{is_in}, but needs "
                f"{need}{needs_in}",
            )
        nbytes = math.prod(stored_shape) * stored_dtype.itemsize
        # Before anything is allocated: the entry holds exactly that much, and its stored
        # bytes could inflate to it (a small file cannot declare a terabyte).
        if f.tell() + nbytes != info.file_size:
            raise ValueError(f"{entry}: {info.file_size:,} bytes for an array of {nbytes:,}")
        if info.file_size > max(info.compress_size, 1) * DEFLATE_EXPANSION:
            raise ValueError(f"{entry}: {info.compress_size:,} stored bytes for {nbytes:,}")
        if info.compress_size > path.stat().st_size:
            raise ValueError(f"{entry}: {info.compress_size:,} bytes in a smaller file")
        try:
            out = np.empty(stored_shape, stored_dtype)
        except MemoryError:
            raise CheckpointError(
                path, f"its model needs {nbytes:,} bytes for {_what(entry)}: more than memory has"
            ) from None
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < out.nbytes:
            got = f.readinto(view[done:])
            if not got:
                raise EOFError(f"{entry}: ends after {done:,} of its {out.nbytes:,} bytes")
            done += got
        if f.read(1):  # trailing data (and the CRC is checked on reaching the end)
            raise ValueError(f"{entry}: more data than its header says")
    return out


def _what(entry: str) -> str:
    if entry.startswith("param."):
        return f"weight {entry[len('param.') :]}"
    if entry.startswith("optim."):
        return f"optimizer state {entry[len('optim.') :]}"
    return entry


def parse_meta(path: Path, raw: np.ndarray) -> Any:
    try:
        return json.loads(raw.tobytes().decode())
    except RecursionError:
        raise CheckpointError(path, "corrupt checkpoint metadata (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"corrupt checkpoint metadata ({_one_line(exc)})") from None


def _expected_members(
    path: Path, meta: dict[str, Any], optimizer: Optimizer | None, present: set[str]
) -> dict[str, tuple[int, ...]]:
    """Every array member the metadata implies, with its shape, after checking that the file
    holds those and no others."""
    sizes = meta["model"]["sizes"]
    weights: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weights[f"param.{i}.weight.npy"] = (fan_in, fan_out)
        weights[f"param.{i}.bias.npy"] = (fan_out,)
    held = {name for name in present if name.startswith("param.")}
    if held != set(weights):
        raise CheckpointError(
            path,
            f"weights do not match its layer sizes {sizes}: "
            f"missing {_entries(set(weights) - held)}, unexpected {_entries(held - set(weights))}",
        )
    count = sum(a * b + b for a, b in itertools.pairwise(sizes))
    state = {f"optim.{name}.npy": (count,) for name in (optimizer.state_names if optimizer else ())}
    held = {name for name in present if name.startswith("optim.")}
    if optimizer is not None and held != set(state):
        raise CheckpointError(
            path,
            f"optimizer {type(optimizer).__name__} needs state {_entries(set(state))}, "
            f"the file holds {_entries(held)}",
        )
    best = {"best.params.npy": (count,)} if "best_epoch" in meta else {}  # early stopping's
    if best.keys() - present:
        raise CheckpointError(
            path, f"names a best epoch, {meta['best_epoch']}, without its weights"
        )
    last = {"last.params.npy": (count,)} if meta.get("ended_on_best") else {}  # the run's own
    if last.keys() - present:
        raise CheckpointError(path, "ended on its best epoch's weights, without its last ones")
    other = sorted(present - set(weights) - set(state) - set(best) - set(last))
    if other:
        raise CheckpointError(
            path, f"holds an entry {_entries(set(other))} that no mlp checkpoint has"
        )
    return {**weights, **state, **best, **last}


def _entries(names: set[str]) -> list[str]:
    """Member names as a person reads them: ``['1.bias']``, ``['m', 'v']``."""
    return sorted(name.removesuffix(".npy").split(".", 1)[-1] for name in names)


# ---------------------------------------------------------------------------------- metadata
def check_meta(path: Path, meta: Any) -> Optimizer | None:
    """Every field the loader or a resumed run reads, types and ranges included; returns the
    optimizer its ``optimizer`` field describes (``None`` without one)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(path, "not an mlp checkpoint (unknown metadata)")
    version = meta.get("format_version")
    if type(version) is not int or version not in READS:
        newer = type(version) is int and version > FORMAT_VERSION
        raise CheckpointError(
            path,
            f"checkpoint format version {version!r}, but this mlp reads versions "
            f"{', '.join(map(str, READS[:-1]))} and {READS[-1]}"
            + ("; upgrade mlp to load it" if newer else ""),
        )
    try:
        optimizer = _check_fields(meta)
    except _Bad as bad:
        kind = "incomplete" if bad.incomplete else "corrupt"
        raise CheckpointError(path, f"{kind} checkpoint metadata ({bad})") from None
    return optimizer


def check_saving(meta: dict[str, Any]) -> None:
    """What a save is about to write, checked as its load will check it: an
    ``InvalidArgument`` naming the field, before the file it would replace is touched."""
    try:
        _check_fields(meta)
    except _Bad as bad:
        raise InvalidArgument(f"cannot save this checkpoint: {bad}") from None


def _check_fields(meta: dict[str, Any]) -> Optimizer | None:
    """``check_meta``'s fields, each a ``_Bad`` naming it."""
    _check_model(_field(meta, "model", dict))
    optimizer = stored_optimizer(meta.get("optimizer"))
    _count(_field(meta, "epoch"), "epoch")
    if "best_epoch" in meta:  # early stopping's best so far, its weights in best.params
        best = _count(meta["best_epoch"], "best_epoch", minimum=1)
        if best > meta["epoch"]:
            raise _Bad(f"best_epoch {best} is after its epoch {meta['epoch']}")
    if meta.get("ended_on_best", False) not in (True, False) or (
        meta.get("ended_on_best") and "best_epoch" not in meta
    ):
        raise _Bad("ended_on_best is not true or false, or names no best epoch")
    _count(_field(_field(meta, "rng", dict), "seed", where="rng"), "rng.seed")
    _check_history(meta.get("history", []))
    run = meta.get("run", {})
    if not isinstance(run, dict):
        raise _Bad("'run' is not an object")
    for key in ("dataset", "data_dir", "data_digest"):
        if not isinstance(run.get(key, ""), str):
            raise _Bad(f"run.{key} is not a string")
    try:
        checks.class_names(meta.get("classes"), class_count(meta))
    except InvalidArgument as exc:
        raise _Bad(str(exc)) from None
    return optimizer


def class_count(meta: dict[str, Any]) -> int:
    """How many classes the checked ``meta``'s model tells apart (0: a regression)."""
    model = meta["model"]
    return loss_for(model.get("loss", LATER_SETTINGS["loss"]), model["sizes"][-1]).classes


def _field(record: dict[str, Any], key: str, kind: type | None = None, where: str = "") -> Any:
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise _Bad(f"no {name}", incomplete=True)
    if kind is dict and not isinstance(record[key], dict):
        raise _Bad(f"{name} is not an object")
    return record[key]


def _count(value: Any, where: str, minimum: int = 0) -> int:
    """A whole number from ``minimum`` that an int64 holds (a bool, 0.5 or Infinity is not)."""
    if type(value) is not int or not minimum <= value < 2**63:
        raise _Bad(f"{where} must be a whole number from {minimum}, got {value!r}")
    return value


def _check_model(model: dict[str, Any]) -> None:
    settings = {key: _field(model, key, where="model") for key in MODEL_SETTINGS}
    settings.update({key: model.get(key, default) for key, default in LATER_SETTINGS.items()})
    sizes = settings["sizes"]
    if not isinstance(sizes, list) or not all(type(s) is int for s in sizes):
        raise _Bad(f"model.sizes must be a list of whole numbers, got {sizes!r}")
    if settings["dtype"] not in checks.DTYPES:
        raise _Bad(
            f"model.dtype must be one of {', '.join(checks.DTYPES)}, got {settings['dtype']!r}"
        )
    rules = {
        "sizes": checks.layer_sizes,
        "activation": checks.activation,
        "seed": lambda value: checks.seed("seed", value),
        "dropout": lambda value: checks.fraction("dropout probability", value),
        "init": lambda value: checks.init_scheme(value, settings["activation"]),
        "output_activation": lambda value: value is None or checks.activation(value),
        "loss": checks.loss,
    }
    for key, rule in rules.items():
        try:
            rule(settings[key])
        except (InvalidArgument, TypeError) as exc:
            raise _Bad(f"model.{key}: {exc}") from None


def stored_optimizer(spec: Any) -> Optimizer | None:
    """The optimizer the metadata's ``optimizer`` field describes, with its hyperparameters
    and the name it was made of (its state is the file's arrays), or ``None``; a field it
    cannot be built from is a ``_Bad`` naming it."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise _Bad("optimizer is not an object")
    name = spec.get("name")
    if not isinstance(name, str) or name not in STORED_OPTIMIZERS:
        raise _Bad(f"unknown optimizer {name!r}")
    _count(_field(spec, "steps", where="optimizer"), "optimizer.steps")
    made_of = spec.get("made_of")
    named = optim.OPTIMIZERS.get(made_of) if isinstance(made_of, str) else None
    if made_of is not None and named is not STORED_OPTIMIZERS[name]:
        raise _Bad(f"optimizer.made_of {made_of!r} does not name a {name}")
    settings = spec.get("hyperparameters") or {}
    if not isinstance(settings, dict):
        raise _Bad("optimizer.hyperparameters is not an object")
    if isinstance(settings.get("betas"), list):
        settings = {**settings, "betas": tuple(settings["betas"])}
    try:
        optimizer = STORED_OPTIMIZERS[name](**settings)
    except (InvalidArgument, TypeError) as exc:
        raise _Bad(f"optimizer.hyperparameters: {_one_line(exc)}") from None
    optimizer.made_of = made_of  # a later fit given that name goes on with it
    return optimizer


#: A history record's numbers: those ``fit`` always writes, and those with validation data.
_HISTORY_NEEDS = ("loss",)
_HISTORY_MAY_HOLD = ("accuracy", "seconds", "val_loss", "val_accuracy", "lr")
#: Those that may be NaN or infinite: validation data can overflow a model that trains well.
_HISTORY_MEASURED = ("val_loss", "val_accuracy")


def _check_history(history: Any) -> None:
    """The records a resumed run extends and ``--plot`` draws: each an epoch from 1 with a
    loss (and a classifier's accuracy), every number finite but the validation metrics."""
    if not isinstance(history, list):
        raise _Bad("'history' is not a list")
    for i, record in enumerate(history):
        if not isinstance(record, dict) or type(record.get("epoch")) is not int:
            raise _Bad(f"history entry {i} is not an epoch's record")
        _count(record["epoch"], f"history entry {i}'s epoch", minimum=1)
        for key in (*_HISTORY_NEEDS, *_HISTORY_MAY_HOLD):
            if key not in record:
                if key in _HISTORY_NEEDS:
                    raise _Bad(f"history entry {i} has no {key}")
                continue
            value = record[key]
            if not (_finite(value) or (key in _HISTORY_MEASURED and type(value) is float)):
                raise _Bad(f"history entry {i} has a {key} that is not a number")


def _finite(value: Any) -> bool:
    """An int or a float (not a bool) that a float holds, neither NaN nor infinite."""
    try:
        return type(value) in (int, float) and math.isfinite(float(value))
    except OverflowError:
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
