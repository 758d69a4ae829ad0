"""The interface every AMBS video-prediction model implements (training and postprocessing use only this).

Data conventions (all models):

* ``images``: float32 ``[batch, time, lat, lon, channel]`` = ``[B, T, H, W, C]``, normalised (min-max to [0, 1]
  or z-scores). ``T = sequence_length``; the first ``context_frames`` frames are the context.
* A forecast is ``[B, F, H, W, C]`` with ``F = T - context_frames`` frames: frame ``j`` (0-based) is the forecast
  for lead time ``j + 1`` hours, i.e. for ``images[:, context_frames + j]``.
* Forecasts are autoregressive: :meth:`forecast` only ever sees ``images[:, :context_frames]``.
* Losses are computed on the target channels ``opt_var`` ("0", "0,2" or "all").

Training is a sequence of *optimisation phases* per step (one for plain models; discriminator then generator for
GAN models), each with its own loss, variables, optimiser settings and learning-rate schedule. The trainer in
``training/`` owns the optimisers, the distribution strategy and the checkpoints; models know nothing of files.

Example::

    from video_prediction_tools.models.registry import build_model
    model = build_model("convLSTM", {"context_frames": 12, "sequence_length": 24}, frame_shape=(56, 92, 3))
    forecast = model.forecast(images)                       # [B, 12, 56, 92, 3]
    for phase in model.optimization_phases():
        loss, parts = phase.loss(images, step=0)            # scalar, {"total_loss": ...}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import math

import keras
import tensorflow as tf

from ..utils.conventions import DEFAULT_SEQUENCE_LENGTH
from .registry import sequence_frames

#: hyper-parameters every model accepts (names of the original), with their defaults
COMMON_HPARAMS: dict[str, Any] = {
    "batch_size": 4,
    "lr": 0.001,
    "max_epochs": 20,
    "context_frames": 12,
    "sequence_length": DEFAULT_SEQUENCE_LENGTH,
    "shuffle_on_val": False,
    "opt_var": "0",
    "normalization": "minmax",
}


@dataclass
class OptimizationPhase:
    """One optimiser update inside a training step.

    ``loss(images, step)`` returns the scalar loss to minimise (mean over the local batch) and a dict of named
    scalar components for logging. ``variables()`` lists the variables this phase updates. ``learning_rate(step)``
    is the schedule (a float tensor). ``optimizer`` holds keyword arguments for ``keras.optimizers.Adam`` besides
    the learning rate (``beta_1``, ``beta_2``, ``epsilon``).
    """

    name: str
    loss: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, dict[str, tf.Tensor]]]
    variables: Callable[[], list]
    learning_rate: Callable[[tf.Tensor], tf.Tensor]
    optimizer: dict[str, float] = field(default_factory=dict)


def parse_opt_var(opt_var: str, channels: int) -> list[int]:
    """Channel indices of the loss: "all" → every channel; "0" or "0,2" → those indices (checked)."""
    text = str(opt_var).strip().lower()
    if text == "all":
        return list(range(channels))
    try:
        indices = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"opt_var {opt_var!r}: expected 'all' or comma-separated channel indices") from None
    bad = [i for i in indices if not 0 <= i < channels]
    if bad or not indices:
        raise ValueError(f"opt_var {opt_var!r}: channel indices must lie in 0..{channels - 1}")
    return indices


def constant_learning_rate(lr: float) -> Callable[[tf.Tensor], tf.Tensor]:
    return lambda step: tf.constant(lr, tf.float32)


def cosine_learning_rate(lr: float, total_steps: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """Cosine decay from ``lr`` at step 0 to 0 at ``total_steps`` (0 after it):
    ``lr · (1 + cos(π · min(step / total_steps, 1))) / 2``."""
    if total_steps < 1:
        raise ValueError(f"cosine decay needs total_steps >= 1, got {total_steps}")

    def schedule(step):
        progress = tf.minimum(tf.cast(step, tf.float32) / float(total_steps), 1.0)
        return lr * 0.5 * (1.0 + tf.cos(math.pi * progress))

    return schedule


class VideoPredictionModel(keras.Model):
    """Base class: subclasses set :attr:`model_name`, extend :meth:`default_hparams` and implement
    :meth:`predict_frames` and :meth:`optimization_phases`."""

    #: True for models whose forecasts depend on a random draw (several samples per forecast)
    stochastic: ClassVar[bool] = False
    #: name of the loss component reported as "the" training loss (as in the original's tracked loss)
    tracked_loss: ClassVar[str] = "total_loss"
    #: number of training steps of the run, set by the trainer before it asks for the optimisation phases
    #: (schedules that decay over the whole run need it); None outside a training run
    training_steps: int | None = None

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(**kwargs)
        self.hparams = dict(hparams)
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.context_frames, self.forecast_frames = sequence_frames(hparams)
        self.sequence_length = self.context_frames + self.forecast_frames
        self.target_channels = parse_opt_var(hparams["opt_var"], self.frame_shape[-1])

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        """All accepted hyper-parameters with their defaults (subclasses extend this dict)."""
        return dict(COMMON_HPARAMS)

    # --- inference -------------------------------------------------------------------------------------------
    def predict_frames(self, context: tf.Tensor, training: bool = False, seed: int | None = None) -> tf.Tensor:
        """Forecast ``[B, F, H, W, C]`` from ``context`` ``[B, context_frames, H, W, C]`` (subclasses)."""
        raise NotImplementedError

    def forecast(self, images: tf.Tensor, seed: int | None = None) -> tf.Tensor:
        """Forecast ``[B, F, H, W, C]`` from a batch ``[B, T, H, W, C]`` (or its context only), in inference mode.

        Frames after the context are cut off before the model sees them. Stochastic models draw one sample;
        the same ``seed`` gives the same sample.
        """
        context = images[:, : self.context_frames]
        return self.predict_frames(context, training=False, seed=seed)

    def compiled_forecast(self) -> Callable[..., tf.Tensor]:
        """:meth:`forecast` as one ``tf.function``: ``f(images [B, T, H, W, C], seed=0) → [B, F, H, W, C]``.

        The same forecasts as eager calls of :meth:`forecast` with the same seed, faster (no Python between the
        layers), and the GIL is free while a batch is forecast, so other threads (writing files, computing scores)
        run meanwhile.
        Traced once per batch shape; the seed travels as a tensor, so new seeds do not trace again.
        """
        traced = tf.function(lambda images, seed: self.forecast(images, seed=seed))
        return lambda images, seed=0: traced(tf.convert_to_tensor(images, tf.float32), tf.constant(seed, tf.int64))

    def call(self, images, training=False):
        return self.predict_frames(images[:, : self.context_frames], training=training)

    # --- training --------------------------------------------------------------------------------------------
    def optimization_phases(self) -> list[OptimizationPhase]:
        """The optimiser updates of one training step, in order (subclasses)."""
        raise NotImplementedError

    def target(self, images: tf.Tensor) -> tf.Tensor:
        """The true forecast frames on the target channels, ``[B, F, H, W, len(target_channels)]``."""
        return tf.gather(images[:, self.context_frames:], self.target_channels, axis=-1)

    def select_targets(self, frames: tf.Tensor) -> tf.Tensor:
        """``frames[..., target_channels]``."""
        return tf.gather(frames, self.target_channels, axis=-1)

    def build_variables(self, batch_size: int = 1) -> None:
        """Create every variable (generator and discriminators) by running each phase's loss once on zeros."""
        images = tf.zeros((batch_size, self.sequence_length, *self.frame_shape), tf.float32)
        self.forecast(images)
        for phase in self.optimization_phases():
            phase.loss(images, tf.constant(0, tf.int64))
        # every variable now exists; Keras needs the flag for save_weights/load_weights/count_params
        self.built = True
