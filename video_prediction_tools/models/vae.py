"""``vae``: the per-step convolutional VAE (original ``VanillaVAEVideoPredictionModel``), made a true forecaster.

Forecast step ``j`` (0-based, ``F`` steps) has its own, unshared conv VAE that maps the previous frame to the next:
step 0 reads the last context frame, step ``j > 0`` reads the model's own forecast ``j - 1`` (the original fed the
TRUE previous frame at every step, a 1-h-ahead predictor that saw the future). Each VAE:

* encoder: conv 3×3 s2 8 relu → conv 3×3 s1 8 relu → conv 3×3 s2 8 relu → flatten → linear ``μ`` and
  ``log σ²`` (``nz`` each; the original passed both through a relu, forcing σ ≥ 1);
* ``z = μ + σ·ε``, ``ε ~ N(0, 1)`` (seeded at inference: the model is stochastic);
* decoder: dense to ``(H/4)·(W/4)·8`` relu → transposed conv 3×3 s2 8 relu → transposed conv 3×3 s1 8 relu →
  transposed conv 3×3 s2 ``C`` channels (the original: always 3), sigmoid for min-max data (the original: relu),
  linear for z-scores.

Grids whose sides are not multiples of 4 are padded by mirroring the bottom/right edge and the output is cropped.
The original's VAEs for the context steps only ever predicted context frames, which no loss or forecast uses
except through their KL term; they are left out.
Loss: ``weight_recon·recon + KL`` with ``recon`` = ``loss_fun`` on the ``opt_var`` channels of the ``F`` forecasts
and ``KL = mean over batch and steps of Σ_nz -½(1 + log σ² − μ² − σ²)`` (the original summed over time).

Example::

    model = build_model("vae", {"nz": 16}, frame_shape=(56, 92, 3))
    member = model.forecast(images, seed=3)        # one sample; the same seed gives the same sample
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from .base import OptimizationPhase, VideoPredictionModel, constant_learning_rate
from .layers import check_loss_fun, crop_frames, output_activation, pad_to_multiple, reconstruction_loss
from .registry import register

#: channels of every hidden conv layer of the original VAE
_HIDDEN = 8


class FrameVAE(keras.layers.Layer):
    """One conv VAE: frame ``[B, H, W, C]`` (H, W multiples of 4) → next frame, ``μ``, ``log σ²`` ``[B, nz]``."""

    def __init__(self, frame_shape: tuple[int, int, int], nz: int, activation: str | None, **kwargs):
        super().__init__(**kwargs)
        height, width, channels = frame_shape
        conv = lambda stride, n=_HIDDEN: keras.layers.Conv2D(n, 3, strides=stride, padding="same",  # noqa: E731
                                                             activation="relu")
        deconv = lambda stride, n=_HIDDEN, act="relu": keras.layers.Conv2DTranspose(  # noqa: E731
            n, 3, strides=stride, padding="same", activation=act)
        self.encoder = [conv(2), conv(1), conv(2), keras.layers.Flatten()]
        self.z_mu = keras.layers.Dense(nz, name="z_mu")
        self.z_log_sigma_sq = keras.layers.Dense(nz, name="z_log_sigma_sq")
        self.decoder = [keras.layers.Dense((height // 4) * (width // 4) * _HIDDEN, activation="relu"),
                        keras.layers.Reshape((height // 4, width // 4, _HIDDEN)),
                        deconv(2), deconv(1), deconv(2, channels, activation)]

    def call(self, frame, noise):
        x = frame
        for layer in self.encoder:
            x = layer(x)
        mu, log_sigma_sq = self.z_mu(x), self.z_log_sigma_sq(x)
        x = mu + tf.exp(0.5 * log_sigma_sq) * noise
        for layer in self.decoder:
            x = layer(x)
        return x, mu, log_sigma_sq


@register("vae")
class VAE(VideoPredictionModel):
    """Autoregressive chain of per-step conv VAEs (see the module docstring)."""

    stochastic = True
    tracked_loss = "recon_loss"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(loss_fun="mse", nz=16, weight_recon=1.0)
        return hparams

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        self.loss_fun = check_loss_fun(hparams["loss_fun"])
        self.nz = int(hparams["nz"])
        if self.nz < 1:
            raise ValueError(f"nz must be a positive integer, got {self.nz}")
        height, width, channels = self.frame_shape
        padded = (height + -height % 4, width + -width % 4, channels)
        activation = output_activation(hparams["normalization"])
        self.steps = [FrameVAE(padded, self.nz, activation, name=f"sq_{j}") for j in range(self.forecast_frames)]

    def _noise(self, batch, step: int, seed: int | None) -> tf.Tensor:
        shape = tf.stack([batch, self.nz])
        if seed is None:
            return tf.random.normal(shape)
        return tf.random.stateless_normal(shape, seed=tf.stack([tf.cast(seed, tf.int64), tf.constant(step, tf.int64)]))

    def run_chain(self, context: tf.Tensor, seed: int | None = None):
        """Forecast ``[B, F, H, W, C]`` and the stacked ``μ``, ``log σ²`` ``[B, F, nz]``."""
        height, width, _ = self.frame_shape
        batch = tf.shape(context)[0]
        frame = context[:, -1]
        frames, mus, log_sigma_sqs = [], [], []
        for j, vae in enumerate(self.steps):
            # re-pad the cropped forecast so that every step sees the same kind of input as the first one
            padded, mu, log_sigma_sq = vae(pad_to_multiple(frame, 4), self._noise(batch, j, seed))
            frame = crop_frames(padded, height, width)
            frames.append(frame)
            mus.append(mu)
            log_sigma_sqs.append(log_sigma_sq)
        return tf.stack(frames, axis=1), tf.stack(mus, axis=1), tf.stack(log_sigma_sqs, axis=1)

    def predict_frames(self, context: tf.Tensor, training: bool = False, seed: int | None = None) -> tf.Tensor:
        return self.run_chain(context, seed)[0]

    def optimization_phases(self) -> list[OptimizationPhase]:
        def loss(images, step):
            forecast, mu, log_sigma_sq = self.run_chain(images[:, :self.context_frames])
            recon = reconstruction_loss(self.loss_fun, self.target(images), self.select_targets(forecast))
            kl_per_step = -0.5 * tf.reduce_sum(1.0 + log_sigma_sq - tf.square(mu) - tf.exp(log_sigma_sq), axis=-1)
            latent = tf.reduce_mean(kl_per_step)
            total = self.hparams["weight_recon"] * recon + latent
            return total, {"total_loss": total, "recon_loss": recon, "latent_loss": latent}

        return [OptimizationPhase("vae", loss, lambda: self.trainable_variables,
                                  constant_learning_rate(self.hparams["lr"]),
                                  {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8})]
