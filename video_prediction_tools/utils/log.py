"""Logging to the console and to a log file next to a step's outputs, and progress bars.

Example::

    from video_prediction_tools.utils.log import setup_logging, progress

    log = setup_logging("ExtractedData/2017/extraction_2017.log")
    for hour in progress(range(744), desc="2017-01"):
        ...
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Iterable, TypeVar

from . import parallel

T = TypeVar("T")
LOGGER_NAME = "ambs"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Configure the ``ambs`` logger: INFO to stderr (prefixed with the MPI rank when there are several) and,
    if ``log_file`` is given, to that file (one file per rank: ``<name>.rank<k>`` for ranks > 0)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    rank, size = parallel.rank(), parallel.size()
    prefix = f"[rank {rank}] " if size > 1 else ""
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(f"{prefix}%(levelname)s: %(message)s"))
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    logger.addHandler(console)
    if log_file is not None:
        log_file = Path(log_file)
        if rank > 0:
            log_file = log_file.with_name(f"{log_file.name}.rank{rank}")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s " + prefix + "%(message)s"))
        logger.addHandler(file_handler)
    logger.propagate = False
    return logger


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """A tqdm progress bar on stderr; in batch jobs (no terminal) it refreshes every 30 s instead of constantly and
    first appears after 30 s (a bar at 0 % in a log file says nothing; a loop shorter than that leaves no line)."""
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    interval = 0.5 if interactive else 30.0
    return tqdm(iterable, desc=desc, total=total, unit=unit, mininterval=interval,
                delay=0.0 if interactive else interval, leave=interactive, dynamic_ncols=True)
