"""SAVP (Stochastic Adversarial Video Prediction, Lee et al. 2018), the GMD paper's best model, and its ablations
``ours_gan`` (GAN, no VAE terms) and ``ours_vae_l1`` (VAE + L1, no GAN) as hyper-parameter presets of one class.

Behaviour as the original AMBS SAVP code (``SAVPVideoPredictionModel``), with these fixes:

* forecasts (:meth:`SAVP.forecast`, validation, postprocessing) come from the prior (z ~ N(0, I) after the
  context), never from the posterior reconstruction, and only see the context frames;
* no extra prior samples are generated in every training step; callers draw as many samples as they want by
  calling ``forecast(images, seed=k)`` for k = 0, 1, ... (independent draws, reproducible per seed);
* the inputs are images only (no ``T_start``), for every variant;
* deprecated and dead hyper-parameters of the original are not accepted (the registry rejects unknown keys with
  the list of accepted ones).

Training is two optimisation phases per step: the discriminators (when a GAN term is on), then the generator
(which sees the discriminators after their update, as the original). The generator's L1/L2 losses are on the
posterior reconstructions of all T-1 steps (as the original; it is the tracked ``gen_l1_loss``).

Example::

    from video_prediction_tools.models.registry import build_model
    model = build_model("savp", {"sequence_length": 24, "ngf": 8}, frame_shape=(56, 92, 3))
    samples = [model.forecast(images, seed=k) for k in range(3)]      # 3 draws, each [B, 12, 56, 92, 3]
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from .base import OptimizationPhase, VideoPredictionModel
from .registry import register
from .savp_blocks import (MIN_CLIP_LENGTH, FrameGenerator, PosteriorEncoder, VideoDiscriminator, cosine_distance,
                          gan_loss, ground_truth_probability, kl_divergence, kl_weight, learning_rate)

#: defaults of the original code (VideoPredictionModel, then SAVP's own), restricted to what is implemented
SAVP_DEFAULTS: dict[str, Any] = {
    "batch_size": 16,
    "lr": 0.001,
    "end_lr": 0.0,
    "decay_steps": [200000, 300000],
    "lr_boundaries": [0],
    "max_epochs": 35,
    "beta1": 0.9,
    "beta2": 0.999,
    "clip_length": 10,
    "l1_weight": 1.0,
    "l2_weight": 0.0,
    "video_sn_gan_weight": 0.0,
    "video_sn_vae_gan_weight": 0.0,
    "gan_feature_cdist_weight": 0.0,
    "vae_gan_feature_cdist_weight": 0.0,
    "gan_loss_type": "LSGAN",
    "kl_weight": 0.0,
    "kl_anneal": "linear",
    "kl_anneal_k": -1.0,
    "kl_anneal_steps": [50000, 100000],
    "n_layers": 3,
    "ndf": 32,
    "ngf": 32,
    "nef": 64,
    "nz": 8,
    "use_rnn_z": True,
    "use_same_discriminator": False,
    "kernel_size": [5, 5],
    "num_transformed_images": 4,
    "prev_image_background": True,
    "first_image_background": True,
    "generate_scratch_image": True,
    "dependent_mask": True,
    "schedule_sampling": "inverse_sigmoid",
    "schedule_sampling_k": 900.0,
    "schedule_sampling_steps": [0, 100000],
}

#: the ERA5 hyper-parameter templates of the GMD paper; they are also the registry presets of the three names
SAVP_TEMPLATE = {"batch_size": 32, "lr": 0.0002, "beta1": 0.5, "beta2": 0.999, "l1_weight": 100.0,
                 "l2_weight": 0.0, "kl_weight": 0.01, "video_sn_vae_gan_weight": 0.1, "video_sn_gan_weight": 0.1,
                 "vae_gan_feature_cdist_weight": 10.0, "gan_feature_cdist_weight": 0.0, "nz": 16,
                 "max_epochs": 4, "context_frames": 12, "opt_var": "0", "decay_steps": [3000, 9000],
                 "end_lr": 8e-08}
OURS_GAN_TEMPLATE = {"batch_size": 16, "lr": 0.0002, "beta1": 0.5, "beta2": 0.999, "l1_weight": 100.0,
                     "l2_weight": 0.0, "kl_weight": 0.0, "video_sn_vae_gan_weight": 0.0, "video_sn_gan_weight": 0.1,
                     "vae_gan_feature_cdist_weight": 0.0, "gan_feature_cdist_weight": 10.0, "nz": 32,
                     "max_epochs": 2, "context_frames": 12}
OURS_VAE_L1_TEMPLATE = {"batch_size": 32, "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "l1_weight": 1.0,
                        "l2_weight": 0.0, "kl_weight": 1e-05, "video_sn_vae_gan_weight": 0.0,
                        "video_sn_gan_weight": 0.0, "nz": 32, "max_epochs": 2, "context_frames": 12}

_CHOICES = {"gan_loss_type": ("LSGAN", "GAN", "SNGAN"), "kl_anneal": ("none", "sigmoid", "linear"),
            "schedule_sampling": ("none", "inverse_sigmoid", "linear")}


def _weighted_sum(terms, total_name):
    """``(Σ weight · loss, {name: loss, total_name: Σ})`` of ``terms`` ``{name: (loss, weight)}``."""
    total = tf.add_n([weight * loss for loss, weight in terms.values()])
    parts = {name: loss for name, (loss, _) in terms.items()}
    parts[total_name] = total
    return total, parts


@register("ours_vae_l1", preset=OURS_VAE_L1_TEMPLATE)
@register("ours_gan", preset=OURS_GAN_TEMPLATE)
@register("savp", preset=SAVP_TEMPLATE)
class SAVP(VideoPredictionModel):
    """SAVP generator (+ posterior encoder, + video discriminators when their loss weights are non-zero).

    Shapes: ``images`` ``[B, T, H, W, C]``; internally the generator unrolls T-1 steps, step t predicting frame
    t+1 from frame t (truth in the context, scheduled sampling or its own prediction after it).
    """

    stochastic = True
    tracked_loss = "gen_l1_loss"

    @classmethod
    def default_hparams(cls) -> dict[str, Any]:
        hparams = super().default_hparams()
        hparams.update(SAVP_DEFAULTS)
        return hparams

    def __init__(self, hparams: dict[str, Any], frame_shape, **kwargs):
        super().__init__(hparams, frame_shape, **kwargs)
        hp = self.hparams
        self._check_hparams(hp)
        height, width, _ = self.frame_shape
        self.nz = int(hp["nz"])
        self.stochastic = self.nz > 0  # nz = 0: deterministic, one sample is enough
        self.clip_length = min(int(hp["clip_length"]), self.sequence_length - 1)
        self.generator = FrameGenerator(self.frame_shape, hp["ngf"], hp["num_transformed_images"],
                                        hp["kernel_size"][0], hp["prev_image_background"],
                                        hp["first_image_background"], hp["generate_scratch_image"],
                                        hp["dependent_mask"], name="generator")
        if self.nz:
            self.posterior = PosteriorEncoder(hp["nef"], self.nz, hp["n_layers"], name="posterior")
            self.z_rnn = keras.layers.LSTMCell(self.nz, name="z_rnn") if hp["use_rnn_z"] else None
        uses_gan = bool(hp["video_sn_gan_weight"] or hp["gan_feature_cdist_weight"])
        uses_vae_gan = bool(self.nz and (hp["video_sn_vae_gan_weight"] or hp["vae_gan_feature_cdist_weight"]))
        self.video_discriminator = VideoDiscriminator(hp["ndf"], name="video_discriminator") if uses_gan else None
        if uses_vae_gan and hp["use_same_discriminator"] and uses_gan:
            self.vae_discriminator = self.video_discriminator
        elif uses_vae_gan:
            self.vae_discriminator = VideoDiscriminator(hp["ndf"], name="vae_discriminator")
        else:
            self.vae_discriminator = None
        if (uses_gan or uses_vae_gan) and self.clip_length < MIN_CLIP_LENGTH:
            raise ValueError(f"the video discriminator needs clips of at least {MIN_CLIP_LENGTH} frames: "
                             f"clip_length ({hp['clip_length']}) and sequence_length - 1 "
                             f"({self.sequence_length - 1}) must both be >= {MIN_CLIP_LENGTH}")

    def _check_hparams(self, hp):
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be >= 1, got {self.context_frames}")
        for key, choices in _CHOICES.items():
            if hp[key] not in choices:
                raise ValueError(f"{key} {hp[key]!r}: expected one of {', '.join(choices)}")
        for key in ("ngf", "ndf", "nef", "n_layers"):
            if hp[key] < 1:
                raise ValueError(f"{key} must be >= 1, got {hp[key]}")
        if hp["nz"] < 0 or hp["num_transformed_images"] < 0:
            raise ValueError("nz and num_transformed_images must be >= 0")
        if hp["kernel_size"][0] != hp["kernel_size"][1] or hp["kernel_size"][0] % 2 == 0:
            raise ValueError(f"kernel_size {hp['kernel_size']}: the CDNA kernel must be square with an odd size")
        if hp["kl_weight"] and hp["kl_anneal"] == "sigmoid" and hp["kl_anneal_k"] <= 0:
            raise ValueError("kl_anneal 'sigmoid' needs kl_anneal_k > 0")
        if hp["schedule_sampling"] == "inverse_sigmoid" and hp["schedule_sampling_k"] <= 0:
            raise ValueError("schedule_sampling 'inverse_sigmoid' needs schedule_sampling_k > 0")
        linear_schedules = {"kl_anneal_steps": hp["kl_weight"] and hp["kl_anneal"] == "linear",
                            "schedule_sampling_steps": hp["schedule_sampling"] == "linear"}
        for key, used in linear_schedules.items():
            if used and hp[key][1] <= hp[key][0]:
                raise ValueError(f"{key} {list(hp[key])}: the end must come after the start")
        smallest = 2 ** max(hp["n_layers"], 3)  # the posterior encoder and the discriminator halve the grid 3 times
        if min(self.frame_shape[:2]) < smallest:
            raise ValueError(f"frames of {self.frame_shape[0]}x{self.frame_shape[1]} points are too small for "
                             f"SAVP: both sides must be >= {smallest}")

    def build_variables(self, batch_size: int = 1) -> None:
        super().build_variables(batch_size)
        self.built = True

    # --- generator ---------------------------------------------------------------------------------------------
    def _normal(self, shape, seed, stream):
        """N(0, 1) noise; reproducible from ``seed`` (stream separates the draws of one forecast)."""
        if seed is None:
            return tf.random.normal(shape)
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])
        return tf.random.stateless_normal(shape, seed=seed)

    def _posterior(self, frames):
        """μ and log σ² ``[B, N-1, nz]`` of q(z_t | x_t, x_t+1) for the N frames of ``frames``."""
        pairs = tf.concat([frames[:, :-1], frames[:, 1:]], axis=-1)
        steps = pairs.shape[1]
        flat = tf.reshape(pairs, [-1, *pairs.shape[2:]])
        mu, log_sigma_sq = self.posterior.encode(flat)
        return tf.reshape(mu, [-1, steps, self.nz]), tf.reshape(log_sigma_sq, [-1, steps, self.nz])

    def _unroll(self, frames, latents, truth_masks=None):
        """Run the generator over T-1 steps → predictions ``[B, T-1, H, W, C]`` of frames 1..T-1.

        ``frames`` ``[B, N, H, W, C]`` holds the true frames available (N = T in training, the context at
        inference); step t < context_frames reads the true frame t. Later steps read the previous prediction or,
        where ``truth_masks[t - context_frames]`` ``[B]`` is true (scheduled sampling), the true frame t.
        ``latents`` ``[B, T-1, nz]`` or None (nz = 0). The steps run in a ``tf.while_loop`` so that a traced
        training step holds the generator once, not T-1 times (tracing time).
        """
        steps = self.sequence_length - 1
        batch = tf.shape(frames)[0]
        first = frames[:, 0]
        truth = tf.transpose(frames[:, :steps], [1, 0, 2, 3, 4])  # time-major
        if truth.shape[0] < steps:  # inference: no truth after the context (never selected)
            truth = tf.concat([truth, tf.zeros([steps - truth.shape[0], *tf.unstack(tf.shape(truth)[1:])])], 0)
        use_truth = [tf.ones([self.context_frames, batch], tf.bool)]
        if steps > self.context_frames:
            use_truth.append(truth_masks if truth_masks is not None
                             else tf.zeros([steps - self.context_frames, batch], tf.bool))
        use_truth = tf.concat(use_truth, axis=0)
        if latents is not None:
            latents = tf.transpose(latents, [1, 0, 2])
        z_state = [tf.zeros([batch, self.nz])] * 2 if latents is not None and self.z_rnn is not None else []

        def body(t, previous, state, z_state, predictions):
            image = tf.where(use_truth[t][:, None, None, None], truth[t], previous)
            z = None
            if latents is not None:
                z = latents[t]
                if self.z_rnn is not None:
                    z, z_state = self.z_rnn(z, z_state)
                    z_state = list(z_state)
            prediction, state = self.generator.step(image, first, z, state)
            return t + 1, prediction, state, z_state, predictions.write(t, prediction)

        loop_vars = (tf.constant(0), tf.zeros_like(first), self.generator.initial_state(batch), z_state,
                     tf.TensorArray(tf.float32, size=steps))
        *_, predictions = tf.while_loop(lambda t, *_: t < steps, body, loop_vars)
        return tf.transpose(predictions.stack(), [1, 0, 2, 3, 4])

    def predict_frames(self, context, training=False, seed=None):
        """Prior forecast ``[B, F, H, W, C]`` from ``context`` ``[B, context_frames, H, W, C]``: latents of the
        context steps from the posterior (pairs inside the context), N(0, I) for the forecast steps."""
        context = tf.convert_to_tensor(context, tf.float32)
        latents = None
        if self.nz:
            batch = tf.shape(context)[0]
            prior = self._normal([batch, self.forecast_frames, self.nz], seed, 1)
            if self.context_frames > 1:
                mu, log_sigma_sq = self._posterior(context)
                posterior = mu + tf.exp(0.5 * log_sigma_sq) * self._normal(tf.shape(mu), seed, 2)
                latents = tf.concat([posterior, prior], axis=1)
            else:
                latents = prior
        predictions = self._unroll(context, latents)
        return predictions[:, self.context_frames - 1:]

    def _generate(self, images, step, prior: bool, posterior: bool):
        """Training-mode generator runs on ``images`` ``[B, T, H, W, C]`` with one scheduled-sampling draw:
        ``gen_images`` (prior latents) and/or ``gen_images_enc`` (posterior latents), plus μ, log σ²."""
        images = tf.convert_to_tensor(images, tf.float32)
        batch = tf.shape(images)[0]
        hp = self.hparams
        probability = ground_truth_probability(step, hp["schedule_sampling"], hp["schedule_sampling_k"],
                                               hp["schedule_sampling_steps"])
        future_steps = self.sequence_length - 1 - self.context_frames
        truth_masks = tf.random.uniform([future_steps, batch]) < probability if future_steps else None
        outputs = {}
        if not self.nz:
            outputs["gen_images"] = self._unroll(images, None, truth_masks)
            return outputs
        mu, log_sigma_sq = self._posterior(images)
        z_posterior = mu + tf.exp(0.5 * log_sigma_sq) * tf.random.normal(tf.shape(mu))
        outputs.update(mu=mu, log_sigma_sq=log_sigma_sq)
        if posterior:
            outputs["gen_images_enc"] = self._unroll(images, z_posterior, truth_masks)
        if prior:
            known = self.context_frames - 1
            z_prior = tf.concat([z_posterior[:, :known],
                                 tf.random.normal([batch, self.sequence_length - 1 - known, self.nz])], axis=1)
            outputs["gen_images"] = self._unroll(images, z_prior, truth_masks)
        return outputs

    def _random_clip(self, frames):
        """A clip of ``clip_length`` consecutive frames starting at a random step (one start per call)."""
        length = self.clip_length
        start = tf.random.uniform([], 0, frames.shape[1] - length + 1, dtype=tf.int32)
        clip = frames[:, start:start + length]
        return tf.reshape(clip, [-1, length, *frames.shape[2:]])

    def _discriminators(self):
        """``[(name, discriminator, output key, GAN weight, feature weight)]`` of the active GAN terms."""
        hp = self.hparams
        active = []
        if self.video_discriminator is not None:
            active.append(("video_sn_gan", self.video_discriminator, "gen_images",
                           hp["video_sn_gan_weight"], hp["gan_feature_cdist_weight"]))
        if self.vae_discriminator is not None:
            active.append(("video_sn_vae_gan", self.vae_discriminator, "gen_images_enc",
                           hp["video_sn_vae_gan_weight"], hp["vae_gan_feature_cdist_weight"]))
        return active

    # --- losses ------------------------------------------------------------------------------------------------
    def generator_loss(self, images, step):
        """Weighted sum of the generator terms (L1 and L2 of the reconstruction, KL, GAN and discriminator-feature
        cosine distance, each with its weight) → ``(g_loss, {name: unweighted term})``."""
        hp = self.hparams
        active = self._discriminators()
        needs_prior = not self.nz or any(key == "gen_images" for _, _, key, _, _ in active)
        outputs = self._generate(images, step, prior=needs_prior, posterior=bool(self.nz))
        target = images[:, 1:]
        reconstruction = outputs["gen_images_enc"] if self.nz else outputs["gen_images"]
        error = self.select_targets(target) - self.select_targets(reconstruction)
        terms = {"gen_l1_loss": (tf.reduce_mean(tf.abs(error)), hp["l1_weight"])}
        if hp["l2_weight"]:
            terms["gen_l2_loss"] = (tf.reduce_mean(tf.square(error)), hp["l2_weight"])
        if self.nz and hp["kl_weight"]:
            weight = kl_weight(step, hp["kl_weight"], hp["kl_anneal"], hp["kl_anneal_k"], hp["kl_anneal_steps"])
            terms["gen_kl_loss"] = (kl_divergence(outputs["mu"], outputs["log_sigma_sq"]), weight)
        for name, discriminator, key, gan_weight, feature_weight in active:
            fake_logits, fake_features = discriminator.judge(self._random_clip(outputs[key]))
            if gan_weight:
                terms[f"gen_{name}_loss"] = (gan_loss(fake_logits, 1.0, hp["gan_loss_type"]), gan_weight)
            if feature_weight:
                _, real_features = discriminator.judge(self._random_clip(target))
                distance = tf.add_n([cosine_distance(fake, real)
                                     for fake, real in zip(fake_features, real_features)])
                terms[f"gen_{name}_feature_cdist_loss"] = (distance, feature_weight)
        return _weighted_sum(terms, "g_loss")

    def discriminator_loss(self, images, step):
        """``Σ w · [L(D(real), 1) + L(D(fake), 0)]`` over the active discriminators (fakes without gradient)."""
        hp = self.hparams
        active = self._discriminators()
        outputs = self._generate(images, step, prior=any(key == "gen_images" for _, _, key, _, _ in active),
                                 posterior=any(key == "gen_images_enc" for _, _, key, _, _ in active))
        real = images[:, 1:]
        terms = {}
        for name, discriminator, key, gan_weight, _ in active:
            real_logits, _ = discriminator.judge(self._random_clip(real), update=True)
            fake_logits, _ = discriminator.judge(self._random_clip(tf.stop_gradient(outputs[key])), update=True)
            loss = gan_loss(real_logits, 1.0, hp["gan_loss_type"]) + gan_loss(fake_logits, 0.0, hp["gan_loss_type"])
            terms[f"discrim_{name}_loss"] = (loss, gan_weight)
        return _weighted_sum(terms, "d_loss")

    # --- optimisation ------------------------------------------------------------------------------------------
    def discriminator_variables(self):
        layers = {id(d): d for _, d, _, _, _ in self._discriminators()}.values()
        return [v for layer in layers for v in layer.trainable_variables]

    def generator_variables(self):
        discriminator = {id(v) for v in self.discriminator_variables()}
        return [v for v in self.trainable_variables if id(v) not in discriminator]

    def optimization_phases(self):
        hp = self.hparams

        def schedule(step):
            return learning_rate(step, hp["lr"], hp["end_lr"], hp["decay_steps"], hp["lr_boundaries"])

        adam = {"beta_1": hp["beta1"], "beta_2": hp["beta2"], "epsilon": 1e-8}
        phases = []
        if self._discriminators():
            phases.append(OptimizationPhase("discriminator", self.discriminator_loss, self.discriminator_variables,
                                            schedule, dict(adam)))
        phases.append(OptimizationPhase("generator", self.generator_loss, self.generator_variables, schedule,
                                        dict(adam)))
        return phases
