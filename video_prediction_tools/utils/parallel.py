"""Distribute units of work (months) over MPI ranks, with the same result for any number of ranks.

A job runs as one process (``python script.py``) or under MPI (``mpiexec -n 4 python script.py`` or ``srun``).
Units are dealt round-robin over the ranks; every rank catches the failure of its own units, and all ranks then
exchange their outcomes, so a failing unit makes every rank exit non-zero with the reason instead of leaving the
others waiting forever.

Example::

    from video_prediction_tools.utils.parallel import run_units

    def process(month):            # returns something JSON-like (or None)
        return {"month": month, "hours": 744}

    results = run_units(["01", "02", "03"], process, label=lambda m: f"month {m}")
    # every rank gets [{"month": "01", ...}, {"month": "02", ...}, {"month": "03", ...}]
"""
from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from .errors import UserError, file_system_error

T = TypeVar("T")
log = logging.getLogger("ambs")
#: ``extra`` for log records meant for the log file only (the console shows the single summary line instead)
FILE_ONLY = {"file_only": True}

#: environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx, SLURM srun)
_MPI_LAUNCH_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class _SerialCommunicator:
    """Stand-in for ``MPI.COMM_WORLD`` when the job runs as a single process."""

    rank = 0
    size = 1

    def allgather(self, value):
        return [value]

    def bcast(self, value, root=0):
        return value

    def Barrier(self):
        pass


def launched_under_mpi() -> bool:
    """True when an MPI launcher started this process (so importing mpi4py is needed and safe)."""
    if any(name in os.environ for name in _MPI_LAUNCH_VARIABLES):
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ


_communicator = None


def communicator():
    """``MPI.COMM_WORLD`` under an MPI launcher, otherwise a serial stand-in (mpi4py is not even imported)."""
    global _communicator
    if _communicator is None:
        if launched_under_mpi():
            try:
                from mpi4py import MPI
            except ImportError as err:  # pragma: no cover - depends on the installation
                raise UserError(f"started under MPI but mpi4py cannot be imported ({err}); install mpi4py and mpich")
            _communicator = MPI.COMM_WORLD
        else:
            _communicator = _SerialCommunicator()
    return _communicator


def rank() -> int:
    return communicator().rank


def size() -> int:
    return communicator().size


@dataclass
class _Outcome:
    index: int
    ok: bool
    value: Any = None
    message: str = ""


def run_units(units: Sequence[T], work: Callable[[T], Any], label: Callable[[T], str] = str) -> list[Any]:
    """Run ``work(unit)`` for every unit, spread round-robin over the MPI ranks.

    Returns the list of results in the order of ``units`` on every rank. If any unit fails, every rank raises
    :class:`UserError` naming the failed units (rank 0 prints it; the others stay quiet), after all ranks have
    finished their own units, so no rank is left waiting.

    ``work`` must return picklable, small values (results travel between ranks).
    """
    comm = communicator()
    outcomes: list[_Outcome] = []
    for index in range(comm.rank, len(units), comm.size):
        unit = units[index]
        try:
            outcomes.append(_Outcome(index, True, work(unit)))
        except Exception as err:
            user_error = err if isinstance(err, UserError) else file_system_error(err)
            if user_error is not None:
                log.error("%s: %s", label(unit), user_error, extra=FILE_ONLY)
                outcomes.append(_Outcome(index, False, message=f"{label(unit)}: {user_error}"))
                continue
            # a bug or an unexpected library error: keep the traceback in the log
            log.error("%s failed:\n%s", label(unit), traceback.format_exc(), extra=FILE_ONLY)
            outcomes.append(_Outcome(index, False, message=f"{label(unit)}: {type(err).__name__}: {err}"))
    gathered = comm.allgather([(o.index, o.ok, o.value, o.message) for o in outcomes])
    results: list[Any] = [None] * len(units)
    failures = []
    for rank_outcomes in gathered:
        for index, ok, value, message in rank_outcomes:
            if ok:
                results[index] = value
            else:
                failures.append((index, message))
    if failures:
        failures.sort()
        text = "; ".join(message for _, message in failures)
        raise UserError(f"{len(failures)} of {len(units)} unit(s) failed: {text}", quiet=comm.rank != 0)
    return results


def on_root(function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0 only and broadcast its result (or its failure) to every rank."""
    comm = communicator()
    outcome = None
    if comm.rank == 0:
        try:
            outcome = (True, function(), "")
        except (UserError, OSError) as err:
            user_error = err if isinstance(err, UserError) else file_system_error(err)
            if user_error is None:
                raise
            outcome = (False, None, str(user_error))
    ok, value, message = comm.bcast(outcome, root=0)
    if not ok:
        raise UserError(message, quiet=comm.rank != 0)
    return value
