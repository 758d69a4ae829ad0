"""``convLSTM``: the encoder-free ConvLSTM of the AMBS GMD paper (original ``VanillaConvLstmVideoPredictionModel``).

One ConvLSTM cell (``num_features`` = 64, ``filter_size`` = 5) at full resolution, then a 1×1 convolution to the
``C`` channels (the head). The cell reads the context frames (zero initial state); its output after the last
context frame gives the first forecast, which is fed back (all channels) to produce the next one, and so on:
``context_frames + F - 1`` steps in all, as the original's ``T - 1``. Training runs the same autoregressive
path as forecasting (no teacher forcing beyond the context).

What the head gives:

* ``residual: false`` (the original, and the default so that runs saved without the key keep their meaning): the
  next frame itself, through a sigmoid for min-max data in [0, 1] (linear for z-scores);
* ``residual: true`` (the ERA5 template's value): the change from the previous frame, linear and zero-initialised,
  so frame ``k`` = frame ``k - 1`` + head(hidden ``k``), frame 0 being the last context frame; an untrained
  model holds the last context frame at every lead. On real hourly 2 m temperature the field formulation could
  not even reproduce its last input within a quick-start budget (+1 h MSE 3-4x that of the last frame held);
  the increment formulation beats the last frame and persistence at +1..3 h
  (``benchmarks/real_era5_convlstm.py``). Increments are not probabilities, so ``residual`` takes ``loss_fun``
  "mse" only.

The loss is ``loss_fun`` ("mse" or "cross_entropy" for Moving MNIST) on the ``opt_var`` channels of the ``F``
forecast frames only. Parameters for ``C`` channels: ``k²·(C + 64)·256 + 256 + 64·C + C`` (429 251 for C = 3).

Fixes: standard ConvLSTM gating by default (``legacy_gates`` reproduces the original double sigmoid); the
increment formulation (``residual``).

Example::

    from video_prediction_tools.models.registry import build_model
    model = build_model("convLSTM", {"context_frames": 12, "sequence_length": 24}, frame_shape=(56, 92, 3))
    forecast = model.forecast(images)          # images [B, 24, 56, 92, 3] → [B, 12, 56, 92, 3]
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from .base import OptimizationPhase, VideoPredictionModel, constant_learning_rate
from .layers import ConvLSTMCell, check_loss_fun, output_activation, reconstruction_loss
from .registry import register


@register("convLSTM")
class ConvLSTM(VideoPredictionModel):
    """ConvLSTM forecaster: reads the context, then feeds its forecasts back (see the module docstring)."""

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(loss_fun="mse", num_features=64, filter_size=5, legacy_gates=False, residual=False)
        return hparams

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        self.loss_fun = check_loss_fun(hparams["loss_fun"])
        for key in ("num_features", "filter_size"):
            if hparams[key] < 1:
                raise ValueError(f"{key} must be a positive integer, got {hparams[key]}")
        self.cell = ConvLSTMCell(hparams["num_features"], hparams["filter_size"],
                                 legacy_gates=hparams["legacy_gates"], name="convlstm_cell")
        self.residual = bool(hparams["residual"])
        if self.residual and self.loss_fun != "mse":
            raise ValueError(f"residual forecasts increments, not probabilities: loss_fun must be 'mse' with "
                             f"residual true, got {self.loss_fun!r}")
        # an increment is linear and starts at zero, so that the untrained model holds the last context frame
        head = {"kernel_initializer": "zeros"} if self.residual else \
            {"activation": output_activation(hparams["normalization"])}
        self.head = keras.layers.Conv2D(self.frame_shape[-1], 1, name="head", **head)

    def predict_frames(self, context: tf.Tensor, training: bool = False, seed: int | None = None) -> tf.Tensor:
        """``[B, F, H, W, C]`` from ``context`` ``[B, context_frames, H, W, C]`` (deterministic; ``seed`` unused)."""
        state = None  # the zero state
        for i in range(self.context_frames):
            hidden, state = self.cell(context[:, i], state)
        frames = [self.output_frame(context[:, -1], hidden)]
        for _ in range(self.forecast_frames - 1):
            hidden, state = self.cell(frames[-1], state)
            frames.append(self.output_frame(frames[-1], hidden))
        return tf.stack(frames, axis=1)

    def output_frame(self, previous: tf.Tensor, hidden: tf.Tensor) -> tf.Tensor:
        """The next frame ``[B, H, W, C]`` from the cell's output ``hidden`` ``[B, H, W, num_features]``: the head's
        field, or with ``residual`` the ``previous`` frame ``[B, H, W, C]`` plus the head's increment."""
        return previous + self.head(hidden) if self.residual else self.head(hidden)

    def forecast_loss(self, images: tf.Tensor, forecast: tf.Tensor) -> tf.Tensor:
        """``loss_fun`` between the true and forecast frames on the target channels."""
        return reconstruction_loss(self.loss_fun, self.target(images), self.select_targets(forecast))

    def optimization_phases(self) -> list[OptimizationPhase]:
        def loss(images, step):
            total = self.forecast_loss(images, self.predict_frames(images[:, :self.context_frames], training=True))
            return total, {"total_loss": total}

        return [OptimizationPhase("generator", loss, lambda: self.trainable_variables,
                                  constant_learning_rate(self.hparams["lr"]),
                                  {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8})]
