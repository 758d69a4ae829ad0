"""``convLSTM_gan``: the convLSTM generator trained against a 3-D conv patch discriminator
(original ``ConvLstmGANVideoPredictionModel``).

Generator: exactly :class:`~.convlstm.ConvLSTM`. Discriminator: :class:`~.layers.PatchDiscriminator3D` (base width
``df_dim`` = 64 as the original) on the ``F`` true or forecast frames, all channels. Each training step runs

1. a discriminator phase: ``(1 - w)·[CE(D(real), 1) + CE(D(fake), 0)]`` on the discriminator's variables,
2. a generator phase: ``(1 - w)·CE(D(fake), 1) + w·recon`` on the generator's variables,

with ``w = recon_weight`` and ``recon`` = ``loss_fun`` on the ``opt_var`` channels of the forecast. Both phases use
Adam(lr, 0.9, 0.999). With ``recon_weight == 1`` the adversarial term vanishes: there is no discriminator and the
model trains as a plain convLSTM (a normal step, unlike the original which then never advanced its step counter).
The discriminator's batch norm uses batch statistics while training and is never used for forecasts (the
original ran it in training mode at test time too).

``loss_fun`` "rmse" of the original template computed the MSE; it is rejected with a message asking for "mse".

Example::

    model = build_model("convLSTM_gan", {"recon_weight": 0.6}, frame_shape=(56, 92, 3))
    discriminator_phase, generator_phase = model.optimization_phases()
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .base import OptimizationPhase, constant_learning_rate
from .convlstm import ConvLSTM
from .layers import PatchDiscriminator3D, sigmoid_cross_entropy
from .registry import register


@register("convLSTM_gan")
class ConvLSTMGan(ConvLSTM):
    """ConvLSTM generator + 3-D patch discriminator, ``(1 - w)·GAN + w·recon`` (see the module docstring)."""

    tracked_loss = "recon_loss"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(recon_weight=0.99, df_dim=64)
        return hparams

    def __init__(self, hparams: dict[str, Any], frame_shape: tuple[int, int, int], **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        self.recon_weight = float(hparams["recon_weight"])
        if not 0.0 <= self.recon_weight <= 1.0:
            raise ValueError(f"recon_weight must lie in [0, 1], got {self.recon_weight}")
        self.adversarial = self.recon_weight < 1.0
        self.discriminator = PatchDiscriminator3D(hparams["df_dim"], name="discriminator") \
            if self.adversarial else None

    def generator_variables(self) -> list:
        return self.cell.trainable_variables + self.head.trainable_variables

    def optimization_phases(self) -> list[OptimizationPhase]:
        w = self.recon_weight
        adam = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}
        learning_rate = constant_learning_rate(self.hparams["lr"])

        def discriminator_loss(images, step):
            fake = tf.stop_gradient(self.predict_frames(images[:, :self.context_frames], training=True))
            real = images[:, self.context_frames:]
            loss_real = sigmoid_cross_entropy(self.discriminator(real, training=True), 1.0)
            loss_fake = sigmoid_cross_entropy(self.discriminator(fake, training=True), 0.0)
            total = (1.0 - w) * (loss_real + loss_fake)
            return total, {"D_loss": total, "D_loss_real": loss_real, "D_loss_fake": loss_fake}

        def generator_loss(images, step):
            fake = self.predict_frames(images[:, :self.context_frames], training=True)
            recon = self.forecast_loss(images, fake)
            if not self.adversarial:
                return recon, {"total_loss": recon, "recon_loss": recon}
            gan = sigmoid_cross_entropy(self.discriminator(fake, training=True), 1.0)
            total = (1.0 - w) * gan + w * recon
            return total, {"total_loss": total, "recon_loss": recon, "G_loss": gan}

        generator = OptimizationPhase("generator", generator_loss, self.generator_variables, learning_rate, adam)
        if not self.adversarial:
            return [generator]
        discriminator = OptimizationPhase("discriminator", discriminator_loss,
                                          lambda: self.discriminator.trainable_variables, learning_rate, adam)
        return [discriminator, generator]
