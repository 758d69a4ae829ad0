"""User errors: one clear line and a non-zero exit code, never a traceback.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad value, a wrong JSON);
entry points wrap their ``main`` with :func:`run_cli`, which prints ``ERROR: <message>`` on stderr and exits with
status 2. An unwritable output directory (``PermissionError`` and its kin, see :func:`file_system_error`) is treated
the same way, naming the path, and so is a full disk: an ``OSError`` ENOSPC/EDQUOT, or any error (a netCDF/HDF5
"HDF error") raised while the file system of a directory written last (:func:`note_output_directory`) has no
space left (:func:`disk_full_error`). Programming errors keep their traceback (they are bugs to report, not input to fix).

Example::

    from video_prediction_tools.utils.errors import UserError, run_cli

    def main(argv=None):
        raise UserError("--source_dir /nope: directory does not exist")

    if __name__ == "__main__":
        run_cli(main)
"""
from __future__ import annotations

import errno
import gc
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """An error caused by the user's input; its message is shown as a single line."""

    def __init__(self, message: str, quiet: bool = False):
        super().__init__(" ".join(str(message).split("\n")))
        #: set on MPI ranks other than 0 so that a failure is reported once, not once per rank
        self.quiet = quiet


#: errors of the file system that the user fixes (permissions, a read-only or full disk, a file where a directory
#: is expected), as opposed to bugs
FILE_SYSTEM_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                      errno.ENOSPC, errno.EDQUOT}


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
#: below this many free bytes a file system counts as full: a write that failed there failed for want of space
FULL_BELOW_BYTES = 1 << 20
#: the directories written last (by ``io.atomic_path``), newest last: where a full disk is looked for
_OUTPUT_DIRECTORIES: dict[Path, None] = {}


def note_output_directory(directory: str | os.PathLike) -> None:
    """Remember ``directory`` as written to (a few are kept), for :func:`disk_full_error`."""
    directory = Path(directory)
    _OUTPUT_DIRECTORIES.pop(directory, None)
    _OUTPUT_DIRECTORIES[directory] = None
    while len(_OUTPUT_DIRECTORIES) > 8:
        del _OUTPUT_DIRECTORIES[next(iter(_OUTPUT_DIRECTORIES))]


def _is_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < FULL_BELOW_BYTES
    except OSError:
        return False


def disk_full_error(err: BaseException, directories=None) -> UserError | None:
    """The :class:`UserError` "disk full" for ``err``, an ENOSPC/EDQUOT ``OSError`` or any error raised while one
    of ``directories`` (default: those of :func:`note_output_directory`, newest first) is on a full file system;
    None when no disk is full."""
    if isinstance(err, UserError):
        return None
    directories = list(directories or reversed(_OUTPUT_DIRECTORIES))
    full = [directory for directory in directories if _is_full(directory)]
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        full = [Path(os.fsdecode(err.filename)).parent] if err.filename else full or directories[:1] or [None]
    if not full:
        return None
    where = "an output file system" if full[0] is None else f"the file system of {full[0]}"
    return UserError(f"no space left on {where}: the disk is full ({type(err).__name__}: "
                     f"{str(err).splitlines()[0] if str(err) else err!r}); nothing half-written was kept: free "
                     "space there and rerun the same command, it resumes where it stopped")


def file_system_error(err: BaseException) -> UserError | None:
    """The :class:`UserError` for an ``OSError`` the user can fix (unwritable or read-only directory, full disk, a
    file in the way), naming the path and its directory; None for any other exception."""
    if not isinstance(err, OSError) or err.errno not in FILE_SYSTEM_ERRNOS or not err.filename:
        return None
    if err.errno in DISK_FULL_ERRNOS:
        return disk_full_error(err)
    path = Path(os.fsdecode(err.filename))
    return UserError(f"cannot create or write {path}: {err.strerror} (check that the directory {path.parent} "
                     "exists, is a directory and is writable)")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)`` and turn its outcome into an exit status.

    :class:`UserError`, or an ``OSError`` of :func:`file_system_error` (e.g. an unwritable output directory) →
    ``ERROR: <message>`` on stderr and exit status 2; ``KeyboardInterrupt`` → exit 130 with a short note. Any other
    exception propagates (a traceback means a bug).
    The program's objects are frozen before it exits (:func:`gc.freeze`): the interpreter's last garbage
    collection would otherwise walk every object TensorFlow made, about a second of waiting for nothing.
    """
    status = _exit_status(main, argv)
    gc.freeze()
    sys.exit(status)


def _exit_status(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None) -> int:
    """The exit status of ``main(argv)`` (see :func:`run_cli`), its user error reported."""
    try:
        return int(main(argv) or 0)
    except Exception as err:  # noqa: BLE001 - a user error, a file system the user fixes, or else re-raised
        user_error = err if isinstance(err, UserError) else file_system_error(err) or disk_full_error(err)
        if user_error is None:
            raise
        if not user_error.quiet:
            print(f"ERROR: {user_error}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr, flush=True)
        return 130
