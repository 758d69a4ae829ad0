"""Tests of SAVP and its variants (models/savp.py, models/savp_blocks.py) on tiny shapes.

Frames are 16x24x3 (a build-only check at the GMD grid 56x92x3), sequences of 6 frames with 3 context frames,
and a few filters per layer, so the whole file runs in a few minutes on 2 shared cores.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from video_prediction_tools.models import savp_blocks
from video_prediction_tools.models.registry import build_model, default_hparams, known_models, resolve_hparams
from video_prediction_tools.training.trainer import build_optimizers, make_train_step
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.settings import templates_dir

SHAPE = (16, 24, 3)
TINY = {"sequence_length": 6, "context_frames": 3, "ngf": 4, "ndf": 4, "nef": 4, "nz": 2}
VARIANTS = ("savp", "ours_gan", "ours_vae_l1")


def moving_waves(batch=2, frames=6, shape=SHAPE, seed=0):
    """Smooth fields in [0.1, 0.9] drifting one grid point east per frame (learnable by the CDNA kernels)."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = np.empty((batch, frames, height, width, channels), np.float32)
    for b in range(batch):
        for c in range(channels):
            ky, kx, phase = rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5), rng.uniform(0, 2 * np.pi)
            for t in range(frames):
                out[b, t, :, :, c] = 0.5 + 0.4 * np.sin(ky * y + kx * (x - t) + phase)
    return tf.constant(out)


def new_savp_model():
    keras.utils.set_random_seed(1)
    return build_model("savp", TINY, SHAPE)


@pytest.fixture(scope="module")
def savp_model():
    """One SAVP model shared by the tests that only run it (never train it)."""
    return new_savp_model()


def snapshot(model):
    return {id(v): v.numpy() for v in model.variables}


def changed(model, before):
    return {id(v) for v in model.variables if not np.array_equal(v.numpy(), before[id(v)])}


def apply_phase(phase, images, step, optimizer):
    variables = phase.variables()
    with tf.GradientTape() as tape:
        loss, parts = phase.loss(images, tf.cast(step, tf.int64))
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
    return parts


# --- registry, hyper-parameters, templates ------------------------------------------------------------------------
def test_variants_are_presets_of_one_class_matching_the_templates():
    assert set(VARIANTS) <= set(known_models())
    for name in VARIANTS:
        path = templates_dir() / "hparams" / "era5" / name / "model_hparams_template.json"
        template = json.loads(path.read_text())
        resolved = resolve_hparams(name, template, source=str(path))
        defaults = default_hparams(name)
        assert all(resolved[key] == defaults[key] for key in template), name
    assert default_hparams("savp")["decay_steps"] == [3000, 9000]
    assert default_hparams("savp")["end_lr"] == pytest.approx(8e-8)
    assert default_hparams("ours_gan")["gan_feature_cdist_weight"] == 10.0
    assert default_hparams("ours_vae_l1")["video_sn_gan_weight"] == 0.0
    assert default_hparams("ours_vae_l1")["kl_weight"] == pytest.approx(1e-5)


@pytest.mark.parametrize("key", ["gan_weight", "num_gpus", "state_weight", "num_samples", "vgg_cdist_weight"])
def test_deprecated_and_dead_keys_are_rejected(key):
    with pytest.raises(UserError, match=f"unknown hyper-parameter '{key}'.*accepted keys"):
        resolve_hparams("savp", {key: 0.0})


@pytest.mark.parametrize("bad, fragment", [
    ({"gan_loss_type": "WGAN"}, "gan_loss_type"),
    ({"schedule_sampling": "sometimes"}, "schedule_sampling"),
    ({"kl_anneal": "sigmoid"}, "kl_anneal_k"),
    ({"kernel_size": [4, 4]}, "kernel_size"),
    ({"sequence_length": 4}, "clip"),
])
def test_inconsistent_hyper_parameters_are_user_errors(bad, fragment):
    with pytest.raises(UserError, match=fragment):
        build_model("savp", {**TINY, **bad}, SHAPE, build=False)


def test_too_small_frames_are_a_user_error():
    with pytest.raises(UserError, match="too small"):
        build_model("savp", TINY, (6, 24, 3), build=False)


# --- architecture -------------------------------------------------------------------------------------------------
def test_layer_plan_follows_grid_size_as_the_original():
    ngf = 32
    assert savp_blocks.layer_plan(56, ngf) == ([(32, True), (64, True)], [(32, True), (32, False)])
    assert savp_blocks.layer_plan(64, ngf) == ([(32, True), (64, True), (128, True)],
                                               [(64, True), (32, True), (32, False)])
    assert len(savp_blocks.layer_plan(128, ngf)[0]) == 4 and len(savp_blocks.layer_plan(256, ngf)[0]) == 5


def test_builds_at_the_gmd_grid_with_the_two_level_plan():
    hparams = {**TINY, "ngf": 32, "ndf": 2, "nef": 2}
    model = build_model("savp", hparams, (56, 92, 3))
    generator = model.generator
    assert generator.padded_shape == (56, 92)
    encoder, decoder = generator.encoder_levels, generator.decoder_levels
    nz, channels = hparams["nz"], 3
    # encoder level 0: conv 5x5 on [frame, first frame, z] → ngf; level 1: conv 3x3 → 2 ngf; both with conv-LSTM
    assert tuple(encoder[0].conv.kernel.shape) == (5, 5, 2 * channels + nz, 32)
    assert tuple(encoder[0].rnn.conv.kernel.shape) == (5, 5, 32 + nz + 32, 4 * 32)
    assert tuple(encoder[1].conv.kernel.shape) == (3, 3, 32 + nz, 64)
    assert tuple(encoder[1].rnn.conv.kernel.shape) == (5, 5, 64 + nz + 64, 4 * 64)
    # decoder level 0: up-sample 14x23 → 28x46, ngf with conv-LSTM; level 1: [dec 0, skip of enc 0] → ngf, no RNN
    assert tuple(decoder[0].conv.kernel.shape) == (3, 3, 64 + nz, 32)
    assert decoder[0].rnn is not None and decoder[1].rnn is None
    assert tuple(decoder[1].conv.kernel.shape) == (3, 3, 32 + 32 + nz, 32)
    # CDNA: dense on the flattened 14x23x64 deepest encoder output → 4 kernels of 5x5; 7 candidates for the masks
    assert tuple(generator.cdna_dense.kernel.shape) == (14 * 23 * 64, 5 * 5 * 4)
    assert generator.num_masks == 7
    assert tuple(generator.mask_out.kernel.shape) == (3, 3, 32 + 7 * channels + nz, 7)
    forecast = model.forecast(tf.zeros((1, 6, 56, 92, 3)), seed=0)
    assert forecast.shape == (1, 3, 56, 92, 3)


def test_grids_not_divisible_by_the_pooling_are_padded_and_cropped():
    model = build_model("ours_vae_l1", TINY, (18, 26, 2), build=False)
    assert model.generator.padded_shape == (20, 28)
    forecast = model.forecast(tf.random.uniform((2, 6, 18, 26, 2)), seed=0)
    assert forecast.shape == (2, 3, 18, 26, 2)
    assert np.all(np.isfinite(forecast))


# --- blocks against hand computations -----------------------------------------------------------------------------
def test_cdna_transformation_is_a_symmetric_padded_cross_correlation():
    rng = np.random.default_rng(3)
    image = rng.uniform(size=(2, 6, 7, 3)).astype(np.float32)
    kernels = rng.uniform(size=(2, 5, 5, 2)).astype(np.float32)
    transformed = savp_blocks.apply_cdna(tf.constant(image), tf.constant(kernels))
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="symmetric")
    for k in range(2):
        expected = np.zeros_like(image)
        for b in range(2):
            for y in range(6):
                for x in range(7):
                    window = padded[b, y:y + 5, x:x + 5, :]
                    expected[b, y, x] = np.einsum("ijc,ij->c", window, kernels[b, :, :, k])
        np.testing.assert_allclose(transformed[k], expected, rtol=1e-5, atol=1e-6)


def test_spectral_norm_power_iteration_finds_the_largest_singular_value():
    keras.utils.set_random_seed(0)
    layer = savp_blocks.SpectralNorm(5, kernel_size=3)
    clip = tf.random.uniform((1, 4, 6, 6, 2))
    for _ in range(300):
        layer(clip, update=True)
    matrix = layer.kernel.numpy().reshape(-1, 5)
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    u = layer.u.numpy()
    estimate = np.linalg.norm(u @ matrix.T)  # |W u| with |u| = 1 converges to the largest singular value
    assert estimate == pytest.approx(sigma, rel=1e-3)


def test_losses_and_norm_against_hand_values():
    a = tf.constant([[1.0, 0.0], [3.0, 4.0]])
    b = tf.constant([[0.0, 2.0], [3.0, 4.0]])
    assert float(savp_blocks.cosine_distance(a, b)) == pytest.approx(0.5)  # (0.5 * 2 + 0) / 2
    logits = tf.constant([[0.5], [2.0]])
    assert float(savp_blocks.gan_loss(logits, 1.0, "LSGAN")) == pytest.approx((0.25 + 1.0) / 2)
    assert float(savp_blocks.gan_loss(logits, 0.0, "LSGAN")) == pytest.approx((0.25 + 4.0) / 2)
    expected_ce = np.mean(np.log1p(np.exp(-np.array([0.5, 2.0]))))
    assert float(savp_blocks.gan_loss(logits, 1.0, "GAN")) == pytest.approx(expected_ce, rel=1e-6)
    mu, log_var = np.array([[0.5, -1.0]]), np.array([[0.2, -0.3]])
    expected_kl = 0.5 * np.sum(np.exp(log_var) + mu ** 2 - 1 - log_var)
    assert float(savp_blocks.kl_divergence(tf.constant(mu, tf.float32), tf.constant(log_var, tf.float32))) \
        == pytest.approx(expected_kl, rel=1e-5)
    normed = savp_blocks.InstanceNorm()(tf.random.uniform((2, 5, 6, 3)) * 7.0 + 2.0)
    np.testing.assert_allclose(np.mean(normed, axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(normed, axis=(1, 2)), 1.0, rtol=1e-3)


def test_schedules_against_hand_values():
    lr = lambda step: float(savp_blocks.learning_rate(step, 2e-4, 8e-8, [3000, 9000], [0]))  # noqa: E731
    assert lr(0) == pytest.approx(2e-4) and lr(3000) == pytest.approx(2e-4)
    assert lr(6000) == pytest.approx(2e-4 + (8e-8 - 2e-4) * 0.5)
    assert lr(20000) == pytest.approx(8e-8)
    assert float(savp_blocks.learning_rate(25, 1.0, 0.0, [0, 0], [10, 20])) == pytest.approx(0.01)
    assert float(savp_blocks.kl_weight(75000, 0.01, "linear", -1.0, [50000, 100000])) == pytest.approx(0.005)
    assert float(savp_blocks.kl_weight(10, 0.01, "sigmoid", 5.0, [0, 1])) \
        == pytest.approx(0.01 / (1 + 5 * np.exp(-2.0)), rel=1e-6)
    assert float(savp_blocks.kl_weight(10, 0.01, "none", -1.0, [0, 1])) == pytest.approx(0.01)
    p = float(savp_blocks.ground_truth_probability(6100, "inverse_sigmoid", 900.0, [0, 100000]))
    assert p == pytest.approx(900 / (900 + np.exp(6100 / 900)), rel=1e-5)
    assert float(savp_blocks.ground_truth_probability(10 ** 6, "inverse_sigmoid", 900.0, [0, 100000])) == 0.0
    assert float(savp_blocks.ground_truth_probability(25000, "linear", 900.0, [0, 100000])) == pytest.approx(0.75)


# --- training phases ----------------------------------------------------------------------------------------------
def test_each_phase_changes_only_its_own_variables():
    model = new_savp_model()  # its own model: the phases below change its weights
    phases = model.optimization_phases()
    assert [p.name for p in phases] == ["discriminator", "generator"]
    assert phases[0].optimizer["beta_1"] == 0.5 and phases[1].optimizer["beta_2"] == 0.999
    discriminator_ids = {id(v) for v in model.video_discriminator.variables + model.vae_discriminator.variables}
    generator_ids = {id(v) for v in phases[1].variables()}
    assert generator_ids and not generator_ids & discriminator_ids
    assert {id(v) for v in phases[0].variables()} < discriminator_ids  # + the non-trainable power-iteration u
    images = moving_waves()
    for phase, own in ((phases[0], discriminator_ids), (phases[1], generator_ids)):
        before = snapshot(model)
        apply_phase(phase, images, 10, keras.optimizers.Adam(1e-3, **phase.optimizer))
        modified = changed(model, before)
        assert modified and modified <= own, phase.name
        assert {id(v) for v in phase.variables()} <= modified, phase.name  # every variable got a gradient


@pytest.mark.slow
def test_training_lowers_the_l1_loss_on_a_fixed_batch():
    keras.utils.set_random_seed(2)
    # the VAE + L1 variant keeps the traced step small (no discriminator); the GAN phases are exercised above
    model = build_model("ours_vae_l1", {**TINY, "lr": 0.003, "kl_anneal": "none"}, SHAPE)
    phases = model.optimization_phases()
    assert [phase.name for phase in phases] == ["generator"]
    # the training loop's own step function, fed through the generic OptimizationPhase interface
    train_step = make_train_step(tf.distribute.get_strategy(), model, phases, build_optimizers(model, phases))
    images = moving_waves(seed=5)

    def forecast_l1():
        return float(tf.reduce_mean(tf.abs(model.select_targets(model.forecast(images, seed=0))
                                           - model.target(images))))

    start = forecast_l1()
    losses = [float(train_step(images, tf.constant(step, tf.int64))["gen_l1_loss"]) for step in range(30)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert forecast_l1() < 0.7 * start


# --- inference ----------------------------------------------------------------------------------------------------
def test_seeds_give_independent_reproducible_samples(savp_model):
    images = moving_waves()
    first, again, other = (savp_model.forecast(images, seed=s) for s in (1, 1, 2))
    assert savp_model.stochastic
    np.testing.assert_array_equal(first, again)
    assert np.max(np.abs(first - other)) > 1e-4
    assert np.max(np.abs(savp_model.forecast(images) - savp_model.forecast(images))) > 1e-4


@pytest.mark.slow  # tracing the whole SAVP forecast; the fast lane checks the vae's compiled samples
def test_compiled_forecast_draws_the_eager_samples(savp_model):
    """The postprocessing's ``compiled_forecast`` (the seed as a tensor) draws the same members as eager calls."""
    images = moving_waves()
    compiled = savp_model.compiled_forecast()
    for seed in (1, 2):
        np.testing.assert_allclose(compiled(images, seed=seed), savp_model.forecast(images, seed=seed), rtol=1e-5,
                                   atol=1e-6)


def test_forecast_never_depends_on_frames_after_the_context(savp_model):
    images = moving_waves()
    altered = tf.concat([images[:, :3], 1.0 - images[:, 3:]], axis=1)
    reference = savp_model.forecast(images, seed=4)
    np.testing.assert_array_equal(reference, savp_model.forecast(altered, seed=4))
    np.testing.assert_array_equal(reference, savp_model.forecast(images[:, :3], seed=4))
    assert reference.shape == (2, 3, *SHAPE)


def test_without_gan_kl_and_latents_it_is_a_deterministic_predictor():
    hparams = {**TINY, "nz": 0, "kl_weight": 0.0, "video_sn_gan_weight": 0.0, "video_sn_vae_gan_weight": 0.0,
               "gan_feature_cdist_weight": 0.0, "vae_gan_feature_cdist_weight": 0.0}
    model = build_model("savp", hparams, SHAPE)
    assert not model.stochastic
    assert model.video_discriminator is None and model.vae_discriminator is None
    phases = model.optimization_phases()
    assert [p.name for p in phases] == ["generator"]
    images = moving_waves()
    reference = model.forecast(images, seed=1)
    for seed in (2, None):
        np.testing.assert_array_equal(reference, model.forecast(images, seed=seed))
    # once scheduled sampling has decayed to 0 the training loss is a deterministic function of the batch
    late = tf.constant(10 ** 6, tf.int64)
    loss, parts = phases[0].loss(images, late)
    assert set(parts) == {"gen_l1_loss", "g_loss"}
    assert float(loss) == float(phases[0].loss(images, late)[0])
    assert float(loss) == pytest.approx(model.hparams["l1_weight"] * float(parts["gen_l1_loss"]))


@pytest.mark.parametrize("name", ["savp", "ours_vae_l1"])  # with both discriminators and with none
def test_save_load_round_trip(name, tmp_path):
    hparams = {**TINY, "ndf": 2, "nef": 2}
    model = build_model(name, hparams, SHAPE)
    images = moving_waves()
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    keras.utils.set_random_seed(99)  # the copy starts from different random weights
    copy = build_model(name, hparams, SHAPE)
    copy.load_weights(path)
    weights = lambda m: [v for v in m.variables if v.dtype == "float32"]  # noqa: E731 (not the RNG states)
    assert len(weights(copy)) == len(weights(model)) > 0
    for original, loaded in zip(weights(model), weights(copy)):
        np.testing.assert_array_equal(original.numpy(), loaded.numpy())
    np.testing.assert_array_equal(model.forecast(images, seed=7), copy.forecast(images, seed=7))
