"""Provenance of a unit of output (a month, a climatology file): what it was made from, and whether it is still valid.

Every step writes, after the outputs of a unit are complete, a small JSON record next to them::

    {"format": "ambs-provenance-1", "unit": "2017-01",
     "options": {...the options that change the content, e.g. the variables and the domain...},
     "inputs": {"2017/01/era5_2017_01.nc": {"size": 1234, "mtime_ns": 1700000000000000000, "sha256": "ab12..."}}}

Input paths are relative to the step's source directory (a moved tree stays valid). The rule every step follows:

* a unit is skipped only when its record exists, its options equal the current ones, it lists exactly the current
  input files and each input still has the recorded content, and its required outputs exist;
* otherwise (no record: output of an older AMBS or of a run killed before the record was written; an input added,
  removed or changed; other options) the unit is redone, and the reason is logged;
* the record is deleted before a unit's outputs are rewritten and written (atomically) after they are complete, so
  a run killed at any point leaves no record that vouches for half-written outputs.

The fingerprint of an input is its size and SHA-256 digest. The digest is computed once and recorded with the file's
size, mtime_ns, ctime_ns and inode; a later check recomputes it only when one of these changed (a touched or copied
file is re-read, an untouched one is not), so a skip costs a ``stat`` per input file.

Example::

    from video_prediction_tools.utils import provenance

    record = provenance.record_path(output)    # <month dir>/era5_2017_01.provenance.json
    check = provenance.check(record, grib_files, base=source_dir, options={"variables": ["2t"]}, outputs=[output])
    if check.skip("2017-01", overwrite):       # logs "skipped", or a warning naming what changed
        return
    provenance.invalidate(record)              # before rewriting the outputs
    ...                                         # write the outputs
    provenance.write(record, "2017-01", check.fingerprints, {"variables": ["2t"]})

Records hold times and inode numbers, so two trees with identical outputs have different records: compare outputs
without their ``*.provenance.json``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .io import write_json

log = logging.getLogger("ambs")

FORMAT = "ambs-provenance-1"
SUFFIX = ".provenance.json"
#: keys of :func:`os.stat` whose change makes a recorded digest untrustworthy
_STAT_KEYS = ("size", "mtime_ns", "ctime_ns", "inode")
_CHUNK_BYTES = 1 << 20


def record_path(output: str | os.PathLike) -> Path:
    """The record of the unit whose main output is ``output``: ``<output without its suffix>.provenance.json``."""
    output = Path(output)
    return output.with_name(output.stem + SUFFIX)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_entry(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns, "inode": info.st_ino}


def fingerprint(path: Path, recorded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"size", "mtime_ns", "ctime_ns", "inode", "sha256"}`` of a file; the digest of ``recorded`` is reused when
    its size, times and inode equal the file's (the file was not touched since)."""
    entry: dict[str, Any] = _stat_entry(path)
    if recorded and all(recorded.get(key) == entry[key] for key in _STAT_KEYS) and "sha256" in recorded:
        entry["sha256"] = recorded["sha256"]
    else:
        entry["sha256"] = sha256_of(path)
    return entry


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


@dataclass
class Check:
    """Outcome of :func:`check`: ``reason`` to redo the unit (None: it is up to date) and the current
    fingerprints of its inputs (``{relative path: fingerprint}``), to pass to :func:`write` after redoing it."""

    reason: str | None
    fingerprints: dict[str, dict[str, Any]]
    #: neither a record nor any output of the unit exists (nothing to redo: it is made for the first time)
    first_time: bool = False

    def skip(self, label: str, overwrite: bool) -> bool:
        """Whether to skip the unit named ``label``; logs why it is skipped or redone."""
        if self.reason is None and not overwrite:
            log.info("%s: inputs and options unchanged since it was made; skipped (use --overwrite to redo)", label)
            return True
        if self.reason is not None and not self.first_time and not overwrite:
            log.warning("%s: redone: %s", label, self.reason)
        return False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("inputs"), dict):
        return None
    return record


def _describe_change(name: str, old: Any, new: Any) -> str:
    return f"option {name} was {json.dumps(old)}, now {json.dumps(new)}"


def check(record: str | os.PathLike, inputs: Iterable[str | os.PathLike], base: str | os.PathLike,
          options: Mapping[str, Any], outputs: Iterable[str | os.PathLike] = (),
          may_vanish: Iterable[str | os.PathLike] = ()) -> Check:
    """Compare the unit's record with its current ``inputs`` (files under ``base``), ``options`` (JSON-like) and
    ``outputs`` (files that must exist). Returns the first reason to redo it (one short phrase) or None.

    A recorded input listed in ``may_vanish`` may be absent now (a step that deletes its input once converted);
    the remaining inputs still have to match."""
    record, base = Path(record), Path(base)
    vanishing = {_relative(Path(path), base) for path in may_vanish}
    previous = _read(record)
    recorded_inputs = previous["inputs"] if previous else {}
    fingerprints = {}
    for path in map(Path, inputs):
        name = _relative(path, base)
        fingerprints[name] = fingerprint(path, recorded_inputs.get(name))
    outputs = [Path(path) for path in outputs]
    missing_outputs = [str(path) for path in outputs if not path.exists()]
    if previous is None:
        reason = ("no provenance record (made by an older AMBS or by a run that did not finish)"
                  if not record.exists() else f"unreadable provenance record {record.name}")
        return Check(reason, fingerprints, first_time=not record.exists() and len(missing_outputs) == len(outputs))
    if missing_outputs:
        return Check(f"output {missing_outputs[0]} is missing", fingerprints)
    old_options = previous.get("options", {})
    for name in sorted(set(old_options) | set(options)):
        if old_options.get(name) != _json_like(options.get(name)):
            return Check(_describe_change(name, old_options.get(name), options.get(name)), fingerprints)
    added = sorted(set(fingerprints) - set(recorded_inputs))
    if added:
        return Check(f"new input file {added[0]}", fingerprints)
    removed = sorted(set(recorded_inputs) - set(fingerprints) - vanishing)
    if removed:
        return Check(f"input file {removed[0]} is gone", fingerprints)
    for name, entry in fingerprints.items():
        old = recorded_inputs[name]
        if (old.get("size"), old.get("sha256")) != (entry["size"], entry["sha256"]):
            return Check(f"input file {name} changed", fingerprints)
    return Check(None, fingerprints)


def _json_like(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparison with a recorded option."""
    return json.loads(json.dumps(value))


def invalidate(record: str | os.PathLike) -> None:
    """Delete a unit's record before its outputs are rewritten (a killed run then leaves no valid record)."""
    Path(record).unlink(missing_ok=True)


def write(record: str | os.PathLike, unit: str, fingerprints: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Write the record of a finished unit atomically (call after all its outputs are complete)."""
    # one line: records sit next to every unit, so they are kept small
    write_json(record, {"format": FORMAT, "unit": unit, "options": _json_like(dict(options)),
                        "inputs": dict(fingerprints)}, indent=None)
