"""Custom training loop for every AMBS model, with tf.distribute, resumable checkpoints and full validation.

One training step applies each of the model's optimisation phases in order (one Adam per phase, with the phase's
optimiser settings and learning-rate schedule; GAN models: discriminator, then generator) inside one
``tf.function``. The run lasts ``max_epochs`` epochs of ``steps_per_epoch = num_windows // batch_size`` steps (as
the original). Validation forecasts the WHOLE validation split from the context only and reports the MSE of the
target channels in physical units (the original validated on one training-mode batch per step, which measured
neither forecasts nor the whole split).

:func:`train` reads as its steps: prepare the run (options, hyper-parameters, strategy), open the splits, check and
record the run's identity (``run_identity.py``: a rerun resumes only the same run), build or restore the model,
the training loop, and the end-of-run work (best checkpoint, pruning, loss logs, ``results.json``). The end-of-run
work needs only the final checkpoint's trainer state, so a rerun of a run killed after its last checkpoint
completes it. A non-finite loss stops training with a :class:`UserError` naming the step, and a checkpoint is
never written with non-finite weights.

Distribution (``distribute.py``): the batch size is the global batch and the learning rate is used as given. Only
the chief worker writes the run directory; every other worker writes its final weights to
``worker_<k>.weights.h5`` (so replica consistency can be checked).

Files written in the run directory: ``run_identity.json``, ``options.json``, ``model_hparams.json`` (resolved),
``data_split.json``, ``normalization.json``, ``checkpoint_<step>/`` (see ``checkpoints.py``),
``best_checkpoint.json``, the loss logs of ``run_logs.py``, ``results.json`` (step counts and timing of the
steps, from the trainer state), TensorBoard events under ``logs/train`` and ``logs/val``, and ``train.log``.

Example::

    from video_prediction_tools.training.trainer import TrainingOptions, train
    train(TrainingOptions(input_dir="PreprocessedData/<EXPNAME>", output_dir="Models/<EXPNAME>/convLSTM/run1",
                          datasplit_dict="data_split.json", dataset="era5", model="convLSTM",
                          model_hparams_dict="model_hparams.json", frac_start_save=0.5, frac_intv_save=0.1))
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..datasets.normalization import Normalization
from ..datasets.registry import Reader, get_dataset_class, known_datasets
from ..models.registry import build_model, resolve_hparams
from ..utils.conventions import MAX_SEED
from ..utils.errors import UserError
from ..utils.io import read_json, remove_stale_temporaries, write_json
from ..utils.locks import lock_directory, unlock_directory
from ..utils.log import progress, setup_logging
from . import checkpoints
from .distribute import distribute_batch, make_strategy, padded_batch, worker_identity
from .run_identity import (IDENTITY_FILE, check_same_run, clear_run_outputs, input_fingerprint,
                           recorded_file_digests, run_identity)
from .run_logs import LossLogWriter, summary_scalar, write_loss_logs

log = logging.getLogger("ambs")

#: noise seed of stochastic models' validation forecasts: the same draws at every validation, so checkpoints
#: are compared on equal terms
VALIDATION_SEED = 0


@dataclass
class TrainingOptions:
    """The command-line options of ``main_train_models`` (original names)."""

    input_dir: str
    output_dir: str
    datasplit_dict: str
    model: str
    model_hparams_dict: str | None = None
    dataset: str = "era5"
    checkpoint: str | None = None
    frac_start_save: float = 1.0
    frac_intv_save: float = 0.01
    seed: int = 1234
    #: validate every this many steps (None: once per epoch); validation also runs at every checkpoint
    val_interval: int | None = None
    #: end this run after this many steps, with a checkpoint (to fit a batch job's time limit; rerun to continue)
    stop_after_steps: int | None = None
    #: delete the training outputs of ``output_dir`` first (to retrain a run directory with other inputs)
    start_over: bool = False
    #: the data whose statistics normalise it (ERA5): ``train`` (the train split's months or hours) or ``all``
    #: (every preprocessed month, as the original AMBS)
    normalization_months: str = "train"

    def with_absolute_paths(self) -> "TrainingOptions":
        """The same options with every path absolute, so the saved options.json works from any directory."""
        def absolute(path):
            return str(Path(path).resolve()) if isinstance(path, (str, os.PathLike)) else path
        return replace(self, input_dir=absolute(self.input_dir), output_dir=absolute(self.output_dir),
                       datasplit_dict=absolute(self.datasplit_dict),
                       model_hparams_dict=absolute(self.model_hparams_dict), checkpoint=absolute(self.checkpoint))


# --- checkpoint schedule -------------------------------------------------------------------------------------
@dataclass
class Schedule:
    """Which steps (counted after the update, 1..total_steps) checkpoint and validate."""

    steps_per_epoch: int
    total_steps: int
    start_save: int
    save_interval: int
    val_interval: int

    @classmethod
    def make(cls, steps_per_epoch: int, max_epochs: int, frac_start_save: float, frac_intv_save: float,
             val_interval: int | None) -> "Schedule":
        total = steps_per_epoch * max_epochs
        return cls(steps_per_epoch, total, start_save=math.ceil(total * frac_start_save),
                   save_interval=max(1, math.ceil(total * frac_intv_save)),
                   val_interval=val_interval or steps_per_epoch)

    def saves(self, step: int) -> bool:
        return step == self.total_steps or (step >= self.start_save and
                                            (step - self.start_save) % self.save_interval == 0)

    def validates(self, step: int) -> bool:
        return self.saves(step) or step % self.val_interval == 0


def check_options(options: TrainingOptions) -> None:
    """Checks that need no data (fail before anything is written)."""
    for name in ("frac_start_save", "frac_intv_save"):
        value = getattr(options, name)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"--{name} {value}: expected a fraction of the total steps in [0, 1]")
    if options.frac_intv_save == 0.0:
        raise UserError("--frac_intv_save 0: the checkpoint interval must be a positive fraction of the total steps")
    if options.val_interval is not None and options.val_interval < 1:
        raise UserError(f"--val_interval {options.val_interval}: expected a positive number of steps")
    if options.stop_after_steps is not None and options.stop_after_steps < 1:
        raise UserError(f"--stop_after_steps {options.stop_after_steps}: expected a positive number of steps")
    if not 0 <= options.seed <= MAX_SEED:
        raise UserError(f"--seed {options.seed}: expected an integer in 0..{MAX_SEED}")
    if options.dataset not in known_datasets():
        raise UserError(f"--dataset {options.dataset!r}: expected one of {', '.join(known_datasets())}")
    if not Path(options.input_dir).is_dir():
        raise UserError(f"--input_dir {options.input_dir}: directory does not exist")
    if options.model_hparams_dict is not None and not Path(options.model_hparams_dict).is_file():
        raise UserError(f"--model_hparams_dict {options.model_hparams_dict}: file does not exist")
    if options.checkpoint is not None and not Path(options.checkpoint).exists():
        raise UserError(f"--checkpoint {options.checkpoint}: does not exist")


# --- the training step ---------------------------------------------------------------------------------------
class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A phase's ``learning_rate(step)`` as a Keras schedule. Keras calls it with the optimiser's iteration
    count, which equals the training step because every phase is applied once per step."""

    def __init__(self, phase):
        self.phase = phase

    def __call__(self, step):
        return tf.cast(self.phase.learning_rate(tf.cast(step, tf.int64)), tf.float32)

    def get_config(self):
        return {"phase": self.phase.name}


def build_optimizers(model, phases) -> dict[str, Any]:
    """One Adam per phase (with the phase's kwargs and schedule), built so its variables exist for restoring."""
    optimizers = {}
    for phase in phases:
        optimizer = keras.optimizers.Adam(learning_rate=PhaseSchedule(phase), name=f"adam_{phase.name}",
                                          **phase.optimizer)
        optimizer.build(phase.variables())
        optimizers[phase.name] = optimizer
    return optimizers


def make_train_step(strategy, model, phases, optimizers):
    """A ``tf.function`` ``(distributed images, step) → {name: global scalar}`` applying every phase in order.

    Each replica's loss is the mean over its share of the global batch; dividing it by the number of replicas
    makes the (summed) all-reduced gradient the gradient of the global-batch mean, whatever the replica count.
    """
    replicas = strategy.num_replicas_in_sync

    def replica_step(images, step):
        logged = {}
        for phase in phases:
            variables = phase.variables()
            with tf.GradientTape() as tape:
                loss, parts = phase.loss(images, step)
                scaled = loss / replicas
            gradients = tape.gradient(scaled, variables)
            pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
            optimizers[phase.name].apply_gradients(pairs)
            logged[f"{phase.name}_loss"] = loss
            for key, value in parts.items():
                logged[key if key not in logged else f"{phase.name}_{key}"] = tf.cast(value, tf.float32)
        return logged

    @tf.function
    def train_step(images, step):
        per_replica = strategy.run(replica_step, args=(images, step))
        return {key: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for key, value in per_replica.items()}

    return train_step


def make_val_step(strategy, model, normalization, channels: int):
    """A ``tf.function`` returning ``(sum of squared errors, number of values)`` of the prior forecast on the
    target channels, in physical units, over one distributed batch (summed over replicas)."""
    # min-max and z-score normalisation are affine per channel, so the physical error is the normalised error
    # times the channel's scale; deriving scale and offset from the Normalization keeps this graph independent
    # of how the reader implements it.
    offset = np.asarray(normalization.denormalize(np.zeros((1, channels), np.float32)), np.float64)[0]
    scale = np.asarray(normalization.denormalize(np.ones((1, channels), np.float32)), np.float64)[0] - offset
    target_scale = tf.constant(scale[model.target_channels], tf.float32)

    def replica_step(images, weights):
        forecast = model.select_targets(model.forecast(images, seed=VALIDATION_SEED))
        error = (forecast - model.target(images)) * target_scale
        squared = tf.reduce_sum(tf.square(error), axis=[1, 2, 3, 4])
        values_per_sample = tf.cast(tf.reduce_prod(tf.shape(error)[1:]), tf.float64)
        return (tf.reduce_sum(tf.cast(squared, tf.float64) * weights),
                tf.reduce_sum(weights) * values_per_sample)

    @tf.function
    def val_step(batch):
        squared, count = strategy.run(replica_step, args=(batch["images"], batch["weights"]))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, squared, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None))

    return val_step


def check_finite_losses(step: int, values: dict[str, float]) -> None:
    """Stop training at the first non-finite loss (NaN or infinite weights would follow and be saved)."""
    bad = {key: value for key, value in values.items() if not math.isfinite(value)}
    if bad:
        raise UserError(f"training diverged at step {step}: " + ", ".join(f"{key} = {value}" for key, value in
                                                                          bad.items())
                        + "; nothing after the last checkpoint was saved: lower lr or check the input data, then "
                          "train again (--start_over)")


# --- outputs -------------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(position), int(has_gauss), float(cached)]}


def _set_rng_state(state: dict[str, Any]) -> None:
    if state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, np.uint32), position, has_gauss, cached))


# --- the steps of a run --------------------------------------------------------------------------------------
@dataclass
class PreparedRun:
    """The checked options and everything decided before any data is opened."""

    options: TrainingOptions
    run_dir: Path
    strategy: tf.distribute.Strategy
    is_chief: bool
    task_index: int
    #: checkpoint to resume from (``--checkpoint``, else the newest complete one of the run directory), or None
    resume_from: Path | None
    #: resolved hyper-parameters (defaults included), as the model, the reader and ``model_hparams.json`` get them
    hparams: dict[str, Any]
    datasplit: dict[str, Any]


@dataclass
class OpenedSplits:
    """The train and val readers and the step schedule they imply."""

    train: Reader
    val: Reader
    batch_size: int
    schedule: Schedule
    frame_shape: list[int]


def _check_model_of_run(run_dir: Path, options: TrainingOptions) -> None:
    """A run directory of another model or dataset is refused before anything else is read."""
    path = run_dir / checkpoints.OPTIONS_FILE
    existing = read_json(path, what="options of the existing run") if path.is_file() else None
    if existing is not None and (existing.get("model"), existing.get("dataset")) != (options.model, options.dataset):
        raise UserError(f"--output_dir {run_dir} holds a run of model {existing.get('model')} on "
                        f"{existing.get('dataset')}, not {options.model} on {options.dataset}: use another "
                        f"output directory")


def _resolved_hparams(options: TrainingOptions, resume_from: Path | None) -> dict[str, Any]:
    """The user's hyper-parameters resolved against the model's defaults. Resuming a checkpoint trained with other
    values is refused (the run directory's ``model_hparams.json`` must say how its weights were trained)."""
    user, source = None, "model hparams"
    if options.model_hparams_dict is not None:
        source = str(options.model_hparams_dict)
        user = read_json(options.model_hparams_dict, what="model hparams file")
    hparams = resolve_hparams(options.model, user, source=source)
    trained_with = resume_from.parent / checkpoints.HPARAMS_FILE if resume_from is not None else None
    if trained_with is not None and trained_with.is_file() and options.checkpoint is not None:
        previous = read_json(trained_with, what="model hparams of the resumed run")
        changed = sorted(key for key in {*previous, *hparams} if previous.get(key) != hparams.get(key))
        if changed:
            raise UserError(f"--checkpoint {resume_from} was trained with other hyper-parameters ("
                            + ", ".join(f"{key}: {previous.get(key)!r} → {hparams.get(key)!r}" for key in changed)
                            + f"): give the values of {trained_with}")
    return hparams


def prepare_run(options: TrainingOptions) -> PreparedRun:
    """Check the options, choose the strategy and the checkpoint to resume from (none of the run directory's own
    on ``--start_over``), and resolve the hyper-parameters."""
    check_options(options)
    options = options.with_absolute_paths()
    run_dir = Path(options.output_dir)
    if not options.start_over:
        _check_model_of_run(run_dir, options)
    strategy = make_strategy()  # before any other TensorFlow operation (multi-worker set-up)
    is_chief, task_index = worker_identity(strategy)
    if options.checkpoint is not None:
        resume_from = checkpoints.resolve_checkpoint(options.checkpoint)
        if options.start_over and resume_from.parent == run_dir:
            raise UserError(f"--checkpoint {resume_from} lies in --output_dir {run_dir}, which --start_over clears: "
                            f"copy it elsewhere first or give another --output_dir")
    else:
        resume_from = None if options.start_over else checkpoints.newest_checkpoint(run_dir)
    hparams = _resolved_hparams(options, resume_from)
    datasplit = options.datasplit_dict
    if not isinstance(datasplit, dict):
        datasplit = read_json(datasplit, what="data split")
    return PreparedRun(options, run_dir, strategy, is_chief, task_index, resume_from, hparams, datasplit)


def open_splits(run: PreparedRun) -> OpenedSplits:
    """The train and val readers (window length = ``hparams["sequence_length"]``), checked to give at least one
    training batch and one validation window, and the schedule of steps."""
    options, hparams = run.options, run.hparams
    reader_class = get_dataset_class(options.dataset)
    normalization = None
    if run.resume_from is not None and (run.resume_from.parent / checkpoints.NORMALIZATION_FILE).is_file():
        normalization = Normalization.from_dict(read_json(run.resume_from.parent / checkpoints.NORMALIZATION_FILE))
    train_data = reader_class(options.input_dir, options.datasplit_dict, "train", hparams=hparams,
                              seed=options.seed, normalization=normalization,
                              normalization_months=options.normalization_months)
    val_data = reader_class(options.input_dir, options.datasplit_dict, "val", hparams=hparams,
                            seed=options.seed, normalization=train_data.normalization)
    batch_size = int(hparams["batch_size"])
    steps_per_epoch = int(train_data.num_windows) // batch_size
    if steps_per_epoch == 0:
        raise UserError(f"the train split of {options.datasplit_dict} has {train_data.num_windows} windows of "
                        f"{hparams['sequence_length']} hours, fewer than one batch of {batch_size}")
    if int(val_data.num_windows) == 0:
        raise UserError(f"the val split of {options.datasplit_dict} has no window of {hparams['sequence_length']} "
                        f"hours")
    if batch_size % run.strategy.num_replicas_in_sync:
        raise UserError(f"batch_size {batch_size} (global) is not divisible by the "
                        f"{run.strategy.num_replicas_in_sync} replicas")
    schedule = Schedule.make(steps_per_epoch, int(hparams["max_epochs"]), options.frac_start_save,
                             options.frac_intv_save, options.val_interval)
    return OpenedSplits(train_data, val_data, batch_size, schedule, [int(n) for n in train_data.frame_shape])


def _input_files(splits: OpenedSplits) -> tuple[list[Path], list[Path]]:
    """The data files the splits read, and the JSON files describing them (for the input fingerprint)."""
    data_files, descriptions = [], []
    for reader in (splits.train, splits.val):
        data_files += reader.input_files()
        descriptions += reader.description_files()
    return data_files, descriptions


def record_run(run: PreparedRun, splits: OpenedSplits) -> None:
    """Refuse a run directory that holds another run (``--start_over``: delete its training outputs, keeping this
    command's input files), then (chief) write the run's identity and JSON files."""
    options = run.options
    fingerprint, file_digests = input_fingerprint(*_input_files(splits), recorded_file_digests(run.run_dir))
    identity = run_identity(options.model, options.dataset, options.seed, run.datasplit, run.hparams, fingerprint,
                            file_digests, options.normalization_months)
    if not options.start_over:
        check_same_run(run.run_dir, identity)
    # inputs are valid: from here on the run directory is written, by one run at a time
    if run.is_chief:
        lock_directory(run.run_dir, "training")
    if options.start_over and run.is_chief:
        clear_run_outputs(run.run_dir, keep=[path for path in (options.model_hparams_dict, options.datasplit_dict)
                                             if isinstance(path, str)])
    run.run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run.run_dir / "train.log" if run.is_chief else None)
    if run.is_chief:
        remove_stale_temporaries(run.run_dir)
        write_json(run.run_dir / IDENTITY_FILE, identity)
        write_json(run.run_dir / checkpoints.HPARAMS_FILE, run.hparams)
        write_json(run.run_dir / checkpoints.DATASPLIT_FILE, run.datasplit)
        write_json(run.run_dir / checkpoints.OPTIONS_FILE, dict(sorted(asdict(options).items())))
        write_json(run.run_dir / checkpoints.NORMALIZATION_FILE, splits.train.normalization.to_dict())


def build_or_restore(run: PreparedRun, splits: OpenedSplits):
    """``(model, phases, optimizers, state)``: a new model, or the one of the checkpoint to resume from."""
    keras.utils.set_random_seed(run.options.seed)
    with run.strategy.scope():
        model = build_model(run.options.model, run.hparams, frame_shape=tuple(splits.frame_shape))
        model.training_steps = splits.schedule.total_steps  # for schedules decaying over the whole run
        phases = model.optimization_phases()
        optimizers = build_optimizers(model, phases)
    if run.resume_from is None:
        return model, phases, optimizers, checkpoints.TrainerState(frame_shape=splits.frame_shape)
    state = checkpoints.restore_checkpoint(run.resume_from, model, optimizers)
    _set_rng_state(state.rng)
    log.info("resuming from %s (step %d of %d)", run.resume_from, state.step, splits.schedule.total_steps)
    if state.frame_shape != splits.frame_shape:
        raise UserError(f"checkpoint {run.resume_from} was trained on frames {state.frame_shape}, the data has "
                        f"{splits.frame_shape}")
    return model, phases, optimizers, state


def run_summary(model_name: str, splits: OpenedSplits, replicas: int, state: checkpoints.TrainerState
                ) -> dict[str, Any]:
    """``results.json``: step counts and the timing of the steps (from the state's history, so it is the same
    whenever it is written). ``train_time`` (s) sums every step; the per-step mean leaves out the first step of
    each training session, which includes tracing the ``tf.function``."""
    seconds = [row["seconds"] for row in state.train_history]
    steady = [row["seconds"] for row in state.train_history if row["step"] not in state.sessions]
    summary = {"model": model_name, "step": state.step, "total_steps": splits.schedule.total_steps,
               "steps_per_epoch": splits.schedule.steps_per_epoch, "global_batch_size": splits.batch_size,
               "replicas": replicas, "train_time": float(np.sum(seconds))}
    if steady:
        summary["mean_seconds_per_step"] = float(np.mean(steady))
        summary["samples_per_second"] = splits.batch_size / summary["mean_seconds_per_step"]
    return summary


def finish(run: PreparedRun, splits: OpenedSplits, model, state: checkpoints.TrainerState) -> dict[str, Any]:
    """The end-of-run work, from the final trainer state only (so a rerun of a run killed after its last
    checkpoint completes it): best-checkpoint pointer and pruning, loss logs, ``results.json``."""
    summary = run_summary(model.name, splits, run.strategy.num_replicas_in_sync, state)
    if not run.is_chief:
        model.save_weights(run.run_dir / f"worker_{run.task_index}.weights.h5")
        return summary
    saved = [checkpoints.checkpoint_step(path) for path in checkpoints.complete_checkpoints(run.run_dir)]
    best = checkpoints.best_step(state.val_history, saved)
    if best is not None:
        checkpoints.write_best_pointer(run.run_dir, *best)
        if run.options.frac_start_save < 1.0:
            deleted = checkpoints.prune_checkpoints(run.run_dir, keep={best[0], max(saved)})
            log.info("best checkpoint: step %d (validation MSE %.5g); deleted %d others", *best, len(deleted))
            summary["best_step"], summary["best_val_loss"] = best
    write_loss_logs(run.run_dir, state, model.tracked_loss)
    write_json(run.run_dir / "results.json", summary)
    return summary


def train(options: TrainingOptions) -> dict[str, Any]:
    """Train (or resume, or complete) one model; return the run summary also written to ``results.json``. The run
    directory is locked (:func:`record_run`) until the run ends."""
    run = prepare_run(options)
    try:
        return _train(run)
    finally:
        unlock_directory(run.run_dir)


def _train(run: PreparedRun) -> dict[str, Any]:
    """:func:`train` of a prepared run."""
    options = run.options
    splits = open_splits(run)
    record_run(run, splits)
    model, phases, optimizers, state = build_or_restore(run, splits)
    total = state.total_steps = splits.schedule.total_steps  # saved with every checkpoint: an unfinished run shows
    if state.step >= total:
        log.info("%s: training already finished (step %d of %d); completing its end-of-run files", run.run_dir,
                 state.step, total)
    else:
        stop_at = total if options.stop_after_steps is None else min(total, state.step + options.stop_after_steps)
        TrainingLoop(run, splits, model, phases, optimizers, state).run(stop_at)
        if state.step < total:
            log.info("stopped at step %d of %d as asked; rerun the same command to continue", state.step, total)
            return run_summary(model.name, splits, run.strategy.num_replicas_in_sync, state)
    return finish(run, splits, model, state)


class TrainingLoop:
    """Steps, validations, checkpoints and logs of one training session (see the module docstring)."""

    def __init__(self, run: PreparedRun, splits: OpenedSplits, model, phases, optimizers,
                 state: checkpoints.TrainerState):
        self.strategy, self.is_chief, self.run_dir = run.strategy, run.is_chief, run.run_dir
        self.model, self.phases, self.optimizers = model, phases, optimizers
        self.train_data, self.val_data, self.batch_size = splits.train, splits.val, splits.batch_size
        self.schedule, self.state = splits.schedule, state
        self.train_step = make_train_step(self.strategy, model, phases, optimizers)
        self.val_step = make_val_step(self.strategy, model, splits.train.normalization, splits.frame_shape[-1])
        self.writers, self.loss_logs = {}, None
        if self.is_chief:
            self.writers = {mode: tf.summary.create_file_writer(str(run.run_dir / "logs" / mode))
                            for mode in ("train", "val")}
            self.loss_logs = LossLogWriter(run.run_dir, model.tracked_loss)

    def validate(self) -> float:
        """MSE of the target channels (physical units) of the forecasts of the whole validation split."""
        squared, count = 0.0, 0.0
        for batch in self.val_data.batches(self.batch_size, epoch=self.state.epoch, drop_remainder=False):
            padded = padded_batch(batch["images"], self.batch_size)
            del batch
            batch_squared, batch_count = self.val_step(distribute_batch(self.strategy, padded))
            squared += float(batch_squared)
            count += float(batch_count)
        return squared / count

    def _batches(self):
        """Distributed training batches from the saved data position to the end of its epoch."""
        state = self.state
        for batch in self.train_data.batches(self.batch_size, epoch=state.epoch, drop_remainder=True,
                                             skip=state.batch_index):
            images = distribute_batch(self.strategy, batch["images"])
            del batch  # the reader reuses the batch's buffer once it is released
            yield images

    def _record_step(self, values: dict[str, float], seconds: float) -> float:
        state = self.state
        check_finite_losses(state.step + 1, values)
        tracked = values.get(self.model.tracked_loss, values[f"{self.phases[-1].name}_loss"])
        state.train_history.append({"step": state.step + 1, "epoch": state.epoch, "seconds": seconds,
                                    "loss": tracked, **values})
        state.step += 1
        state.batch_index += 1
        if state.batch_index == self.schedule.steps_per_epoch:
            state.epoch, state.batch_index = state.epoch + 1, 0
        if self.is_chief:
            with self.writers["train"].as_default(step=state.step):
                for key, value in values.items():
                    summary_scalar(key, value)
                summary_scalar("seconds_per_step", seconds)
        return tracked

    def _validate_and_save(self, tracked: float, force: bool) -> None:
        state, schedule = self.state, self.schedule
        saves = force or schedule.saves(state.step)
        if saves or schedule.validates(state.step):
            val_loss = self.validate()
            state.val_history.append({"step": state.step, "val_loss": val_loss})
            log.info("step %d/%d: train %s %.5g, validation MSE %.5g", state.step, schedule.total_steps,
                     self.model.tracked_loss, tracked, val_loss)
            if not self.is_chief:
                return
            with self.writers["val"].as_default(step=state.step):
                summary_scalar("val_loss", val_loss)
            if saves:
                state.rng = _rng_state()
                checkpoints.save_checkpoint(self.run_dir, state, self.model, self.optimizers)
                saved = [checkpoints.checkpoint_step(path)
                         for path in checkpoints.complete_checkpoints(self.run_dir)]
                best = checkpoints.best_step(state.val_history, saved)
                if best is not None:
                    checkpoints.write_best_pointer(self.run_dir, *best)
            if state.step < schedule.total_steps:  # at the last step the end of the run (``finish``) writes them
                self.loss_logs.submit(state)

    def run(self, stop_at: int) -> None:
        """Train from the state's step to ``stop_at`` (checkpointing there)."""
        state = self.state
        steps = range(state.step, stop_at)
        state.sessions.append(state.step + 1)  # this step's time includes tracing
        bar = progress(steps, desc=f"train {self.model.name}", total=len(steps), unit="step") \
            if self.is_chief else None
        batches = None
        started = time.perf_counter()
        try:
            for _ in steps:
                iteration_started = time.perf_counter()
                if batches is None:
                    batches = self._batches()
                logged = self.train_step(next(batches), tf.constant(state.step, tf.int64))
                values = {key: float(value) for key, value in logged.items()}
                seconds = time.perf_counter() - iteration_started
                tracked = self._record_step(values, seconds)
                if state.batch_index == 0:
                    batches = None
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{tracked:.4g}", samples_s=f"{self.batch_size / seconds:.1f}",
                                    refresh=False)
                self._validate_and_save(tracked, force=state.step == stop_at)
        finally:
            if bar is not None:
                bar.close()
            for writer in self.writers.values():
                writer.close()
            if self.loss_logs is not None:
                self.loss_logs.close()
        log.info("trained steps %d-%d of %d in %.1f s", steps.start + 1, state.step, self.schedule.total_steps,
                 time.perf_counter() - started)
