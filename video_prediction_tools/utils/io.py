"""Atomic file writes and JSON helpers shared by every step.

Every output is written to a temporary name in the destination directory and renamed into place, so a run killed
at any point never leaves a file that a rerun would trust; a write that fails on a full disk (ENOSPC, or an HDF5 /
netCDF error while the directory's file system is full) becomes one "disk full" :class:`UserError` naming it, its
temporary file removed.

Example::

    from video_prediction_tools.utils.io import atomic_path, write_json, read_json

    with atomic_path("out/month.nc") as tmp:      # tmp is "out/.month.nc.tmp-<pid>-<random>"
        dataset.to_netcdf(tmp)                     # renamed to out/month.nc only if no exception
    write_json("out/stat_01.json", {"2t": {"min": 250.0}})
    stats = read_json("out/stat_01.json", what="monthly statistics")
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError, disk_full_error, note_output_directory

PathLike = str | os.PathLike


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The parent directory is created if needed. On an exception the temporary file is removed and ``path`` is left
    untouched (an older complete version, if any, survives).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    note_output_directory(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); outputs get the usual permissions, as `open` would give them
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        full = _disk_full(err, path.parent)  # before the temporary file is removed: then the disk is not full
        tmp.unlink(missing_ok=True)
        if full is not None:
            raise full from None
        raise


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; rename it to ``path`` when the block succeeds.

    An existing ``path`` is replaced only after the new content is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    note_output_directory(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as err:
        full = _disk_full(err, path.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise full from None
        raise


def _disk_full(err: BaseException, directory: Path) -> UserError | None:
    """The "disk full" :class:`UserError` of a write into ``directory`` that failed with ``err`` (an ENOSPC, or an
    HDF5/netCDF error on a full file system), None for any other failure."""
    return disk_full_error(err, [directory]) if isinstance(err, Exception) else None


def check_writable_directory(path: PathLike, what: str) -> None:
    """Refuse, before anything is created, an output directory ``path`` (existing or to be created) whose nearest
    existing ancestor is not a directory or is not writable; ``what`` names it in the message (e.g. "--target_dir")."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: directory {existing} is not writable")


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (keys kept in insertion order)."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file; a missing file or a syntax error becomes a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}")


def remove_stale_temporaries(directory: PathLike) -> None:
    """Delete leftovers of :func:`atomic_path` / :func:`atomic_directory` from a killed run."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for entry in directory.glob(".*.tmp-*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
