"""Data-parallel training: one model on N processes, started by an MPI launcher.

``mpiexec -n N`` (or ``srun``, or any MPI launcher) starts the processes; mpi4py carries
what passes between them on the host, and between GPUs NCCL reduces the gradients on the
device (``backends/cuda/nccl.py``), set up over MPI, as ChainerMN's ``pure_nccl``
communicator did. Nothing is scattered: every process holds the whole dataset, derives each
epoch's row order from ``(seed, epoch)`` as one process does, and takes its share of every
batch, so the global batch, and the path training follows, stay those of one process.

Per step, each process's loss gradient is scaled by its share of the batch, the backward
pass runs on its rows, and the gradients are summed across processes: the sum is the
gradient of the whole batch's mean loss. On the CPU, each layer's gradient starts its
non-blocking ``Iallreduce`` as the backward pass produces it; on GPUs, one NCCL all-reduce
of the flat gradient buffer is enqueued on the step's stream (and recorded with it).

mpi4py is imported only here, and only when a communicator is made: a run outside a
launcher never initialises MPI.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .errors import InvalidArgument, MLPError
from .extras import require
from .version import VERSION

#: What launchers set: the world's size (MPICH/Hydra and Intel MPI, Open MPI, MVAPICH, Slurm's
#: ``srun``; PMIx-based launchers also set one of the first two).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")
#: Any of these set says how many threads a process's BLAS takes: then it is left alone.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class DistributedError(MLPError, RuntimeError):
    """A data-parallel run that cannot go on: no launcher where one was asked for, or
    processes that disagree on what they train."""


def launched_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of processes the launcher around this one started (1 and more), or
    ``None`` when no launcher started it."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return None


class NotLaunched(DistributedError):
    """A world was asked for (``insist``) in a process that no launcher started."""


def from_environment(insist: bool = False) -> Communicator | None:
    """The communicator of the launcher's world: ``None`` for one process outside a launcher
    (and for a world of one, unless ``insist``); with ``insist``, a launcher is required."""
    size = launched_size()
    if size is None:
        if insist:
            raise NotLaunched(
                "no MPI launcher started this process: run it as mpiexec -n N ... (or srun), "
                "or leave out --distributed"
            )
        return None
    if size == 1 and not insist:
        return None
    return Communicator()


def end_launched(status: int | str | None) -> None:
    """A process started with others by a launcher, exiting before it joins them with
    ``status`` (a ``SystemExit``'s: a usage error, say, where only its machine lacks the
    --save folder): on a failure it starts MPI only to end them all (MPI_Abort), since they
    wait for it in MPI's start-up for ever."""
    status = 0 if status is None else status if isinstance(status, int) else 1
    if not status or (launched_size() or 0) < 2:
        return
    try:
        mpi = _mpi()
    except MLPError:  # no MPI here: the others cannot start it either
        return
    sys.stdout.flush()
    sys.stderr.flush()
    mpi.COMM_WORLD.Abort(status)


def _mpi() -> Any:
    """mpi4py's MPI, started (a ``MissingExtra`` without mpi4py, a ``DistributedError``
    where it finds no MPI library to load)."""
    try:
        return require("mpi4py.MPI", "dist", "training on several processes", "mpi4py")
    except RuntimeError as exc:  # mpi4py there, but no MPI library it can load
        raise DistributedError(
            f"mpi4py cannot start MPI ({exc}): install the 'dist' extra's MPICH "
            "(pip install mpich) or build mpi4py against your MPI (docs/distributed.md)"
        ) from None


def blas_threads() -> int | None:
    """How many threads this process's BLAS runs (``None`` where threadpoolctl is missing)."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    # NumPy's own BLAS does the products; another (SciPy's, loaded by Numba) sits idle
    mine = [p for p in pools if "numpy" in p["filepath"]] or pools
    return max((p["num_threads"] for p in mine), default=None)


def shares(rows: int, size: int) -> list[tuple[int, int]]:
    """Each rank's ``[start, stop)`` of ``rows`` rows: as even as they divide, in rank order."""
    return [(rank * rows // size, (rank + 1) * rows // size) for rank in range(size)]


class Communicator:
    """One process's place among the processes training one model: its ``rank``, the
    world's ``size``, and the collectives training needs.

    ``mpi_comm`` is an mpi4py communicator (``MPI.COMM_WORLD`` by default). Hand the same
    communicator to ``fit`` (and ``evaluate``) on every process. Copies of a communicator
    are the communicator itself: it names a group of processes, as a device names a GPU.
    """

    def __init__(self, mpi_comm: Any = None, overlap: bool = True) -> None:
        mpi = _mpi()
        self._mpi = mpi
        self.comm = mpi.COMM_WORLD if mpi_comm is None else mpi_comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        node = self.comm.Split_type(mpi.COMM_TYPE_SHARED)
        #: this process's place among those on its machine: the GPU it takes
        self.local_rank: int = node.Get_rank()
        self.local_size: int = node.Get_size()
        node.Free()
        #: on the CPU, start each layer's all-reduce as its gradient is ready (False: one
        #: blocking all-reduce of the whole buffer after the backward pass)
        self.overlap = overlap
        self._device: Any = None  # NCCL's communicator, for a CUDA backend
        self._pending: list[Any] = []

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size})"

    def __deepcopy__(self, memo: dict) -> Communicator:
        return self

    def __copy__(self) -> Communicator:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a Communicator cannot be pickled: each process makes its own")

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the process that prints and writes files."""
        return self.rank == 0

    def share(self, rows: int) -> tuple[int, int]:
        """This rank's ``[start, stop)`` of ``rows`` rows."""
        return shares(rows, self.size)[self.rank]

    def library(self) -> str:
        """The MPI library in use, in a few words."""
        return " ".join(self._mpi.Get_library_version().strip().splitlines()[0].split())

    def describe(self, backend: Any) -> str:
        """The device line's addition: how many processes, on which devices."""
        hosts = len(set(self.comm.allgather(self._mpi.Get_processor_name())))
        if backend.device.startswith("cuda"):
            each, link = "one GPU each", "NCCL"
        else:
            threads = self.comm.allgather(blas_threads())
            each = f"{'/'.join(str(t) for t in sorted(set(threads)))} BLAS thread(s) each"
            link = "MPI"
        machines = f"{hosts} machine{'s' * (hosts > 1)}"
        processes = f"{self.size} process{'es' * (self.size > 1)}"
        return f"{processes} on {machines}, {each} ({link}; {self.library()})"

    def share_cores(self) -> int | None:
        """Give this process's BLAS its share of the machine's cores, when several of the
        world's processes share it and the environment does not say (``THREAD_VARIABLES``):
        two processes of two threads each on two cores ran an epoch six times slower than
        with one each. Returns the threads set, or ``None`` where nothing changed."""
        if self.local_size == 1 or any(os.environ.get(v) for v in THREAD_VARIABLES):
            return None
        threadpoolctl = require("threadpoolctl", "dist", "sharing the cores between processes")
        threads = max(1, len(os.sched_getaffinity(0)) // self.local_size)
        threadpoolctl.threadpool_limits(threads, user_api="blas")
        return threads

    # ------------------------------------------------------------------ the gradients
    def bind(self, backend: Any) -> None:
        """Ready the gradient all-reduce for ``backend``'s device (NCCL for a GPU, set up
        over MPI the first time)."""
        if not backend.device.startswith("cuda"):
            self._device = None  # a GPU's NCCL group from an earlier fit sums no host arrays
            return
        if self._device is not None and self._device.backend is backend:
            return
        from backends.cuda.nccl import NcclGroup

        check_own_gpus(self.comm.allgather((self._mpi.Get_processor_name(), backend.bus_id)))
        self._device = NcclGroup(backend, self.size, self.rank, self.comm.bcast)

    @property
    def recordable(self) -> bool:
        """Whether its gradient sum is device work that a recorded step holds (NCCL, after
        ``bind`` to a GPU), not host calls that a replay would leave out (MPI)."""
        return self._device is not None

    def gradient_ready(self, grads: Any) -> None:
        """One layer's gradient (a slice of the flat buffer) is complete: on the CPU, start
        summing it across processes (non-blocking) while the backward pass goes on."""
        if self._device is None and self.overlap:
            self._pending.append(self.comm.Iallreduce(self._mpi.IN_PLACE, grads))

    def gradients_done(self, grads: Any) -> None:
        """The flat gradient buffer is complete: sum it across processes, in place, before
        the update (one NCCL call on the step's stream; on the CPU, wait for the layers')."""
        if self._device is not None:
            self._device.allreduce(grads)
        elif self.overlap:
            self._mpi.Request.Waitall(self._pending)
            self._pending.clear()
        else:
            self.comm.Allreduce(self._mpi.IN_PLACE, grads)

    def broadcast(self, backend: Any, array: Any) -> None:
        """Rank 0's ``array`` (on the device) into every process's, in place."""
        if self._device is not None:
            self._device.broadcast(array)
            return
        host = backend.to_numpy(array)
        self.comm.Bcast(host, root=0)
        array[...] = backend.asarray(host)

    # ------------------------------------------------------------------ on the host
    def sum(self, values: Any) -> np.ndarray:
        """The sum over processes of a few host numbers, the same on every process (rank
        0's sum, broadcast, whatever order the library adds in)."""
        total = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, total)
        self.comm.Bcast(total, root=0)
        return total

    def agree(self, settings: Mapping[str, Any]) -> None:
        """Refuse to start unless every process has the same ``settings``: a setting that
        differs names itself, its value here and on rank 0. Raised on every process."""
        everyone = self.comm.allgather(dict(settings))  # mpi4py pickles them
        for rank, theirs in enumerate(everyone):
            difference = _difference(theirs, everyone[0])
            if difference is not None:
                where, mine, root = difference
                raise DistributedError(
                    f"the processes disagree on {where}: {mine!r} on rank {rank}, {root!r} on "
                    "rank 0; start every process with the same settings, data and version"
                )

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, status: int = 1) -> None:
        """End every process of the world now (MPI_Abort): one that failed while the others
        wait in a collective would otherwise leave them waiting for ever."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(status)


def check_own_gpus(places: list[tuple[str, str]]) -> None:
    """Refuse processes that share a GPU (``places``: each rank's machine and GPU bus id):
    NCCL runs one rank per GPU, and its own error would not say what to change."""
    first: dict[tuple[str, str], int] = {}
    for rank, place in enumerate(places):
        if place in first:
            raise DistributedError(
                f"ranks {first[place]} and {rank} would share the GPU {place[1]} on {place[0]}: "
                "NCCL needs a GPU of its own for each process; start at most as many processes "
                "on a machine as it has GPUs, with --device cuda (each takes its local rank's)"
            )
        first[place] = rank


# ---------------------------------------------------------------------- what a command needs
@contextlib.contextmanager
def root_first(world: Communicator | None) -> Iterator[None]:
    """Rank 0 runs the block before the others do (a dataset is downloaded once, then read
    by all); should it fail, ``ending_all_on_failure`` ends the waiting others."""
    if world is not None and not world.is_root:
        world.barrier()
    yield
    if world is not None and world.is_root:
        world.barrier()


class Ending:
    """The exit status a command's work ended with, set by the command."""

    status = 0


@contextlib.contextmanager
def ending_all_on_failure(world: Communicator | None) -> Iterator[Ending]:
    """A command's work on one process of several: a failure there (a non-zero status the
    command sets, or a bug escaping with its traceback) ends every process of the world at
    once, rather than leaving the others waiting in a collective for ever."""
    ending = Ending()
    several = world is not None and world.size > 1
    try:
        yield ending
    except BaseException:
        if several:
            traceback.print_exc()
            world.abort(1)
        raise
    if several and ending.status:
        world.abort(ending.status)


# ---------------------------------------------------------------------- what fit asks of it
def check(communicator: Any) -> None:
    """``fit``'s ``communicator`` argument, checked where it enters."""
    if communicator is not None and not isinstance(communicator, Communicator):
        raise TypeError(
            f"communicator must be an mlp.distributed.Communicator, got {communicator!r}"
        )


def check_batch(communicator: Communicator | None, batch_size: int) -> None:
    """A global batch that gives every process rows; checked once the processes agree on
    it (a process that failed alone would leave the others waiting in ``agree``)."""
    if communicator is not None and batch_size < communicator.size:
        raise InvalidArgument(
            f"batch_size {batch_size} leaves some of the {communicator.size} processes without "
            f"rows: use a batch of at least {communicator.size} (it is the global batch)"
        )


#: splitmix64's constants: the step between places, and its finalizer's shifts and (odd)
#: multipliers, which spread every bit of a word over all of it.
_STEP = np.uint64(0x9E3779B97F4A7C15)
_FINALIZER = [
    (np.uint64(shift), np.uint64(factor))
    for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, 0))
]


def _digest(backend: Any, array: Any) -> str | None:
    """What two copies of an array (host or device) share only if they hold the same bytes
    in the same places: its shape, dtype and a 64-bit sum of each 8-byte word mixed with its
    place. Integer sums come out the same in any order, so neither BLAS's threads nor the
    device change it (as they change a float sum's last bits), and the mixing tells apart
    what keeps each row's sum (swapped columns, +0.5 here and -0.5 there)."""
    if array is None:
        return None
    xp = backend.xp
    table = array.reshape(array.shape[0], -1) if array.size else array.reshape(0, 1)
    row_bytes = max(1, table.shape[1] * array.dtype.itemsize)
    words = 1 << (24 if backend.device.startswith("cuda") else 16)  # a launch, a core's cache
    rows = max(8, words * 8 // row_bytes // 8 * 8)  # whole words: a multiple of 8 rows
    total = xp.zeros((), dtype=np.uint64)
    for start in range(0, table.shape[0], rows):
        part = xp.ascontiguousarray(table[start : start + rows]).reshape(-1).view(np.uint8)
        if part.size % 8:  # the last chunk's last word, filled up with zeros
            part = xp.concatenate([part, xp.zeros(-part.size % 8, np.uint8)])
        first = start * table.shape[1] * array.dtype.itemsize // 8
        places = xp.arange(first, first + part.size // 8, dtype=np.uint64)
        mixed = part.view(np.uint64) + places * _STEP
        for shift, factor in _FINALIZER:
            mixed ^= mixed >> shift
            if factor:
                mixed *= factor
        total += mixed.sum(dtype=np.uint64)
    return f"{array.shape} {array.dtype.name} {int(backend.to_numpy(total)):016x}"


def _difference(mine: Any, root: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first setting, in rank 0's order and into nested settings (``the model's
    seed``), where ``mine`` differs from ``root``: its name and both values."""
    if not (isinstance(mine, Mapping) and isinstance(root, Mapping)):
        return None if mine == root else (where, mine, root)
    for key in [*root, *(key for key in mine if key not in root)]:
        name = f"{where}'s {key}" if where else key
        found = _difference(mine.get(key), root.get(key), name)
        if found is not None:
            return found
    return None


def fingerprint(
    model: Any,
    optimizer: Any,
    X: Any,
    targets: Any,
    weights: Any,
    validation: Any,
    rows: int,
    batch_size: int,
    epochs: int,
    initial_epoch: int,
    seed: int,
    shuffle: bool,
    schedule: Any,
    stopping: Any,
) -> dict[str, Any]:
    """What every process of a ``fit`` must share: settings, model, optimizer, data."""
    be = model.backend
    held = validation or (None, None, None, None)
    return {
        "the version": VERSION,
        "the device kind": be.device.partition(":")[0],
        "the precision": be.precision,
        "the model": {
            **model.config(),
            "dtype": model.dtype.str,
            "epochs trained": model.epochs_trained,
        },
        "the optimizer": {"name": type(optimizer).__name__, **optimizer.hyperparameters()},
        "the training data": _data(be, X, targets, weights),
        "the validation data": _data(be, held[0], held[2], held[3]),
        "the rows trained on": rows,
        "batch_size": batch_size,
        "epochs": (initial_epoch, epochs),
        "seed": seed,
        "shuffle": shuffle,
        "the lr schedule": _settings(schedule),
        "early stopping": _settings(stopping),
    }


def agree_on_data(
    communicator: Communicator, model: Any, X: Any, targets: Any, weights: Any
) -> None:
    """``evaluate`` and ``loss_and_gradients`` with a ``communicator``: every process takes
    its share of the rows it holds, so all must hold the same rows and weights (shares of
    each one's own would sum to neither's answer)."""
    communicator.agree(
        {
            "the model's weights": _weights(model),
            "the data": _data(model.backend, X, targets, weights),
        }
    )


def _weights(model: Any) -> str:
    return _digest(model.backend, model.params)


def _data(be: Any, inputs: Any, targets: Any, weights: Any) -> dict[str, str | None]:
    return {"inputs": _digest(be, inputs), "targets": _digest(be, targets),
            "weights": _digest(be, weights)}  # fmt: skip


def _settings(decider: Any) -> str | None:
    """A schedule's or an early stopping's class and plain values (its settings and what it
    has counted so far): two copies that share them decide alike at every epoch."""
    if decider is None:
        return None
    plain = {
        name: getattr(value, "__qualname__", value) if callable(value) else value
        for name, value in sorted(vars(decider).items())
        if callable(value) or isinstance(value, (bool, int, float, str, type(None)))
    }
    return f"{type(decider).__name__}({', '.join(f'{k}={v!r}' for k, v in plain.items())})"


def start_alike(communicator: Communicator, model: Any, optimizer: Any) -> None:
    """Every process starts from rank 0's weights and optimizer state (update count too)."""
    be = model.backend
    communicator.bind(be)  # on GPUs, through NCCL
    for array in (model.params, *optimizer.arrays()):
        communicator.broadcast(be, array)


def check_replicas(communicator: Communicator, model: Any, when: str) -> None:
    """Refuse to go on when the processes' weights have drifted apart (each applies the same
    summed gradient, so they agree bit for bit unless something changed one of them);
    ``when``: what has just run, for the message."""
    mine = _weights(model)
    theirs = communicator.comm.allgather(mine)
    for rank, digest in enumerate(theirs):
        if digest != theirs[0]:
            raise DistributedError(
                f"the weights on rank {rank} differ from rank 0's after {when}: something "
                "changed one process's model alone (a callback, another thread)"
            )
