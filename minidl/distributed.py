r"""Data-parallel training over MPI: ``mpiexec -n N python -m minidl train CONFIG``, or
``model.fit(..., distribute=DataParallel())`` in a script that ``mpiexec`` starts.

Every process holds the whole model and all the data (Horovod's scheme, with mpi4py). Each
batch of :math:`B` rows is cut into N contiguous shares of :math:`n_r` rows, one per
process (the first :math:`B \bmod N` processes get one row more; a process may get none).
Each process runs forward and backward on its share with the share's loss weighted by its
fraction of the batch, :math:`n_r / B` for a mean over the rows
(``Loss.shard_fraction``), because

.. math::
    L = \frac{1}{B} \sum_{i=1}^{B} \ell_i = \sum_r \frac{n_r}{B} L_r
    \quad\Longrightarrow\quad
    \nabla_\theta L = \sum_r \frac{n_r}{B} \nabla_\theta L_r

and one ``Allreduce`` per step sums those gradients (and the weighted losses) over the
processes. Every process then holds the whole batch's gradient and takes the same optimizer
step. With rank 0's weights and random generators given to all at the start, dropout masks
drawn for the whole batch (``Dropout``), and batch statistics summed over the processes
(``BatchNormalization``), N processes end with the weights of one process with the same
batch size, up to rounding (docs/distributed.md).

mpi4py is imported when a ``DataParallel`` is made, never by importing this module:
``launched_processes`` tells from the environment alone whether mpiexec started us.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import numpy as np

from minidl.data import batches
from minidl.extras import missing
from minidl.layers.base import BatchShard
from minidl.parameter import gradients_with_spare

# the number of processes, as the launchers put it in each one's environment: MPICH's and
# Intel MPI's hydra (PMI_SIZE), Open MPI, MVAPICH
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# rows of x and y whose bytes the processes compare before training: enough to catch data
# that differ (each process given its own part, another shuffle), cheap for any data set
_FINGERPRINT_ROWS = 256
_ABORT_DELAY_SECONDS = 0.5


def launched_processes(environ: Mapping[str, str] | None = None) -> int:
    """How many processes ``mpiexec`` started this one among, read from the environment
    (``os.environ`` by default) without importing mpi4py; 1 without mpiexec."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def share_bounds(rows: int, size: int, rank: int) -> tuple[int, int]:
    """``(start, stop)``: the rows of a batch of ``rows`` that process ``rank`` of ``size``
    takes, contiguous, the first ``rows % size`` processes one row more than the others."""
    base, extra = divmod(rows, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class DataParallel:
    """Data-parallel training over MPI: give it to ``fit`` and ``evaluate`` as
    ``distribute=`` in every process of a program that ``mpiexec -n N`` starts::

        parallel = DataParallel()
        model.fit(x, y, epochs=10, batch_size=64, distribute=parallel)
        if parallel.is_chief:
            model.save("model.npz")

    Every process calls ``fit`` with the same data and arguments (checked when training
    starts) and ends with the same weights: those one process would have with the same
    ``batch_size``, which is the global batch, split across the processes. Only the chief
    (rank 0) shows progress and runs the callbacks that write files (``chief_only``).

    ``comm`` is an mpi4py communicator, ``MPI.COMM_WORLD`` by default. ``rank`` and
    ``size`` are this process's number and the number of processes; ``is_chief`` is
    ``rank == 0``; ``processes`` the ``(pid, host)`` of every rank. ``communication_seconds``
    adds up the time spent in collective calls (waiting for a slower process included),
    for measuring what communication costs.

    An error in any process inside ``fit`` or ``evaluate`` prints
    ``minidl.distributed: rank R of N failed: ...`` and ends every process (``abort``). A
    process killed outright cannot say anything: ``mpiexec`` then ends the others and names
    the dead one's pid, which the line ``fit`` prints first (with ``verbose``) maps to its
    rank.
    """

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ModuleNotFoundError as error:
            raise missing(error, "mpi") from error
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        # (pid, host) of every rank: a launcher that reports a process's death names its pid
        self.processes: list[tuple[int, str]] = self.comm.allgather(
            (os.getpid(), socket.gethostname()))
        self.communication_seconds = 0.0
        self._buffer: np.ndarray | None = None  # the gradients, then the batch's loss

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size})"

    # ------------------------------------------------------------------ collective calls

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, its time added to ``communication_seconds``."""
        started = time.perf_counter()
        result = call(*args)
        self.communication_seconds += time.perf_counter() - started
        return result

    def sum_across(self, array: np.ndarray) -> np.ndarray:
        """Sum the contiguous ``array`` over every process, in place; return it."""
        self._timed(self.comm.Allreduce, self._mpi.IN_PLACE, array, self._mpi.SUM)
        return array

    def sum(self, value: float) -> float:
        """``value`` summed over every process."""
        return float(self.sum_across(np.array([value], dtype=np.float64))[0])

    def decision_of_chief(self, flag: bool) -> bool:
        """Rank 0's ``flag`` (``stop_training`` at the end of an epoch), in every process."""
        return bool(self._timed(self.comm.bcast, bool(flag), 0))

    def abort(self, error: BaseException) -> NoReturn:
        """Say which process failed and why, then end every process of the job (MPI_Abort):
        the others would otherwise wait for this one forever in their next collective call.
        Files are saved atomically, so none is left half-written."""
        traceback.print_exception(error)
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        print(f"minidl.distributed: rank {self.rank} of {self.size} failed: {reason}",
              file=sys.stderr, flush=True)
        # MPI_Abort ends the job at once, and mpiexec drops what it has not yet passed on
        # of the processes' output: give it a moment to pass on these lines
        time.sleep(_ABORT_DELAY_SECONDS)
        self.comm.Abort(1)
        raise SystemExit(1)  # not reached: Abort ends this process too

    # ------------------------------------------------------------------ what fit calls

    def start(self, model: Any, x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int,
              verbose: int) -> None:
        """Check that every process trains alike, give the model's gradients a buffer with
        room for the loss, and make rank 0's weights, non-trained state, optimizer state,
        random generators and epoch every process's. With ``verbose`` the chief prints
        which pid each rank is."""
        if verbose and self.is_chief:
            ranks = ", ".join(f"rank {rank} = pid {pid} on {host}"
                              for rank, (pid, host) in enumerate(self.processes))
            print(f"minidl.distributed: training on {self.size} processes: {ranks}",
                  file=sys.stderr, flush=True)
        mine = (len(x), x.shape[1:], x.dtype.str, y.shape[1:], y.dtype.str, batch_size,
                epochs, _fingerprint(x, y))
        everyone = self._timed(self.comm.allgather, mine)
        if any(other != mine for other in everyone):
            described = "; ".join(f"rank {rank}: {_describe(work)}"
                                  for rank, work in enumerate(everyone))
            raise ValueError(f"DataParallel: every process must call fit with the same data "
                             f"and arguments (each takes its share of the same batches), but "
                             f"they differ: {described}")
        self._buffer = gradients_with_spare(model.parameters()[0].storage, 1)
        state = None
        if self.is_chief:
            state = {"weights": model.get_weights(), "optimizer": model.optimizer.state_dict(),
                     "generators": {name: generator.bit_generator.state
                                    for name, generator in model._generators().items()},
                     "epoch": model.epoch, "initial_epoch": model._initial_epoch}
        state = self._timed(self.comm.bcast, state, 0)
        if not self.is_chief:
            model.set_weights(state["weights"])
            model.optimizer.load_state_dict(state["optimizer"])
            for name, generator in model._generators().items():
                generator.bit_generator.state = state["generators"][name]
            model.epoch, model._initial_epoch = state["epoch"], state["initial_epoch"]

    def shares(self, model: Any, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None,
               batch_size: int, shuffle: bool, rng: np.random.Generator | None,
               loss_fn: Any) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                               int, float]]:
        """This process's share of each batch one process would take from ``(x, y)`` (the
        same draws of ``rng``), as ``(x, y, weights, rows of the whole batch, the share's
        loss fraction)``; meanwhile every step of the model knows its rows of the batch
        (``Layer.batch_shard``)."""
        steps = model._steps
        try:
            for rows, _ in batches(np.arange(len(x)), batch_size=batch_size, shuffle=shuffle,
                                   rng=rng):
                start, stop = share_bounds(len(rows), self.size, self.rank)
                y_batch = y[rows]
                w_batch = None if weights is None else weights[rows]
                w_share = None if weights is None else w_batch[start:stop]
                fraction = loss_fn.shard_fraction(y_batch[start:stop], y_batch, w_share,
                                                  w_batch)
                shard = BatchShard(start, stop, len(rows), self.sum_across)
                for step in steps:
                    step.batch_shard = shard
                yield x[rows[start:stop]], y_batch[start:stop], w_share, len(rows), fraction
        finally:
            for step in steps:
                step.batch_shard = None

    def sum_gradients(self, loss: float) -> float:
        """The seam of data-parallel training: every gradient, and this share's term of the
        batch's loss, summed over the processes in one Allreduce on one buffer; the
        batch's loss."""
        buffer = self._buffer
        buffer[-1] = loss
        self.sum_across(buffer)
        return float(buffer[-1])

    def gather_rows(self, local: np.ndarray, batch_rows: list[int]) -> np.ndarray:
        """Every process's rows of a pass over batches of ``batch_rows`` rows (``local``:
        this process's share of each, one after the other), in one process's order: batch
        by batch, each batch in row order. One Allgatherv, of bytes."""
        # rows of each process's share of each batch, as share_bounds splits it
        shares = np.array([[stop - start for start, stop in
                            (share_bounds(rows, self.size, rank) for rank in range(self.size))]
                           for rows in batch_rows], dtype=np.int64).reshape(-1, self.size)
        per_process = shares.sum(axis=0)
        local = np.ascontiguousarray(local)
        row_bytes = math.prod(local.shape[1:]) * local.itemsize
        gathered = np.empty((per_process.sum(), *local.shape[1:]), dtype=local.dtype)
        self._timed(self.comm.Allgatherv, local.reshape(-1).view(np.uint8),
                    [gathered.reshape(-1).view(np.uint8), per_process * row_bytes])
        # gathered is process by process; sort it by batch, then process (stable: the rows
        # of one share stay in order)
        process_of_row = np.repeat(np.arange(self.size), per_process)
        batch_of_row = np.concatenate([np.repeat(np.arange(len(batch_rows)), shares[:, rank])
                                       for rank in range(self.size)])
        return gathered[np.argsort(batch_of_row * self.size + process_of_row, kind="stable")]


def _fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """A hash of some evenly spaced rows of ``x`` and ``y``."""
    rows = np.unique(np.linspace(0, len(x) - 1, _FINGERPRINT_ROWS).astype(np.int64))
    digest = hashlib.sha256(np.ascontiguousarray(x[rows]).tobytes())
    digest.update(np.ascontiguousarray(y[rows]).tobytes())
    return digest.hexdigest()[:16]


def _describe(work: tuple[Any, ...]) -> str:
    rows, shape, dtype, _, _, batch_size, epochs, fingerprint = work
    return (f"{rows} rows of shape {tuple(shape)} ({np.dtype(dtype)}), batch_size "
            f"{batch_size}, epochs {epochs}, data {fingerprint}")
