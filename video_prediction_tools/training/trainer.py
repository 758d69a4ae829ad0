"""Custom training loop for every AMBS model, with tf.distribute, resumable checkpoints and full validation.

One training step applies each of the model's optimisation phases in order (one Adam per phase, with the phase's
optimiser settings and learning-rate schedule; GAN models: discriminator, then generator) inside one
``tf.function``. The run lasts ``max_epochs`` epochs of ``steps_per_epoch = num_windows // batch_size`` steps (as
the original). Validation forecasts the WHOLE validation split from the context only and reports the MSE of the
target channels in physical units (the original used one training-mode val batch per step, §10 item 17).

Distribution (:func:`make_strategy`): one device → default strategy; several GPUs → ``MirroredStrategy``; several
SLURM tasks or ``TF_CONFIG`` → ``MultiWorkerMirroredStrategy`` (``SlurmClusterResolver`` under SLURM). The batch
size is the global batch and the learning rate is used as given. Only the chief worker writes the run directory;
every other worker writes its final weights to ``worker_<k>.weights.h5`` (so replica consistency can be checked).

Files written in the run directory (besides the JSON copies made by :func:`train`): ``checkpoint_<step>/``
(see ``checkpoints.py``), ``best_checkpoint.json``, ``train_losses.csv`` (step, epoch, seconds, loss, components),
``val_losses.csv`` (step, val_loss), ``losses.json`` (both histories), ``results.json`` (timing summary),
``plot_train.png``, TensorBoard events under ``logs/train`` and ``logs/val``, and ``train.log``.

Example::

    from video_prediction_tools.training.trainer import TrainingOptions, train
    train(TrainingOptions(input_dir="PreprocessedData/<EXPNAME>", output_dir="Models/<EXPNAME>/convLSTM/run1",
                          datasplit_dict="data_split.json", dataset="era5", model="convLSTM",
                          model_hparams_dict="model_hparams.json", frac_start_save=0.5, frac_intv_save=0.1))
"""
from __future__ import annotations

import csv
import io
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
from tensorflow.core.framework import summary_pb2

from ..datasets.normalization import Normalization
from ..models.registry import build_model, resolve_hparams
from ..utils.errors import UserError
from ..utils.io import atomic_path, read_json, remove_stale_temporaries, write_json, write_text
from ..utils.log import progress, setup_logging
from . import checkpoints

log = logging.getLogger("ambs")

DATASETS = ("era5", "moving_mnist")
#: noise seed of stochastic models' validation forecasts: the same draws at every validation, so checkpoints
#: are compared on equal terms
VALIDATION_SEED = 0
#: marks an event as a TensorBoard scalar (``tf.summary.scalar`` itself needs the tensorboard package installed)
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def _summary_scalar(tag: str, value: float) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)


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

    def with_absolute_paths(self) -> "TrainingOptions":
        """The same options with every path absolute, so the saved options.json works from any directory."""
        def absolute(path):
            return str(Path(path).resolve()) if isinstance(path, (str, os.PathLike)) else path
        return replace(self, input_dir=absolute(self.input_dir), output_dir=absolute(self.output_dir),
                       datasplit_dict=absolute(self.datasplit_dict),
                       model_hparams_dict=absolute(self.model_hparams_dict), checkpoint=absolute(self.checkpoint))


# --- distribution --------------------------------------------------------------------------------------------
def make_strategy():
    """The ``tf.distribute`` strategy for this process (must run before any other TensorFlow operation)."""
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if "TF_CONFIG" in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if slurm_tasks > 1 and "SLURM_PROCID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_identity(strategy) -> tuple[bool, int]:
    """``(is_chief, task_index)``: the chief writes the run directory."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return is_chief, task_id


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
    if options.dataset not in DATASETS:
        raise UserError(f"--dataset {options.dataset!r}: expected one of {', '.join(DATASETS)}")
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


def distribute_batch(strategy, values):
    """Per-replica tensors of a global numpy batch (an array or a dict of arrays, batch first): replica k of the
    ``num_replicas_in_sync`` (counted over all workers) takes the k-th equal share. Every worker reads the same
    global batch and keeps its replicas' shares, so a step sees what a single process would, whatever the number
    of workers."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return tf.nest.map_structure(tf.convert_to_tensor, values)

    def share(context):
        index = context.replica_id_in_sync_group
        return tf.nest.map_structure(
            lambda array: tf.convert_to_tensor(array[index * len(array) // replicas:(index + 1) * len(array) //
                                                     replicas]), values)

    return strategy.experimental_distribute_values_from_function(share)


def padded_batch(images: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """A validation batch padded to the full global batch with zero-weight samples: every replica then gets a
    non-empty share of the same size (the last batch of a split is usually partial), and one trace suffices."""
    missing = batch_size - len(images)
    weights = np.concatenate([np.ones(len(images)), np.zeros(missing)])
    if missing:
        images = np.concatenate([images, np.zeros((missing, *images.shape[1:]), images.dtype)])
    return {"images": images, "weights": weights}


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


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_loss_logs(run_dir: Path, state, tracked_loss: str) -> None:
    """``train_losses.csv``, ``val_losses.csv``, ``losses.json`` and ``plot_train.png`` from the histories."""
    write_text(run_dir / "train_losses.csv", _csv_text(state.train_history))
    write_text(run_dir / "val_losses.csv", _csv_text(state.val_history))
    write_json(run_dir / "losses.json", {"tracked_loss": tracked_loss, "val_loss": "MSE of the target channels "
                                         "in physical units (squared data units)",
                                         "train": state.train_history, "val": state.val_history})
    plot_losses(run_dir / "plot_train.png", state.train_history, state.val_history, tracked_loss)


def plot_losses(path: Path, train_history, val_history, tracked_loss: str) -> None:
    """Train loss (normalised units) and validation MSE (physical units) against the step, log y-axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    top.plot([row["step"] for row in train_history], [row["loss"] for row in train_history], color="green",
             label=f"train {tracked_loss}")
    top.set_ylabel(f"train {tracked_loss}\n(normalised)")
    bottom.plot([row["step"] for row in val_history], [row["val_loss"] for row in val_history], "o-",
                color="blue", label="validation MSE")
    bottom.set_ylabel("validation MSE\n(physical units²)")
    bottom.set_xlabel("training step")
    for axis in (top, bottom):
        if any(line.get_ydata().size and np.all(np.asarray(line.get_ydata()) > 0) for line in axis.lines):
            axis.set_yscale("log")
        axis.legend(loc="upper right")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


# --- set-up --------------------------------------------------------------------------------------------------
def _existing_options(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "options.json"
    return read_json(path, what="options of the existing run") if path.is_file() else None


def _check_same_run(run_dir: Path, options: TrainingOptions) -> None:
    existing = _existing_options(run_dir)
    if existing is not None and (existing.get("model"), existing.get("dataset")) != (options.model, options.dataset):
        raise UserError(f"--output_dir {run_dir} holds a run of model {existing.get('model')} on "
                        f"{existing.get('dataset')}, not {options.model} on {options.dataset}: use another "
                        f"output directory")


def _dataset_class(name: str):
    """The reader class of ``--dataset`` (imported on demand: each reader has its own dependencies)."""
    if name == "era5":
        from ..datasets.era5 import ERA5Dataset
        return ERA5Dataset
    from ..datasets.moving_mnist import MovingMnist
    return MovingMnist


def _user_hparams(options: TrainingOptions, resume_dir: Path | None) -> tuple[dict[str, Any], str]:
    """The user's hparams; when resuming, the resumed run's resolved hparams override them (as the original)."""
    user = {}
    source = "model hparams"
    if options.model_hparams_dict is not None:
        user = read_json(options.model_hparams_dict, what="model hparams file")
        source = str(options.model_hparams_dict)
        if not isinstance(user, dict):
            raise UserError(f"{source}: expected a JSON object of hyper-parameters")
    if resume_dir is not None and (resume_dir / "model_hparams.json").is_file():
        previous = read_json(resume_dir / "model_hparams.json", what="model hparams of the resumed run")
        changed = sorted(key for key in previous if key in user and user[key] != previous[key])
        if changed:
            log.warning("resuming: the run's hyper-parameters replace the given ones for %s", ", ".join(changed))
        user = {**user, **previous}
        source = str(resume_dir / "model_hparams.json")
    return user, source


def train(options: TrainingOptions) -> dict[str, Any]:
    """Train (or resume) one model; return the run summary also written to ``results.json``."""
    check_options(options)
    options = options.with_absolute_paths()
    run_dir = Path(options.output_dir)
    _check_same_run(run_dir, options)
    strategy = make_strategy()  # before any other TensorFlow operation (multi-worker set-up)
    is_chief, task_index = worker_identity(strategy)
    started = time.perf_counter()

    if options.checkpoint is not None:
        resume_from = checkpoints.resolve_checkpoint(options.checkpoint)
    else:
        resume_from = checkpoints.newest_checkpoint(run_dir)
    user, source = _user_hparams(options, resume_from.parent if resume_from else None)
    hparams = resolve_hparams(options.model, user, source=source)

    # the reader decides the window length when the user did not (the value recorded by preprocessing)
    reader_hparams = dict(hparams)
    if "sequence_length" not in user:
        reader_hparams.pop("sequence_length")
    dataset_class = _dataset_class(options.dataset)
    normalization = None
    if resume_from is not None and (resume_from.parent / checkpoints.NORMALIZATION_FILE).is_file():
        normalization = Normalization.from_dict(read_json(resume_from.parent / checkpoints.NORMALIZATION_FILE))
    train_data = dataset_class(options.input_dir, options.datasplit_dict, "train", hparams=reader_hparams,
                                      seed=options.seed, normalization=normalization)
    val_data = dataset_class(options.input_dir, options.datasplit_dict, "val", hparams=reader_hparams,
                             seed=options.seed, normalization=train_data.normalization)
    hparams["sequence_length"] = int(train_data.sequence_length)
    batch_size = int(hparams["batch_size"])
    steps_per_epoch = int(train_data.num_windows) // batch_size
    if steps_per_epoch == 0:
        raise UserError(f"the train split of {options.datasplit_dict} has {train_data.num_windows} windows of "
                        f"{hparams['sequence_length']} hours, fewer than one batch of {batch_size}")
    if int(val_data.num_windows) == 0:
        raise UserError(f"the val split of {options.datasplit_dict} has no window of {hparams['sequence_length']} "
                        f"hours")
    if batch_size % strategy.num_replicas_in_sync:
        raise UserError(f"batch_size {batch_size} (global) is not divisible by the {strategy.num_replicas_in_sync} "
                        f"replicas")
    schedule = Schedule.make(steps_per_epoch, int(hparams["max_epochs"]), options.frac_start_save,
                             options.frac_intv_save, options.val_interval)
    frame_shape = [int(n) for n in train_data.frame_shape]

    # inputs are valid: from here on the run directory is written
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir / "train.log" if is_chief else None)
    if is_chief:
        remove_stale_temporaries(run_dir)
        datasplit = options.datasplit_dict
        if not isinstance(datasplit, dict):
            datasplit = read_json(datasplit, what="data split")
        write_json(run_dir / checkpoints.HPARAMS_FILE, hparams)
        write_json(run_dir / checkpoints.DATASPLIT_FILE, datasplit)
        write_json(run_dir / checkpoints.OPTIONS_FILE,
                   dict(sorted(asdict(options).items())))
        write_json(run_dir / checkpoints.NORMALIZATION_FILE, train_data.normalization.to_dict())

    keras.utils.set_random_seed(options.seed)
    with strategy.scope():
        model = build_model(options.model, hparams, frame_shape=tuple(frame_shape))
        phases = model.optimization_phases()
        optimizers = build_optimizers(model, phases)
    if resume_from is not None:
        state = checkpoints.restore_checkpoint(resume_from, model, optimizers)
        _set_rng_state(state.rng)
        log.info("resuming from %s (step %d of %d)", resume_from, state.step, schedule.total_steps)
    else:
        state = checkpoints.TrainerState(frame_shape=frame_shape)
    if state.frame_shape != frame_shape:
        raise UserError(f"checkpoint {resume_from} was trained on frames {state.frame_shape}, the data has "
                        f"{frame_shape}")

    if state.step >= schedule.total_steps:
        log.info("%s: training already finished (step %d of %d)", run_dir, state.step, schedule.total_steps)
        return read_json(run_dir / "results.json", what="results of the finished run") if is_chief else {}
    loop = TrainingLoop(strategy, is_chief, run_dir, model, phases, optimizers, train_data, val_data, batch_size,
                        schedule, state)
    stop_at = schedule.total_steps
    if options.stop_after_steps is not None:
        stop_at = min(stop_at, state.step + options.stop_after_steps)
    summary = loop.run(stop_at)
    summary["total_time"] = time.perf_counter() - started
    if state.step < schedule.total_steps:
        log.info("stopped at step %d of %d as asked; rerun the same command to continue", state.step,
                 schedule.total_steps)
    elif is_chief and options.frac_start_save < 1.0:
        saved = [checkpoints.checkpoint_step(path) for path in checkpoints.complete_checkpoints(run_dir)]
        best = checkpoints.best_step(state.val_history, saved)
        if best is not None:
            deleted = checkpoints.prune_checkpoints(run_dir, keep={best[0], max(saved)})
            log.info("best checkpoint: step %d (validation MSE %.5g); deleted %d others", *best, len(deleted))
            summary["best_step"], summary["best_val_loss"] = best
    if is_chief:
        write_json(run_dir / "results.json", summary)
    else:
        model.save_weights(run_dir / f"worker_{task_index}.weights.h5")
    return summary


class TrainingLoop:
    """Steps, validations, checkpoints and logs of one run (see the module docstring)."""

    def __init__(self, strategy, is_chief: bool, run_dir: Path, model, phases, optimizers, train_data, val_data,
                 batch_size: int, schedule: Schedule, state: checkpoints.TrainerState):
        self.strategy, self.is_chief, self.run_dir = strategy, is_chief, run_dir
        self.model, self.phases, self.optimizers = model, phases, optimizers
        self.train_data, self.val_data, self.batch_size = train_data, val_data, batch_size
        self.schedule, self.state = schedule, state
        self.train_step = make_train_step(strategy, model, phases, optimizers)
        self.val_step = make_val_step(strategy, model, train_data.normalization, train_data.frame_shape[-1])
        self.writers = {}
        if is_chief:
            self.writers = {mode: tf.summary.create_file_writer(str(run_dir / "logs" / mode))
                            for mode in ("train", "val")}

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
                    _summary_scalar(key, value)
                _summary_scalar("seconds_per_step", seconds)
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
                _summary_scalar("val_loss", val_loss)
            if saves:
                state.rng = _rng_state()
                checkpoints.save_checkpoint(self.run_dir, state, self.model, self.optimizers)
                saved = [checkpoints.checkpoint_step(path)
                         for path in checkpoints.complete_checkpoints(self.run_dir)]
                best = checkpoints.best_step(state.val_history, saved)
                if best is not None:
                    checkpoints.write_best_pointer(self.run_dir, *best)
            write_loss_logs(self.run_dir, state, self.model.tracked_loss)

    def run(self, stop_at: int) -> dict[str, Any]:
        """Train from the state's step to ``stop_at`` (checkpointing there); return a timing summary."""
        state = self.state
        steps = range(state.step, stop_at)
        bar = progress(steps, desc=f"train {self.model.name}", total=len(steps), unit="step") \
            if self.is_chief else None
        batches = None
        seconds_this_run = []
        started = time.perf_counter()
        for _ in steps:
            iteration_started = time.perf_counter()
            if batches is None:
                batches = self._batches()
            logged = self.train_step(next(batches), tf.constant(state.step, tf.int64))
            values = {key: float(value) for key, value in logged.items()}
            seconds = time.perf_counter() - iteration_started
            seconds_this_run.append(seconds)
            tracked = self._record_step(values, seconds)
            if state.batch_index == 0:
                batches = None
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{tracked:.4g}", samples_s=f"{self.batch_size / seconds:.1f}", refresh=False)
            self._validate_and_save(tracked, force=state.step == stop_at)
        if bar is not None:
            bar.close()
        for writer in self.writers.values():
            writer.close()
        summary = {"model": self.model.name, "step": state.step, "total_steps": self.schedule.total_steps,
                   "steps_per_epoch": self.schedule.steps_per_epoch, "global_batch_size": self.batch_size,
                   "replicas": self.strategy.num_replicas_in_sync, "train_time": time.perf_counter() - started}
        if len(seconds_this_run) > 1:  # the first step of a run includes tracing
            summary["mean_seconds_per_step"] = float(np.mean(seconds_this_run[1:]))
            summary["samples_per_second"] = self.batch_size / summary["mean_seconds_per_step"]
        log.info("trained steps %d-%d of %d in %.1f s", steps.start + 1, state.step, self.schedule.total_steps,
                 summary["train_time"])
        return summary
