"""Tests of the SimVP-family models ``simvp`` (gSTA and Inception translators) and ``tau``: parameter counts from
the layer shapes (and the published weather configuration at 56 x 92 x 3), grids not multiples of the
downsampling, forecasts blind to the future, overfitting a fixed batch, weight round trips, TAU's differential
divergence against numpy, the cosine learning-rate schedule, strict hyper-parameters, and (slow) simvp through
generated runscripts: training, postprocessing and meta-postprocessing."""
import math
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fixtures.common import REPO_ROOT, run_module
from fixtures.models import FRAME_SHAPE, parameter_count, train, waves
from video_prediction_tools import quick_start
from video_prediction_tools.models.layers import pad_to_multiple
from video_prediction_tools.models.registry import build_model, resolve_hparams
from video_prediction_tools.models.simvp_blocks import differential_divergence
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.io import read_json

TINY = {"context_frames": 3, "sequence_length": 6, "opt_var": "all", "lr": 0.005, "hid_S": 4, "hid_T": 16,
        "N_S": 2, "N_T": 2}
CONFIGS = {"simvp": ("simvp", {}), "simvp_incepu": ("simvp", {"translator": "incepu"}), "tau": ("tau", {})}
#: the configurations of the per-model tests: simvp in the fast lane, the others only in the full run (slow)
ONLY_SIMVP_FAST = [config if config == "simvp" else pytest.param(config, marks=pytest.mark.slow)
                   for config in sorted(CONFIGS)]


@pytest.fixture(autouse=True)
def fixed_seed():
    keras.utils.set_random_seed(0)


def tiny_model(config, **overrides):
    name, extra = CONFIGS[config]
    return build_model(name, {**TINY, **extra, **overrides}, FRAME_SHAPE)


# --- parameter counts from the layer shapes ------------------------------------------------------------------------
def conv(c_in, c_out, kernel=1, groups=1):
    return kernel * kernel * (c_in // groups) * c_out + c_out


def depthwise(channels, kernel):
    return kernel * kernel * channels + channels


def meta_block(d, out, gated):
    """Trainable parameters of one gSTA (``gated``) or TAU block at width ``d`` reduced to ``out``."""
    hidden = 8 * d
    count = 2 * 2 * d + 2 * conv(d, d) + depthwise(d, 5) + depthwise(d, 7) + 2 * d  # BN γβ, 1x1 in/out, LKA, γ
    count += conv(d, 2 * d) if gated else conv(d, d) + 2 * d * max(d // 16, 4)     # gate, or 1x1 + SE
    count += conv(d, hidden) + depthwise(hidden, 3) + conv(hidden, d)               # MLP
    return count + (conv(d, out) if out != d else 0)


def inception_block(c_in, hidden, out):
    groups = 8 if hidden % 8 == 0 and out % 8 == 0 else 1
    return conv(c_in, hidden) + sum(conv(hidden, out, k, groups) + 2 * out for k in (3, 5, 7, 11))


def expected_parameters(channels, hid_s, hid_t, n_s, n_t, context, forecast, translator):
    strides = [2 if i % 2 else 1 for i in range(n_s)]
    encoder = conv(channels, hid_s, 3) + 2 * hid_s + (n_s - 1) * (conv(hid_s, hid_s, 3) + 2 * hid_s)
    decoder = sum(conv(hid_s, hid_s * (4 if s == 2 else 1), 3) + 2 * hid_s for s in strides)
    decoder += conv(hid_s, channels)
    d_in, d_out = context * hid_s, forecast * hid_s
    if translator == "incepu":
        half = hid_t // 2
        middle = (inception_block(d_in, half, hid_t) + (n_t - 1) * inception_block(hid_t, half, hid_t)
                  + inception_block(hid_t, half, hid_t) + (n_t - 2) * inception_block(2 * hid_t, half, hid_t)
                  + inception_block(2 * hid_t, half, d_out))
    else:
        widths = [d_in] + [hid_t] * (n_t - 1) + [d_out]
        middle = sum(meta_block(widths[i], widths[i + 1], translator == "gsta") for i in range(n_t))
    return encoder + middle + decoder


@pytest.mark.parametrize("name, translator, count", [("simvp", "gsta", 12_758_947),
                                                     pytest.param("tau", "tau", 12_226_339, marks=pytest.mark.slow)])
def test_parameter_count_of_the_weather_configuration_at_the_gmd_shape(name, translator, count):
    """The published weather configuration (hid_S 32, hid_T 256, N_S 2, N_T 8, 12 -> 12 frames) on 3 channels."""
    template = read_json(REPO_ROOT / "templates/hparams/era5" / name / "model_hparams_template.json")
    model = build_model(name, template, frame_shape=(56, 92, 3))
    assert parameter_count(model) == expected_parameters(3, 32, 256, 2, 8, 12, 12, translator) == count
    assert model.forecast(tf.zeros((1, 24, 56, 92, 3))).shape == (1, 12, 56, 92, 3)


@pytest.mark.parametrize("config, translator", [("simvp", "gsta"), ("simvp_incepu", "incepu"), ("tau", "tau")])
def test_parameter_count_of_tiny_models_with_more_forecast_than_context_frames(config, translator):
    model = tiny_model(config, N_T=3, sequence_length=7)  # 3 context -> 4 forecast frames
    assert parameter_count(model) == expected_parameters(2, 4, 16, 2, 3, 3, 4, translator)
    assert model.forecast(waves(frames=7)).shape == (2, 4, *FRAME_SHAPE)


# --- behaviour -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_s, padded, latent", [(2, (10, 14), (5, 7)), (4, (12, 16), (3, 4))])
def test_grids_not_multiples_of_the_downsampling_are_padded_inside_the_model(n_s, padded, latent):
    """10 x 13 is padded by mirroring to a multiple of 2^(N_S//2) for the encoder and the forecast cropped back."""
    model = tiny_model("simvp", N_S=n_s)
    images = waves()
    assert model.forecast(images).shape == (2, 3, *FRAME_SHAPE)
    assert pad_to_multiple(images, model.grid_multiple).shape[2:4] == padded
    assert model.encoder(tf.zeros((1, *padded, 2)))[0].shape[1:3] == latent


@pytest.mark.parametrize("config", ONLY_SIMVP_FAST)
def test_builds_forecasts_and_overfits_a_fixed_batch(config):
    model = tiny_model(config)
    images = waves()
    forecast = model.forecast(images)
    assert np.isfinite(forecast.numpy()).all()
    assert 0.0 <= float(tf.reduce_min(forecast)) and float(tf.reduce_max(forecast)) <= 1.0  # sigmoid for minmax
    before, after = train(model, images, steps=60)
    assert after["total_loss"] < 0.3 * before["total_loss"], (before, after)
    forecast_mse = float(tf.reduce_mean(tf.square(model.forecast(images) - images[:, 3:])))
    assert forecast_mse < 0.3 * float(tf.reduce_mean(tf.square(forecast - images[:, 3:])))


@pytest.mark.parametrize("config", ONLY_SIMVP_FAST)
def test_forecast_ignores_frames_after_the_context(config):
    model = tiny_model(config)
    images = waves()
    changed = tf.concat([images[:, :3], 1.0 - images[:, 3:]], axis=1)
    np.testing.assert_array_equal(model.forecast(images), model.forecast(changed))
    np.testing.assert_array_equal(model(images, training=True), model(changed, training=True))
    other_context = tf.concat([images[:, :2], 1.0 - images[:, 2:3], images[:, 3:]], axis=1)
    assert not np.allclose(model.forecast(images), model.forecast(other_context))


@pytest.mark.parametrize("config", ONLY_SIMVP_FAST)
def test_compiled_forecast_equals_the_eager_forecast(config):
    model = tiny_model(config)
    images = waves()
    np.testing.assert_allclose(model.compiled_forecast()(images, seed=3), model.forecast(images), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("config", ONLY_SIMVP_FAST)
def test_save_load_round_trip_gives_identical_outputs(config, tmp_path):
    model = tiny_model(config)
    images = waves()
    train(model, images, steps=1, compiled=False)  # move weights and batch-norm statistics
    path = tmp_path / "model.weights.h5"
    model.save_weights(str(path))
    fresh = tiny_model(config)
    assert not np.array_equal(fresh.forecast(images), model.forecast(images))
    fresh.load_weights(str(path))
    np.testing.assert_array_equal(fresh.forecast(images), model.forecast(images))
    for mine, theirs in zip(model.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


def test_drop_path_is_random_in_training_only():
    model = tiny_model("simvp", drop_path=0.5, N_T=3)
    images = waves()
    np.testing.assert_array_equal(model.forecast(images), model.forecast(images))
    assert not np.array_equal(model(images, training=True), model(images, training=True))


# --- TAU's loss ----------------------------------------------------------------------------------------------------
def numpy_differential_divergence(forecast, truth, temperature=0.1, eps=1e-12):
    def softmax_of_differences(frames):
        flat = np.diff(frames, axis=1).reshape(frames.shape[0], frames.shape[1] - 1, -1) / temperature
        exp = np.exp(flat - flat.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)

    p, q = softmax_of_differences(forecast), softmax_of_differences(truth)
    return np.mean(p * np.log(p / (q + eps) + eps))


def test_differential_divergence_matches_numpy_and_vanishes_for_equal_changes():
    rng = np.random.default_rng(3)
    forecast, truth = rng.random((2, 4, 5, 6, 2)), rng.random((2, 4, 5, 6, 2))
    expected = numpy_differential_divergence(forecast, truth)
    assert expected > 0
    assert float(differential_divergence(tf.constant(forecast), tf.constant(truth))) == pytest.approx(expected,
                                                                                                      rel=1e-6)
    # a constant offset leaves the frame differences, hence the divergence, at zero
    assert float(differential_divergence(tf.constant(truth + 0.3), tf.constant(truth))) == pytest.approx(0, abs=1e-9)
    assert float(differential_divergence(tf.constant(forecast[:, :1]), tf.constant(truth[:, :1]))) == 0.0


def test_tau_loss_adds_a_tenth_of_the_divergence_on_the_target_channels():
    model = tiny_model("tau", opt_var="1")
    images = waves()
    loss, parts = model.optimization_phases()[0].loss(images, tf.constant(0, tf.int64))
    forecast = model(images, training=True).numpy()[..., 1:]
    truth = images.numpy()[:, 3:, ..., 1:]
    mse = np.mean((forecast - truth) ** 2)
    divergence = numpy_differential_divergence(forecast.astype(np.float64), truth.astype(np.float64))
    assert float(parts["reconstruction_loss"]) == pytest.approx(mse, rel=1e-5)
    assert float(parts["differential_divergence"]) == pytest.approx(divergence, rel=1e-4)
    assert float(loss) == pytest.approx(mse + 0.1 * divergence, rel=1e-5)


# --- schedule and hyper-parameters ---------------------------------------------------------------------------------
def test_cosine_schedule_over_the_training_run_and_constant_without_a_run_length():
    model = tiny_model("simvp", lr=0.004)
    assert float(model.optimization_phases()[0].learning_rate(tf.constant(7, tf.int64))) == pytest.approx(0.004)
    model.training_steps = 100  # as the trainer sets it
    schedule = model.optimization_phases()[0].learning_rate
    for step in (0, 25, 50, 100, 150):
        expected = 0.004 * 0.5 * (1 + math.cos(math.pi * min(step / 100, 1)))
        assert float(schedule(tf.constant(step, tf.int64))) == pytest.approx(expected, abs=1e-9)
    constant = tiny_model("tau", lr=0.004, lr_schedule="constant")
    constant.training_steps = 100
    assert float(constant.optimization_phases()[0].learning_rate(tf.constant(50, tf.int64))) == pytest.approx(0.004)


@pytest.mark.parametrize("name, bad, fragment", [
    ("simvp", {"translator": "lstm"}, "gsta, incepu"),
    ("simvp", {"lr_schedule": "onecycle"}, "constant, cosine"),
    ("simvp", {"N_T": 0}, "'N_T'"),
    ("tau", {"hid_S": 0}, "'hid_S'"),
    ("tau", {"translator": "gsta"}, "unknown hyper-parameter 'translator'"),
    ("simvp", {"diff_div_weight": 0.1}, "unknown hyper-parameter 'diff_div_weight'"),
])
def test_bad_hyperparameters_are_user_errors(name, bad, fragment):
    with pytest.raises(UserError, match=fragment):
        resolve_hparams(name, {**TINY, **bad})


@pytest.mark.parametrize("name, bad, fragment", [
    ("simvp", {"drop_path": 1.0}, "drop_path"),
    ("simvp", {"translator": "incepu", "N_T": 1}, "N_T >= 2"),
    ("tau", {"diff_div_weight": -0.1}, "diff_div_weight"),
])
def test_inconsistent_hyperparameters_are_user_errors(name, bad, fragment):
    with pytest.raises(UserError, match=fragment):
        build_model(name, {**TINY, **bad}, FRAME_SHAPE, build=False)


@pytest.mark.parametrize("dataset", ["era5", "moving_mnist"])
@pytest.mark.parametrize("name", ["simvp", "tau"])
def test_hparams_templates_hold_accepted_keys_with_published_values(dataset, name):
    path = REPO_ROOT / "templates/hparams" / dataset / name / "model_hparams_template.json"
    template = read_json(path)
    resolved = resolve_hparams(name, template, source=str(path))
    assert {k: resolved[k] for k in template} == template
    published = {"era5": {"hid_S": 32, "hid_T": 256, "N_S": 2, "N_T": 8, "lr": 0.005, "lr_schedule": "cosine",
                          "batch_size": 16, "max_epochs": 50, "context_frames": 12, "sequence_length": 24},
                 "moving_mnist": {"hid_S": 64, "hid_T": 512, "N_S": 4, "N_T": 8, "context_frames": 10,
                                  "sequence_length": 20, "opt_var": "all"}}[dataset]
    assert {k: template[k] for k in published} == published


# --- the workflow through generated runscripts ---------------------------------------------------------------------
@pytest.mark.slow
def test_simvp_trains_and_postprocesses_through_generated_runscripts(tmp_path):
    """The tiny quick-start chain prepares the data; simvp is then trained, postprocessed and meta-postprocessed
    through runscripts that the generator writes from the quick-start answers files naming model simvp."""
    demo_dir = tmp_path / "demo"
    result = run_module("video_prediction_tools.main_scripts.main_quick_start", "--venv_path", sys.prefix,
                        "--preset", "tiny", "--demo_dir", demo_dir, "--exp_id", "conv", timeout=1200)
    assert result.returncode in (0, 3), result.stdout[-4000:] + result.stderr[-4000:]
    preset = quick_start.load_preset("tiny")
    hparams = quick_start.preset_hparams(preset, "simvp", "tiny")
    demo = quick_start.Demo(venv_dir=Path(sys.prefix), demo_dir=demo_dir, preset=preset, exp_id="sim", model="simvp")
    expname = next(demo_dir.glob("PreprocessedData/*/metadata.json")).parent.name
    run = demo.run_step("train", demo.train_values(expname))["exp_id"]
    run_dir = demo_dir / "Models" / expname / "simvp" / run
    trained = read_json(run_dir / "model_hparams.json")
    assert {k: trained[k] for k in hparams} == hparams and trained["translator"] == "gsta"
    assert (run_dir / "best_checkpoint.json").is_file()
    results_dir = Path(demo.run_step("postprocess", dict(expname=expname, run=run,
                                                          **preset["postprocess"]))["results_dir"])
    rows = quick_start.read_summary(results_dir)
    assert [int(row["fcst_hour"]) for row in rows] == list(range(1, 13))
    assert all(np.isfinite(row["simvp_mse"]) and row["simvp_mse"] > 0 for row in rows)
    demo.run_step("meta_postprocess", {"run_key": f"{expname}/simvp/{run}", "exp_id": "sim"})
    assert list(demo_dir.glob("meta_postprocess/*_sim/*.png"))
