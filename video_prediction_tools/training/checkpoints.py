"""Checkpoints of a training run: atomic save, resume, best-model pruning, and loading a trained model.

A checkpoint is the directory ``<run_dir>/checkpoint_<step>/`` (``step`` = number of optimisation steps done),
written with :func:`utils.io.atomic_directory`, so it is either complete or absent; a run killed while writing one
leaves only a hidden temporary directory that the next run deletes. It holds:

* ``model.weights.h5``: the Keras weights (all that postprocessing needs),
* ``trainer_state.h5``: every model variable (random-generator states included) and every optimiser variable
  (Adam moments, iteration counters), one dataset per variable in creation order,
* ``trainer_state.json``: step, data position (epoch, batch index within the epoch), the loss history up to this
  step, the Python/NumPy random states and the frame shape ``[H, W, C]`` the model was built for.

The run directory also holds ``best_checkpoint.json`` = ``{"step": N, "val_loss": x}`` (lowest validation loss).

Example::

    from video_prediction_tools.training.checkpoints import load_trained_model

    model, run = load_trained_model("Models/<EXPNAME>/convLSTM/<exp_id>")   # best checkpoint, else newest
    forecast = model.forecast(images)                                        # [B, F, H, W, C] normalised
    physical = run.normalization.denormalize(forecast.numpy())
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from ..datasets.normalization import Normalization
from ..models.registry import build_model, sequence_frames
from ..utils.errors import UserError
from ..utils.io import atomic_directory, read_json, write_json

CHECKPOINT_PREFIX = "checkpoint_"
WEIGHTS_FILE = "model.weights.h5"
VARIABLES_FILE = "trainer_state.h5"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_checkpoint.json"
#: files of the run directory written by ``main_train_models`` (read back by postprocessing)
OPTIONS_FILE = "options.json"
HPARAMS_FILE = "model_hparams.json"
DATASPLIT_FILE = "data_split.json"
NORMALIZATION_FILE = "normalization.json"

_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")

log = logging.getLogger("ambs")


@dataclass
class TrainerState:
    """Everything besides variables that a resumed run needs to continue exactly where the saved one was."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0
    frame_shape: list[int] = field(default_factory=list)
    #: one dict per step: ``step`` (after the update), ``epoch``, ``seconds``, ``loss`` (tracked) and components
    train_history: list[dict[str, Any]] = field(default_factory=list)
    #: one dict per validation: ``step``, ``val_loss`` (MSE of the target channels, physical units)
    val_history: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"python": ..., "numpy": ...}`` generator states (JSON lists)
    rng: dict[str, Any] = field(default_factory=dict)
    #: first step of each training session (process): its time includes tracing the training step
    sessions: list[int] = field(default_factory=list)
    #: the steps the run is planned to train (0: unknown, a checkpoint written before it was recorded)
    total_steps: int = 0


@dataclass
class TrainedRun:
    """What :func:`read_trained_run` found: everything about a trained run but its model."""

    run_dir: Path
    checkpoint_dir: Path
    step: int
    hparams: dict[str, Any]
    options: dict[str, Any]
    model_name: str
    dataset: str
    input_dir: str
    normalization: Normalization
    datasplit: dict[str, Any]
    #: ``(H, W, C)`` the model was built for
    frame_shape: tuple[int, int, int]

    @property
    def context_frames(self) -> int:
        return sequence_frames(self.hparams)[0]

    @property
    def forecast_frames(self) -> int:
        return sequence_frames(self.hparams)[1]


# --- locating checkpoints ------------------------------------------------------------------------------------
def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a ``checkpoint_<step>`` directory name, None for any other name."""
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | os.PathLike) -> bool:
    """THE completeness rule of a checkpoint: a ``checkpoint_<step>`` directory holding the weights, the trainer
    variables and the trainer state. Needs no TensorFlow (configuration tools list checkpoints with it)."""
    path = Path(path)
    return checkpoint_step(path) is not None and all(
        (path / name).is_file() for name in (WEIGHTS_FILE, VARIABLES_FILE, STATE_FILE))


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoint directories of ``run_dir``, oldest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [entry for entry in run_dir.iterdir() if entry.is_dir() and is_complete(entry)]
    return sorted(found, key=checkpoint_step)


def newest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    checkpoints = complete_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A ``checkpoint_<step>`` directory (must be complete) or a run directory (→ the best checkpoint named by
    its ``best_checkpoint.json``, else its newest); anything else is a :class:`UserError`. A best checkpoint that
    is missing or incomplete is an error too: another checkpoint is only ever used when asked for explicitly."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist")
    if checkpoint_step(path) is not None:
        if not is_complete(path):
            raise UserError(f"checkpoint {path} is incomplete: expected {WEIGHTS_FILE}, {VARIABLES_FILE} and "
                            f"{STATE_FILE} in it")
        return path
    best_file = path / BEST_FILE
    if best_file.is_file():
        best = checkpoint_path(path, int(read_json(best_file, what="best-checkpoint pointer")["step"]))
        if not is_complete(best):
            complete = ", ".join(entry.name for entry in complete_checkpoints(path)) or "none"
            raise UserError(f"best checkpoint {best} named by {best_file} is missing or incomplete (complete "
                            f"checkpoints: {complete}); to use another one, pass it explicitly: --checkpoint "
                            f"{path}/{CHECKPOINT_PREFIX}<step>")
        return best
    newest = newest_checkpoint(path)
    if newest is None:
        raise UserError(f"{path}: no complete {CHECKPOINT_PREFIX}<step> directory (training not run or not "
                        f"finished?)")
    return newest


# --- saving and restoring ------------------------------------------------------------------------------------
def _write_variables(group: h5py.Group, variables: Iterable) -> None:
    for index, variable in enumerate(variables):
        dataset = group.create_dataset(f"{index:05d}", data=np.asarray(variable.numpy()))
        dataset.attrs["name"] = str(getattr(variable, "path", variable.name))


def _read_variables(group: h5py.Group, variables: list, where: str) -> None:
    if len(group) != len(variables):
        raise UserError(f"{where}: holds {len(group)} variables, the model being trained has {len(variables)} "
                        f"(a checkpoint of another model or other hyper-parameters?)")
    for index, variable in enumerate(variables):
        value = group[f"{index:05d}"][()]
        if tuple(value.shape) != tuple(variable.shape):
            raise UserError(f"{where}: variable {group[f'{index:05d}'].attrs['name']} has shape {value.shape}, "
                            f"the model expects {tuple(variable.shape)}")
        variable.assign(value)


def save_checkpoint(run_dir: str | os.PathLike, state: TrainerState, model, optimizers: dict[str, Any]) -> Path:
    """Write ``checkpoint_<state.step>/`` atomically; ``optimizers`` maps phase name → built Keras optimiser.
    Weights that are not all finite are a :class:`UserError` and nothing is written."""
    target = checkpoint_path(run_dir, state.step)
    for variable in model.variables:
        if not np.all(np.isfinite(np.asarray(variable.numpy(), np.float64))):
            raise UserError(f"training diverged by step {state.step}: variable {variable.path} is not finite; no "
                            f"checkpoint written: lower lr or check the input data, then train again")
    with atomic_directory(target) as tmp:
        model.save_weights(tmp / WEIGHTS_FILE)
        with h5py.File(tmp / VARIABLES_FILE, "w") as store:
            _write_variables(store.create_group("model"), model.variables)
            for name, optimizer in optimizers.items():
                _write_variables(store.create_group(f"optimizer/{name}"), optimizer.variables)
        write_json(tmp / STATE_FILE, asdict(state))
    return target


def restore_checkpoint(checkpoint_dir: Path, model, optimizers: dict[str, Any]) -> TrainerState:
    """Load weights, optimiser and trainer state from a complete checkpoint into a built model and optimisers."""
    variables_file = checkpoint_dir / VARIABLES_FILE
    with h5py.File(variables_file, "r") as store:
        _read_variables(store["model"], list(model.variables), f"{variables_file} (model)")
        for name, optimizer in optimizers.items():
            if f"optimizer/{name}" not in store:
                raise UserError(f"{variables_file}: no optimiser state for phase {name!r} (another model?)")
            _read_variables(store[f"optimizer/{name}"], list(optimizer.variables),
                            f"{variables_file} (optimizer {name})")
    return read_state(checkpoint_dir)


def read_state(checkpoint_dir: Path) -> TrainerState:
    return TrainerState(**read_json(checkpoint_dir / STATE_FILE, what="trainer state"))


def training_progress(run_dir: str | os.PathLike) -> tuple[int, int] | None:
    """``(step reached, steps planned)`` of a training run stopped before its planned end (its newest complete
    checkpoint's state); None for a finished run, one without checkpoints or one whose plan was not recorded."""
    newest = newest_checkpoint(run_dir)
    if newest is None:
        return None
    state = read_state(newest)
    return (state.step, state.total_steps) if 0 < state.total_steps and state.step < state.total_steps else None


# --- best model ----------------------------------------------------------------------------------------------
def best_step(val_history: list[dict[str, Any]], steps: Iterable[int]) -> tuple[int, float] | None:
    """The step among ``steps`` with the lowest finite validation loss recorded at that step (first one on
    ties); a step whose validation loss is not finite is never the best."""
    losses = {entry["step"]: entry["val_loss"] for entry in val_history if np.isfinite(entry["val_loss"])}
    candidates = [(losses[step], step) for step in sorted(steps) if step in losses]
    if not candidates:
        return None
    loss, step = min(candidates)
    return step, loss


def write_best_pointer(run_dir: str | os.PathLike, step: int, val_loss: float) -> None:
    write_json(Path(run_dir) / BEST_FILE, {"step": int(step), "val_loss": float(val_loss)})


def prune_checkpoints(run_dir: str | os.PathLike, keep: set[int]) -> list[int]:
    """Delete the complete checkpoints whose step is not in ``keep``; return the deleted steps.

    Each directory is first renamed to a hidden temporary name, so a run killed while deleting never leaves a
    half-deleted ``checkpoint_<step>`` that would look complete.
    """
    deleted = []
    for checkpoint in complete_checkpoints(run_dir):
        step = checkpoint_step(checkpoint)
        if step not in keep:
            trash = checkpoint.with_name(f".{checkpoint.name}.tmp-delete")
            os.replace(checkpoint, trash)
            shutil.rmtree(trash, ignore_errors=True)
            deleted.append(step)
    return deleted


# --- postprocessing entry point ------------------------------------------------------------------------------
def resolve_input_dir(run_dir: Path, options: dict[str, Any], override: str | os.PathLike | None = None) -> str:
    """The step-2 data of the run in ``run_dir`` (its ``options.json`` is ``options``).

    ``override`` (postprocessing's ``--input_dir``) wins when given. Otherwise the recorded ``input_dir``, and if
    it is gone (the whole base directory moved) the same place relative to the run directory, found from the
    recorded ``input_dir`` and ``output_dir`` and logged. Neither there: a :class:`UserError` naming the recorded
    path and the option that points at the new one.
    """
    if override is not None:
        if not Path(override).is_dir():
            raise UserError(f"--input_dir {override}: directory does not exist")
        log.info("step-2 data: --input_dir %s (the run recorded %s)", override, options["input_dir"])
        return str(override)
    recorded = str(options["input_dir"])
    if Path(recorded).is_dir():
        return recorded
    moved = None
    if options.get("output_dir"):
        moved = Path(os.path.normpath(run_dir.absolute() / os.path.relpath(recorded, options["output_dir"])))
        if moved.is_dir():
            log.info("step-2 data: the recorded input_dir %s is gone; using %s, the same place relative to the "
                     "run directory (recorded as %s)", recorded, moved, options["output_dir"])
            return str(moved)
    raise UserError(f"input_dir {recorded} recorded in {run_dir / OPTIONS_FILE} does not exist"
                    + (f", nor does {moved} (the same place relative to the run directory)" if moved else "")
                    + ": if the step-2 data moved, give their new place with --input_dir")


def read_trained_run(path: str | os.PathLike, input_dir: str | os.PathLike | None = None) -> TrainedRun:
    """The run of a run directory (best checkpoint, else newest) or of a ``checkpoint_<step>`` directory, without
    its model (no TensorFlow needed), its step-2 data found by :func:`resolve_input_dir` (``input_dir``: the
    override): a missing or incomplete checkpoint, a run directory lacking its JSON files, or step-2 data that
    cannot be found, is a :class:`UserError`."""
    checkpoint_dir = resolve_checkpoint(path)
    run_dir = checkpoint_dir.parent
    options = read_json(run_dir / OPTIONS_FILE, what="training options")
    hparams = read_json(run_dir / HPARAMS_FILE, what="resolved model hparams")
    normalization = Normalization.from_dict(read_json(run_dir / NORMALIZATION_FILE, what="normalization"))
    datasplit = read_json(run_dir / DATASPLIT_FILE, what="data split")
    state = read_state(checkpoint_dir)
    return TrainedRun(run_dir=run_dir, checkpoint_dir=checkpoint_dir, step=state.step, hparams=hparams,
                      options=options, model_name=options["model"], dataset=options["dataset"],
                      input_dir=resolve_input_dir(run_dir, options, input_dir), normalization=normalization,
                      datasplit=datasplit,
                      frame_shape=tuple(state.frame_shape))


def build_trained_model(run: TrainedRun):
    """The model of ``run`` (:func:`read_trained_run`), rebuilt from its ``model_hparams.json`` and the frame
    shape saved in the checkpoint, then loaded with ``model.weights.h5``; weights that do not fit are a
    :class:`UserError`: a model with random weights is never returned."""
    model = build_model(run.model_name, run.hparams, frame_shape=run.frame_shape)
    try:
        model.load_weights(run.checkpoint_dir / WEIGHTS_FILE)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"{run.checkpoint_dir / WEIGHTS_FILE}: cannot be loaded into model {run.model_name}: "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return model


def load_trained_model(path: str | os.PathLike, input_dir: str | os.PathLike | None = None):
    """``(model, run)`` from a run directory (best checkpoint, else newest) or a ``checkpoint_<step>`` directory:
    :func:`read_trained_run`, then :func:`build_trained_model`."""
    run = read_trained_run(path, input_dir)
    return build_trained_model(run), run
