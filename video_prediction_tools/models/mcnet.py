"""``mcnet``: Motion-Content network (Villegas et al. 2017, original ``McNetVideoPredictionModel``), working.

Per forecast step, with ``g = gf_dim`` (64) and frames padded by mirroring to multiples of 8:

* motion encoder on the latest frame difference ``x_t − x_{t−1}``: conv5×5 g → pool → conv5×5 2g → pool →
  conv7×7 4g → pool → ConvLSTM (3×3, 4g features, at H/8 × W/8) carrying the dynamics over time;
* content encoder on the latest frame: (conv3×3 g)×2 → pool → (conv3×3 2g)×2 → pool → (conv3×3 4g)×3 → pool;
* combination of both codes: conv3×3 4g → 2g → 4g;
* residuals per scale: two conv3×3 on the concatenated motion and content features before each pooling;
* decoder: zero-filled 2× unpooling + residual, transposed convs (4g, 4g, 2g | 2g, g | g, C), last activation
  sigmoid for min-max data (the original ended in tanh ∈ (−1, 1) against data in [0, 1]), linear for z-scores.

The motion encoder reads the ``context_frames − 1`` context differences; then each forecast ``x̂`` gives the next
difference ``x̂ − x_prev`` and becomes ``x_prev`` (autoregressive). All convolutions use relu, SAME padding.
Loss: ``alpha·(L_p + L_gdl) + beta·L_GAN`` on the ``opt_var`` channels of the forecasts; ``L_p`` = MSE,
``L_gdl`` = mean absolute difference of the absolute spatial gradients (exponent 1). With ``beta > 0`` a
discriminator (conv5×5 s2: df, 2df+BN, 4df+BN, 8df+BN, lrelu 0.2, then linear) judges the context concatenated along
channels with the true or the forecast frames, and is trained first in each step; both phases use Adam(lr, β1=0.5).
With ``beta == 0`` (default) there is no discriminator.

Example::

    model = build_model("mcnet", {"context_frames": 12, "sequence_length": 24}, frame_shape=(56, 92, 3))
    forecast = model.forecast(images)          # [B, 12, 56, 92, 3]; 56×92 runs padded to 56×96
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from .base import OptimizationPhase, VideoPredictionModel, constant_learning_rate
from .layers import ConvLSTMCell, crop_frames, output_activation, pad_to_multiple, sigmoid_cross_entropy, unpool2x
from .registry import register


def _conv(filters: int, kernel: int, name: str | None = None, transpose: bool = False,
          activation: str | None = "relu",
          initializer: keras.initializers.Initializer | None = None) -> keras.layers.Layer:
    layer = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    # He initialisation keeps the signal alive through the ~17 stacked relu convs (with Glorot the output
    # often starts, and stays, constant)
    initializer = initializer or ("he_uniform" if activation == "relu" else "glorot_uniform")
    return layer(filters, kernel, padding="same", activation=activation, kernel_initializer=initializer, name=name)


def _apply(layers, x):
    for layer in layers:
        x = layer(x)
    return x


class Encoders(keras.layers.Layer):
    """Motion and content encoders, their combination and the residual convs; returns the combined code
    ``[B, H/8, W/8, 4g]``, the residuals at full, 1/2 and 1/4 resolution, and the new ConvLSTM state."""

    def __init__(self, gf_dim: int, **kwargs):
        super().__init__(**kwargs)
        g = gf_dim
        self.pool = keras.layers.MaxPooling2D(2)
        self.motion = [[_conv(g, 5)], [_conv(2 * g, 5)], [_conv(4 * g, 7)]]
        self.motion_lstm = ConvLSTMCell(4 * g, 3, name="motion_lstm")
        self.content = [[_conv(g, 3), _conv(g, 3)], [_conv(2 * g, 3), _conv(2 * g, 3)],
                        [_conv(4 * g, 3), _conv(4 * g, 3), _conv(4 * g, 3)]]
        self.combination = [_conv(4 * g, 3), _conv(2 * g, 3), _conv(4 * g, 3)]
        self.residual = [[_conv(n, 3), _conv(n, 3)] for n in (g, 2 * g, 4 * g)]

    def encode_motion(self, difference, state):
        """Motion features before each pooling and the updated ConvLSTM state."""
        features, x = [], difference
        for block in self.motion:
            x = _apply(block, x)
            features.append(x)
            x = self.pool(x)
        hidden, state = self.motion_lstm(x, state)
        return features, hidden, state

    def zero_state(self, frame):
        return self.motion_lstm.zero_state(self.pool(self.pool(self.pool(frame))))

    def call(self, motion_features, motion_hidden, frame):
        content_features, x = [], frame
        for block in self.content:
            x = _apply(block, x)
            content_features.append(x)
            x = self.pool(x)
        code = _apply(self.combination, tf.concat([motion_hidden, x], axis=-1))
        residuals = [_apply(block, tf.concat([m, c], axis=-1))
                     for block, m, c in zip(self.residual, motion_features, content_features)]
        return code, residuals


class Decoder(keras.layers.Layer):
    """Unpool + residual + transposed convs, three times: code at H/8 → frame ``[B, H, W, C]``."""

    def __init__(self, gf_dim: int, channels: int, activation: str | None, **kwargs):
        super().__init__(**kwargs)
        g = gf_dim
        deconv = lambda n, act="relu": _conv(n, 3, transpose=True, activation=act)  # noqa: E731
        # The output layer starts small (Glorot scaled by 0.1 in variance): each forecast is fed back through
        # encoders and decoder, and with Glorot output weights every step of the rollout amplified the frame
        # 2-4x (standard deviation of the 12th forecast 10^3-10^6 at gf_dim 16 on z-scores); the first updates
        # then shrank the network to a near-uniform field. Starting small, the rollout decays towards the mean
        # and the gain of the loop grows only as far as the loss asks.
        output = _conv(channels, 3, transpose=True, activation=activation,
                       initializer=keras.initializers.VarianceScaling(0.1, "fan_avg", "uniform"))
        self.stages = [[deconv(4 * g), deconv(4 * g), deconv(2 * g)],  # at H/4
                       [deconv(2 * g), deconv(g)],                    # at H/2
                       [deconv(g), output]]                           # at H

    def call(self, code, residuals):
        x = code
        for stage, residual in zip(self.stages, reversed(residuals)):
            x = _apply(stage, unpool2x(x) + residual)
        return x


class FrameDiscriminator(keras.layers.Layer):
    """MCnet discriminator on ``[B, H, W, T·C]``: conv5×5 s2 (df, 2df+BN, 4df+BN, 8df+BN), lrelu 0.2, linear."""

    def __init__(self, df_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.convs = [keras.layers.Conv2D(df_dim * m, 5, strides=2, padding="same") for m in (1, 2, 4, 8)]
        self.norms = [keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5) for _ in range(3)]
        self.flatten = keras.layers.Flatten()
        self.logits = keras.layers.Dense(1)

    def call(self, frames, training=False):
        x = tf.nn.leaky_relu(self.convs[0](frames), 0.2)
        for conv, norm in zip(self.convs[1:], self.norms):
            x = tf.nn.leaky_relu(norm(conv(x), training=training), 0.2)
        return self.logits(self.flatten(x))


def gradient_difference_loss(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Mean of ``| |∂y| − |∂ŷ| |`` over both grid directions (axes -3 and -2), gdl exponent 1."""
    def grads(x):
        return (tf.abs(x[..., 1:, :, :] - x[..., :-1, :, :]), tf.abs(x[..., :, 1:, :] - x[..., :, :-1, :]))

    (true_y, true_x), (pred_y, pred_x) = grads(target), grads(prediction)
    return tf.reduce_mean(tf.abs(true_y - pred_y)) + tf.reduce_mean(tf.abs(true_x - pred_x))


def _stack_channels(frames: tf.Tensor) -> tf.Tensor:
    """``[B, T, H, W, C]`` → ``[B, H, W, T·C]``."""
    batch_time_last = tf.transpose(frames, (0, 2, 3, 1, 4))
    shape = frames.shape
    return tf.reshape(batch_time_last, (-1, shape[2], shape[3], shape[1] * shape[4]))


@register("mcnet")
class McNet(VideoPredictionModel):
    """MCnet forecaster (see the module docstring)."""

    tracked_loss = "L_p"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(gf_dim=64, df_dim=64, alpha=1.0, beta=0.0)
        return hparams

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        if self.context_frames < 2:
            raise ValueError(f"context_frames ({self.context_frames}) must be at least 2: mcnet's motion encoder "
                             "reads frame differences")
        for key in ("gf_dim", "df_dim"):
            if hparams[key] < 1:
                raise ValueError(f"{key} must be a positive integer, got {hparams[key]}")
        if hparams["beta"] < 0 or hparams["alpha"] < 0:
            raise ValueError(f"alpha and beta must not be negative, got {hparams['alpha']}, {hparams['beta']}")
        self.encoders = Encoders(hparams["gf_dim"], name="encoders")
        self.decoder = Decoder(hparams["gf_dim"], self.frame_shape[-1], output_activation(hparams["normalization"]),
                               name="decoder")
        self.adversarial = hparams["beta"] > 0
        self.discriminator = FrameDiscriminator(hparams["df_dim"], name="discriminator") if self.adversarial \
            else None

    def predict_frames(self, context: tf.Tensor, training: bool = False, seed: int | None = None) -> tf.Tensor:
        """``[B, F, H, W, C]`` from ``context`` ``[B, context_frames, H, W, C]`` (deterministic)."""
        height, width, _ = self.frame_shape
        padded = pad_to_multiple(context, 8)
        state = self.encoders.zero_state(padded[:, 0])
        for t in range(1, self.context_frames):
            motion, hidden, state = self.encoders.encode_motion(padded[:, t] - padded[:, t - 1], state)
        previous, frames = padded[:, -1], []
        for j in range(self.forecast_frames):
            code, residuals = self.encoders(motion, hidden, previous)
            frame = crop_frames(self.decoder(code, residuals), height, width)
            frames.append(frame)
            if j + 1 < self.forecast_frames:
                frame = pad_to_multiple(frame, 8)
                motion, hidden, state = self.encoders.encode_motion(frame - previous, state)
                previous = frame
        return tf.stack(frames, axis=1)

    def generator_variables(self) -> list:
        return self.encoders.trainable_variables + self.decoder.trainable_variables

    def optimization_phases(self) -> list[OptimizationPhase]:
        alpha, beta = self.hparams["alpha"], self.hparams["beta"]
        adam = {"beta_1": 0.5, "beta_2": 0.999, "epsilon": 1e-8}
        learning_rate = constant_learning_rate(self.hparams["lr"])

        def judge(images, future):
            clip = tf.concat([images[:, :self.context_frames], future], axis=1)
            return self.discriminator(_stack_channels(clip), training=True)

        def discriminator_loss(images, step):
            fake = tf.stop_gradient(self.predict_frames(images[:, :self.context_frames], training=True))
            loss_real = sigmoid_cross_entropy(judge(images, images[:, self.context_frames:]), 1.0)
            loss_fake = sigmoid_cross_entropy(judge(images, fake), 0.0)
            total = loss_real + loss_fake
            return total, {"d_loss": total, "d_loss_real": loss_real, "d_loss_fake": loss_fake}

        def generator_loss(images, step):
            forecast = self.predict_frames(images[:, :self.context_frames], training=True)
            target, prediction = self.target(images), self.select_targets(forecast)
            l_p = tf.reduce_mean(tf.square(target - prediction))
            l_gdl = gradient_difference_loss(target, prediction)
            total = alpha * (l_p + l_gdl)
            parts = {"L_p": l_p, "L_gdl": l_gdl}
            if self.adversarial:
                parts["L_GAN"] = sigmoid_cross_entropy(judge(images, forecast), 1.0)
                total += beta * parts["L_GAN"]
            parts["total_loss"] = total
            return total, parts

        generator = OptimizationPhase("generator", generator_loss, self.generator_variables, learning_rate, adam)
        if not self.adversarial:
            return [generator]
        discriminator = OptimizationPhase("discriminator", discriminator_loss,
                                          lambda: self.discriminator.trainable_variables, learning_rate, adam)
        return [discriminator, generator]
