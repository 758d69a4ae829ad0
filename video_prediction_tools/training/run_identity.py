"""What defines a training run, so that a rerun into an existing run directory resumes only the SAME run.

``run_identity.json`` in the run directory records:

* ``model``, ``dataset``, ``seed``,
* ``data_split``: the data split (as given),
* ``hparams``: the resolved hyper-parameters (defaults included),
* ``normalization_months``: which months the normalisation statistics come from (``train`` or ``all``),
* ``input_fingerprint``: sha256 over the name, size and content digest (SHA-256) of every step-2 month file the
  training and validation splits read, plus the content of the dataset's JSON descriptions (``statistics.json``,
  ``dataset_info.json``) where they exist. Content, not times, defines it: a copied or touched file with the same
  bytes is the same input, a rewritten one with other bytes is not. The file digests are kept in
  ``input_files`` (with size, times and inode, as :mod:`..utils.provenance` records them) and recomputed only for
  files whose size, times or inode changed, so a resume reads no data file that was not touched.

A rerun whose identity differs in any of these is refused with one line naming what differs: continue under a new
``exp_id``/``--output_dir``, or pass ``--start_over`` to delete the run's training outputs and train again.
Hyper-parameters are part of the identity on purpose: resuming with other values would make ``model_hparams.json``
misstate how the weights were trained. Needs no TensorFlow.

Example::

    fingerprint, file_digests = input_fingerprint(files, json_files, recorded_file_digests(run_dir))
    identity = run_identity("convLSTM", "era5", 1234, split, hparams, fingerprint, file_digests)
    check_same_run(run_dir, identity)        # UserError if run_dir holds another run
    write_json(run_dir / IDENTITY_FILE, identity)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from ..utils import provenance
from ..utils.errors import UserError
from ..utils.io import read_json
from . import checkpoints

IDENTITY_FILE = "run_identity.json"
#: everything a training run writes into its run directory (deleted by ``--start_over``); checkpoints and
#: temporaries are matched by name
RUN_OUTPUTS = (IDENTITY_FILE, checkpoints.OPTIONS_FILE, checkpoints.HPARAMS_FILE, checkpoints.DATASPLIT_FILE,
               checkpoints.NORMALIZATION_FILE, checkpoints.BEST_FILE, "results.json", "train_losses.csv",
               "val_losses.csv", "losses.json", "plot_train.png", "train.log", "logs")
#: what each identity key is, in refusal messages
_DESCRIPTIONS = {"model": "model", "dataset": "dataset", "seed": "--seed", "data_split": "data split",
                 "hparams": "hyper-parameters", "normalization_months": "--normalization_months",
                 "input_fingerprint": "input data (step-2 files or statistics)"}
#: the value of a key that identities written before it existed stand for
_DEFAULTS = {"normalization_months": "train"}


def recorded_file_digests(run_dir: Path) -> dict[str, Any]:
    """The file digests recorded in ``run_dir``'s identity (empty for a new run or an unreadable record)."""
    path = run_dir / IDENTITY_FILE
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    files = recorded.get("input_files") if isinstance(recorded, dict) else None
    return files if isinstance(files, dict) else {}


def input_fingerprint(data_files: Iterable[str | os.PathLike], description_files: Iterable[str | os.PathLike],
                      recorded: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(fingerprint, file digests)``: sha256 hex digest over ``(name, size, SHA-256)`` of each data file (sorted by
    name) and the bytes of each existing description file; the per-file digests (:func:`provenance.fingerprint`,
    reused from ``recorded`` for untouched files)."""
    recorded = recorded or {}
    digest = hashlib.sha256()
    files = {}
    for path in sorted({Path(p) for p in data_files}, key=lambda p: p.name):
        files[path.name] = provenance.fingerprint(path, recorded.get(path.name))
        digest.update(f"{path.name}\0{files[path.name]['size']}\0{files[path.name]['sha256']}\n".encode())
    for path in sorted({Path(p) for p in description_files}):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\n")
    return digest.hexdigest(), files


def run_identity(model: str, dataset: str, seed: int, data_split: dict[str, Any], hparams: dict[str, Any],
                 fingerprint: str, file_digests: dict[str, Any], normalization_months: str = "train") -> dict[str, Any]:
    """The identity record (``input_files`` caches the digests; it is not compared)."""
    return {"model": model, "dataset": dataset, "seed": int(seed), "data_split": data_split, "hparams": hparams,
            "normalization_months": normalization_months, "input_fingerprint": fingerprint,
            "input_files": file_digests}


def _differences(recorded: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    found = []
    for key, description in _DESCRIPTIONS.items():
        if key == "hparams" and isinstance(recorded.get(key), dict):
            keys = sorted(k for k in {*recorded[key], *identity[key]}
                          if recorded[key].get(k) != identity[key].get(k))
            if keys:
                found.append(description + " (" + ", ".join(
                    f"{k}: {recorded[key].get(k)!r} → {identity[key].get(k)!r}" for k in keys) + ")")
        elif recorded.get(key, _DEFAULTS.get(key)) != identity[key]:
            found.append(description)
    return found


def check_same_run(run_dir: Path, identity: dict[str, Any]) -> None:
    """Raise a :class:`UserError` when ``run_dir`` holds another run than ``identity``, or a run whose identity
    is unknown but that has checkpoints. A directory without either is a new run."""
    path = run_dir / IDENTITY_FILE
    advice = (f"train under a new exp_id / --output_dir, or pass --start_over to delete the training outputs of "
              f"{run_dir} and train again")
    if not path.is_file():
        if checkpoints.complete_checkpoints(run_dir):
            raise UserError(f"--output_dir {run_dir} holds checkpoints but no {IDENTITY_FILE}, so resuming it "
                            f"cannot be checked to be the same run: {advice}")
        return
    differences = _differences(read_json(path, what="identity of the existing run"), identity)
    if differences:
        raise UserError(f"--output_dir {run_dir} holds another run: its {'; '.join(differences)} differ(s) from "
                        f"this command's; {advice}")


def clear_run_outputs(run_dir: Path, keep: Iterable[str | os.PathLike] = ()) -> None:
    """Delete the training outputs of ``run_dir`` (:data:`RUN_OUTPUTS`, checkpoints, leftover temporaries,
    worker weights); files in ``keep`` (this command's own input files) and any other file stay."""
    keep = {Path(p).resolve() for p in keep}
    for entry in run_dir.iterdir() if run_dir.is_dir() else []:
        ours = (entry.name in RUN_OUTPUTS or checkpoints.checkpoint_step(entry) is not None
                or (entry.name.startswith(".") and ".tmp" in entry.name)
                or (entry.name.startswith("worker_") and entry.name.endswith(".weights.h5")))
        if not ours or entry.resolve() in keep:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
