"""``simvp`` (SimVPv2, gated spatiotemporal attention) and ``tau`` (temporal attention unit): recurrence-free
forecasters of the SimVP family (Gao et al. 2022; Tan et al. 2023), built from ``simvp_blocks``.

All ``F`` forecast frames come out of one pass over the ``T = context_frames`` context frames:

1. encoder, per frame: ``N_S`` blocks (3 x 3 conv, GroupNorm, SiLU) of ``hid_S`` channels, stride 2 on every
   second block, so the latent grid is the frame grid divided by ``2^(N_S//2)``;
2. translator, on the ``T`` latents stacked along the channel axis (``T·hid_S`` channels): ``N_T`` blocks of
   ``hid_T`` channels, the last one reduced to ``F·hid_S`` channels, read as ``F`` frame latents. ``simvp``: gSTA
   blocks (``translator`` "gsta") or the Inception U-Net of SimVP v1 ("incepu"); ``tau``: TAU blocks (attention
   times squeeze-and-excitation);
3. decoder, per forecast frame: ``N_S`` blocks upsampling by depth-to-space, the first encoder block's output of
   a context frame added before the last block (forecast frame ``j`` takes context frame
   ``max(0, T - F + j)``: frame ``j`` for ``j`` when ``F = T``, as published), then a 1 x 1 readout to the ``C``
   data channels (sigmoid for min-max data, linear for z-scores).

Grids whose sides are not multiples of ``2^(N_S//2)`` (e.g. 56 x 92 with more than two halvings) are padded by
mirroring inside the model and the forecast is cropped back, so the data is never changed.

Loss: ``loss_fun`` on the ``opt_var`` channels of the forecast; ``tau`` adds ``diff_div_weight`` (0.1) times the
differential divergence of the frame-to-frame changes (``simvp_blocks.differential_divergence``). The learning
rate follows ``lr_schedule``: "cosine" decays from ``lr`` to 0 over the training run (constant ``lr`` when the
run length is unknown, e.g. outside the trainer), "constant" keeps ``lr``.

Parameters (``d = T·hid_S``, ``h = hid_T``, ``S = hid_S``, ``C`` channels, ``N_S`` = 2, gSTA): encoder
``(9·C·S + 3S) + (9S² + 3S)``; decoder ``(9·S·4S + 4S + 2S) + (9S² + 3S) + (S·C + C)``; translator: the
:class:`simvp_blocks.MetaBlock` counts at ``d`` (reduced to ``h``), ``h`` ..., ``h`` (reduced to ``F·S``).

Example::

    from video_prediction_tools.models.registry import build_model
    model = build_model("simvp", {"context_frames": 12, "sequence_length": 24}, frame_shape=(56, 92, 3))
    forecast = model.forecast(images)          # images [B, 24, 56, 92, 3] -> [B, 12, 56, 92, 3]
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .base import OptimizationPhase, VideoPredictionModel, constant_learning_rate, cosine_learning_rate
from .layers import check_loss_fun, crop_frames, output_activation, pad_to_multiple, reconstruction_loss
from .registry import register
from .simvp_blocks import (InceptionTranslator, MetaTranslator, SpatialDecoder, SpatialEncoder,
                           differential_divergence)

#: hyper-parameters shared by simvp and tau, defaults of the published weather configuration
FAMILY_HPARAMS: dict[str, Any] = {"loss_fun": "mse", "hid_S": 32, "hid_T": 256, "N_S": 2, "N_T": 8,
                                  "drop_path": 0.0, "lr_schedule": "cosine"}


class SimVPFamily(VideoPredictionModel):
    """Encoder, translator, decoder (see the module docstring); subclasses choose the translator."""

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        self.loss_fun = check_loss_fun(hparams["loss_fun"])
        if not 0.0 <= hparams["drop_path"] < 1.0:
            raise ValueError(f"drop_path must lie in [0, 1), got {hparams['drop_path']}")
        hid_s, blocks = hparams["hid_S"], hparams["N_S"]
        self.grid_multiple = 2 ** (blocks // 2)
        self.encoder = SpatialEncoder(hid_s, blocks, name="encoder")
        self.translator = self.make_translator(self.context_frames * hid_s, self.forecast_frames * hid_s)
        self.decoder = SpatialDecoder(hid_s, blocks, self.frame_shape[-1], output_activation(hparams["normalization"]),
                                      name="decoder")
        # the context frame whose first-block features each forecast frame's decoder adds (the skip)
        self.skip_frames = [max(0, self.context_frames - self.forecast_frames + j) for j in range(self.forecast_frames)]

    def make_translator(self, in_dim: int, out_dim: int):
        """The translator from ``in_dim`` stacked context channels to ``out_dim`` stacked forecast channels."""
        raise NotImplementedError

    def predict_frames(self, context: tf.Tensor, training: bool = False, seed: int | None = None) -> tf.Tensor:
        """``[B, F, H, W, C]`` from ``context`` ``[B, T, H, W, C]`` in one pass (``seed`` unused: drop path is
        active only in training)."""
        height, width, channels = self.frame_shape
        frames = pad_to_multiple(context, self.grid_multiple)
        padded_h, padded_w = frames.shape[2], frames.shape[3]
        batch, hid = tf.shape(frames)[0], self.hparams["hid_S"]
        latent, skip = self.encoder(tf.reshape(frames, (-1, padded_h, padded_w, channels)))
        lat_h, lat_w = latent.shape[1], latent.shape[2]
        # [B·T, h, w, S] -> [B, h, w, T·S]: the context latents stacked along channels, frame-major
        stacked = tf.reshape(tf.transpose(tf.reshape(latent, (batch, self.context_frames, lat_h, lat_w, hid)),
                                          (0, 2, 3, 1, 4)), (batch, lat_h, lat_w, self.context_frames * hid))
        translated = self.translator(stacked, training=training)
        future = tf.reshape(tf.transpose(tf.reshape(translated, (batch, lat_h, lat_w, self.forecast_frames, hid)),
                                         (0, 3, 1, 2, 4)), (-1, lat_h, lat_w, hid))
        skip = tf.gather(tf.reshape(skip, (batch, self.context_frames, padded_h, padded_w, hid)), self.skip_frames,
                         axis=1)
        decoded = self.decoder(future, tf.reshape(skip, (-1, padded_h, padded_w, hid)))
        decoded = tf.reshape(decoded, (batch, self.forecast_frames, padded_h, padded_w, channels))
        return crop_frames(decoded, height, width)

    def forecast_loss(self, images: tf.Tensor, forecast: tf.Tensor) -> dict[str, tf.Tensor]:
        """Named loss terms, ``total_loss`` first; here only ``loss_fun`` on the target channels."""
        total = reconstruction_loss(self.loss_fun, self.target(images), self.select_targets(forecast))
        return {"total_loss": total}

    def learning_rate_schedule(self):
        """``lr`` decayed by a cosine over :attr:`training_steps` ("cosine" and a known run length), else
        constant."""
        if self.hparams["lr_schedule"] == "cosine" and self.training_steps:
            return cosine_learning_rate(self.hparams["lr"], self.training_steps)
        return constant_learning_rate(self.hparams["lr"])

    def optimization_phases(self) -> list[OptimizationPhase]:
        def loss(images, step):
            parts = self.forecast_loss(images, self.predict_frames(images[:, :self.context_frames], training=True))
            return parts["total_loss"], parts

        return [OptimizationPhase("generator", loss, lambda: self.trainable_variables, self.learning_rate_schedule(),
                                  {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8})]


@register("simvp")
class SimVP(SimVPFamily):
    """SimVPv2: gSTA translator (``translator`` "gsta"), or SimVP v1's Inception U-Net ("incepu", ``N_T`` >= 2)."""

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(FAMILY_HPARAMS, translator="gsta")
        return hparams

    def make_translator(self, in_dim: int, out_dim: int):
        hp = self.hparams
        if hp["translator"] == "incepu":
            if hp["N_T"] < 2:
                raise ValueError(f"translator 'incepu' needs N_T >= 2, got {hp['N_T']}")
            return InceptionTranslator(hp["hid_T"], out_dim, hp["N_T"], name="translator")
        return MetaTranslator(in_dim, hp["hid_T"], out_dim, hp["N_T"], gated=True, drop_path=hp["drop_path"],
                              name="translator")


@register("tau")
class TAU(SimVPFamily):
    """TAU: translator of temporal attention units; the loss adds the differential divergence regulariser."""

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(FAMILY_HPARAMS, diff_div_weight=0.1)
        return hparams

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        if hparams["diff_div_weight"] < 0:
            raise ValueError(f"diff_div_weight must be >= 0, got {hparams['diff_div_weight']}")

    def make_translator(self, in_dim: int, out_dim: int):
        hp = self.hparams
        return MetaTranslator(in_dim, hp["hid_T"], out_dim, hp["N_T"], gated=False, drop_path=hp["drop_path"],
                              name="translator")

    def forecast_loss(self, images: tf.Tensor, forecast: tf.Tensor) -> dict[str, tf.Tensor]:
        """``loss_fun`` plus ``diff_div_weight`` times the differential divergence, on the target channels."""
        target, prediction = self.target(images), self.select_targets(forecast)
        reconstruction = reconstruction_loss(self.loss_fun, target, prediction)
        divergence = differential_divergence(prediction, target)
        return {"total_loss": reconstruction + self.hparams["diff_div_weight"] * divergence,
                "reconstruction_loss": reconstruction, "differential_divergence": divergence}
