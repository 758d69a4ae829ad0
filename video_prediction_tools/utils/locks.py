"""One run at a time per output directory: an exclusive ``fcntl.flock`` on ``<directory>/.ambs.lock``.

The kernel releases the lock when the holding process ends, however it ends (``kill -9`` included), so a lock
left by a killed run never blocks the next one; the file itself stays and is only a place to lock (and to read
who holds it: process id, host and start time, written by the holder). A second run into a directory in use is a
:class:`UserError` naming the holder. The lock is held until the process exits (a step is one process), or until
:func:`unlock_directory` (a step called as a function, as tests do).

Example::

    from video_prediction_tools.utils.locks import lock_directory

    lock_directory("Results/<EXPNAME>/convLSTM/run1", "postprocessing")  # the directory is created if needed
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from .errors import UserError

LOCK_FILE = ".ambs.lock"
#: locks held by this process, by resolved directory: taking one twice is a no-op, and keeping the open file
#: referenced keeps the lock until the process exits
_HELD: dict[Path, "DirectoryLock"] = {}


class DirectoryLock:
    """The exclusive lock of one directory held by this process (see the module docstring)."""

    def __init__(self, directory: Path, stream):
        self.directory, self._stream = directory, stream

    def holds_file(self) -> bool:
        """Whether the locked file is still the directory's lock file (not deleted with its directory)."""
        try:
            return os.stat(self.directory / LOCK_FILE).st_ino == os.fstat(self._stream.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Give the lock up (the lock file stays: removing it would let two runs lock two different files)."""
        _HELD.pop(self.directory, None)
        self._stream.close()


def unlock_directory(directory: str | os.PathLike) -> None:
    """Give up this process's lock of ``directory``, if it holds one (a step run as a function, not a process)."""
    held = _HELD.get(Path(directory).resolve())
    if held is not None:
        held.release()


def _holder(stream) -> str:
    """Who holds the lock, as its holder wrote it (empty for a few microseconds after it took it)."""
    stream.seek(0)
    return stream.read().strip() or "another process (it is starting)"


def lock_directory(directory: str | os.PathLike, what: str) -> DirectoryLock:
    """Lock ``directory`` (created if needed) for this process's ``what`` (e.g. "training"); a directory locked by
    another process is a :class:`UserError` naming the holder."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if directory in _HELD:
        if _HELD[directory].holds_file():
            return _HELD[directory]
        _HELD[directory].release()  # the directory was deleted and made again: lock its new file
    stream = open(directory / LOCK_FILE, "a+")
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(stream)
        stream.close()
        raise UserError(f"{directory} is in use by {holder}: wait until it ends, or write elsewhere") from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"{what} (process {os.getpid()} on host {socket.gethostname()}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')})\n")
    stream.flush()
    _HELD[directory] = DirectoryLock(directory, stream)
    return _HELD[directory]
