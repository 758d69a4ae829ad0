"""User errors: one clear line and a non-zero exit code, never a traceback.

Library code raises :class:`UserError` for anything the user can fix (a missing file, a bad value, a wrong JSON);
entry points wrap their ``main`` with :func:`run_cli`, which prints ``ERROR: <message>`` on stderr and exits with
status 2. An unwritable output directory (``PermissionError`` and its kin, see :func:`file_system_error`) is treated
the same way, naming the path. Programming errors keep their traceback (they are bugs to report, not input to fix).

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


def file_system_error(err: BaseException) -> UserError | None:
    """The :class:`UserError` for an ``OSError`` the user can fix (unwritable or read-only directory, full disk, a
    file in the way), naming the path and its directory; None for any other exception."""
    if not isinstance(err, OSError) or err.errno not in FILE_SYSTEM_ERRNOS or not err.filename:
        return None
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
    except (UserError, OSError) as err:
        user_error = err if isinstance(err, UserError) else file_system_error(err)
        if user_error is None:
            raise
        if not user_error.quiet:
            print(f"ERROR: {user_error}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr, flush=True)
        return 130
