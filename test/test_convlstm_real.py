"""The convLSTM's increment formulation (``residual``: forecast = previous frame + the head's change) on hand-made
cases, and a short training on real ERA5 (2 m temperature, March 2019, UK; the file is read where it lies, see
fixtures.archive.shared_data) that must beat holding the last input frame and persistence of the previous day."""
import keras
import numpy as np
import pytest
import tensorflow as tf
import xarray as xr
from fixtures.archive import REAL_ERA5_T2M, shared_data
from fixtures.common import REPO_ROOT

from video_prediction_tools.datasets.normalization import Normalization
from video_prediction_tools.models.registry import build_model, default_hparams
from video_prediction_tools.training.trainer import build_optimizers, make_train_step
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.io import read_json

FRAME_SHAPE = (9, 11, 2)
RESIDUAL = {"context_frames": 3, "sequence_length": 7, "num_features": 4, "filter_size": 3, "residual": True,
            "opt_var": "all", "lr": 0.01}


@pytest.fixture(autouse=True)
def fixed_seed():
    keras.utils.set_random_seed(0)


def sequences(batch=2, frames=7, shape=FRAME_SHAPE, seed=0):
    """Random normalised sequences ``[B, T, H, W, C]``."""
    return tf.constant(np.random.default_rng(seed).normal(size=(batch, frames, *shape)), tf.float32)


def trainer_step(model):
    """The trainer's compiled step ``(images, step) → losses`` for ``model``."""
    phases = model.optimization_phases()
    return make_train_step(tf.distribute.get_strategy(), model, phases, build_optimizers(model, phases))


def fit(model, images, steps):
    """``steps`` trainer steps on ``images`` (moves every weight away from its initial value)."""
    step = trainer_step(model)
    for index in range(steps):
        step(images, tf.constant(index, tf.int64))


def train_epochs(model, images: np.ndarray, epochs: int, batch_size: int, seed: int = 1) -> None:
    """``epochs`` passes over ``images`` ``[N, T, H, W, C]`` in shuffled batches, the remainder dropped."""
    step, rng, index = trainer_step(model), np.random.default_rng(seed), 0
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for first in range(0, len(order) - batch_size + 1, batch_size):
            step(tf.constant(images[order[first:first + batch_size]]), tf.constant(index, tf.int64))
            index += 1


def test_untrained_residual_convlstm_holds_the_last_context_frame_at_every_lead():
    model = build_model("convLSTM", RESIDUAL, FRAME_SHAPE)
    images = sequences()
    forecast = model.forecast(images).numpy()
    assert forecast.shape == (2, 4, *FRAME_SHAPE)
    for lead in range(4):
        np.testing.assert_array_equal(forecast[:, lead], images[:, 2].numpy())


def test_residual_frames_add_the_head_increment_to_the_previous_frame():
    """A head with zero kernel and bias b forecasts lead k as the last context frame + k·b, whatever the cell."""
    model = build_model("convLSTM", RESIDUAL, FRAME_SHAPE)
    fit(model, sequences(seed=1), steps=3)
    increment = np.array([0.25, -0.5], np.float32)
    model.head.kernel.assign(tf.zeros_like(model.head.kernel))
    model.head.bias.assign(increment)
    images = sequences()
    forecast = model.forecast(images).numpy()
    for lead in range(1, 5):
        np.testing.assert_allclose(forecast[:, lead - 1], images[:, 2].numpy() + lead * increment, atol=1e-6)


def test_trained_residual_forecast_sees_the_context_only_in_training_and_inference():
    model = build_model("convLSTM", RESIDUAL, FRAME_SHAPE)
    fit(model, sequences(seed=1), steps=3)
    images = sequences()
    forecast = model.forecast(images).numpy()
    future_changed = tf.concat([images[:, :3], -images[:, 3:]], axis=1)
    np.testing.assert_array_equal(model.forecast(future_changed), forecast)
    np.testing.assert_allclose(model.predict_frames(images[:, :3], training=True), forecast, rtol=1e-6, atol=1e-6)
    earlier_changed = tf.concat([images[:, :1], -images[:, 1:2], images[:, 2:]], axis=1)
    assert not np.allclose(model.forecast(earlier_changed), forecast)  # not only the last frame counts


def test_residual_save_load_round_trip(tmp_path):
    model = build_model("convLSTM", RESIDUAL, FRAME_SHAPE)
    fit(model, sequences(seed=1), steps=2)
    path = tmp_path / "model.weights.h5"
    model.save_weights(str(path))
    fresh = build_model("convLSTM", RESIDUAL, FRAME_SHAPE)
    images = sequences()
    assert not np.array_equal(fresh.forecast(images), model.forecast(images))
    fresh.load_weights(str(path))
    np.testing.assert_array_equal(fresh.forecast(images), model.forecast(images))


def test_residual_needs_the_mse_loss():
    with pytest.raises(UserError, match="loss_fun must be 'mse' with residual true, got 'cross_entropy'"):
        build_model("convLSTM", {**RESIDUAL, "loss_fun": "cross_entropy"}, FRAME_SHAPE, build=False)


def test_era5_template_forecasts_increments_and_runs_without_the_key_keep_the_field_head():
    template = read_json(REPO_ROOT / "templates/hparams/era5/convLSTM/model_hparams_template.json")
    assert template["residual"] is True and default_hparams("convLSTM")["residual"] is False
    field = build_model("convLSTM", {**RESIDUAL, "residual": False}, FRAME_SHAPE)  # min-max: sigmoid head
    increment = build_model("convLSTM", RESIDUAL, FRAME_SHAPE)
    assert field.count_params() == increment.count_params()
    forecast = field.forecast(sequences()).numpy()
    assert forecast.min() > 0.0 and forecast.max() < 1.0


# --- real ERA5 ----------------------------------------------------------------------------------------------------
#: the 32 x 48 box from 50N 10W of the quick start's real-data example; days of March 2019 to train on and test on
BOX = {"latitude": slice(57.75, 50.0), "longitude": slice(-10.0, 1.75)}
TRAIN_DAYS, TEST_DAYS = (1, 25), (26, 31)
CONTEXT, LENGTH = 12, 24


def real_t2m() -> xr.DataArray:
    """2 m temperature ``[time, 32, 48]`` in K of the box, read by cfgrib from the real file where it lies."""
    with xr.open_dataset(shared_data(REAL_ERA5_T2M), engine="cfgrib", backend_kwargs={"indexpath": ""}) as data:
        field = data["t2m"].sel(BOX).load()
    assert field.shape == (744, 32, 48)
    return field


def day_windows(field: xr.DataArray, days: tuple[int, int]) -> np.ndarray:
    """First hour index of every 24-h window lying wholly inside the inclusive ``days``."""
    hours = np.flatnonzero((field["time.day"].values >= days[0]) & (field["time.day"].values <= days[1]))
    return hours[: len(hours) - LENGTH + 1]


@pytest.mark.slow
def test_short_training_on_real_era5_beats_the_last_frame_and_persistence_at_leads_1_to_3():
    """The quick start's demo convLSTM with the ERA5 template's increment formulation, 2 epochs of 1-25 March
    (z-scores from those hours), tested on 26-31 March: MSE in K² per lead against the last context frame held and
    the analysis 24 h before the valid time. The field formulation lost to the last frame at +1 h by 3-4x."""
    field = real_t2m()
    values = field.values.astype(np.float64)
    train_starts, test_starts = day_windows(field, TRAIN_DAYS), day_windows(field, TEST_DAYS)
    train_hours = values[train_starts[0]:train_starts[-1] + LENGTH]
    norm = Normalization("znorm", {"2t": {"min": train_hours.min(), "max": train_hours.max(),
                                          "avg": train_hours.mean(), "sigma": train_hours.std()}}, ["2t"])
    cut = lambda starts: np.asarray(norm.normalize(  # noqa: E731
        np.stack([values[s:s + LENGTH] for s in starts])[..., None]), np.float32)
    hparams = {"batch_size": 8, "lr": 0.002, "normalization": "znorm", "num_features": 16, "residual": True}
    model = build_model("convLSTM", hparams, frame_shape=(32, 48, 1))
    train_epochs(model, cut(train_starts), epochs=2, batch_size=8)
    forecast = np.asarray(norm.denormalize(model.compiled_forecast()(cut(test_starts))), np.float64)[..., 0]
    valid = test_starts[:, None] + CONTEXT + np.arange(12)[None, :]  # hour index of leads 1..12
    mse = lambda guess: np.mean((guess - values[valid]) ** 2, axis=(0, 2, 3))  # noqa: E731
    model_mse, last_frame, persistence = mse(forecast), mse(values[test_starts + CONTEXT - 1][:, None]), \
        mse(values[valid - 24])
    assert (model_mse[:3] < last_frame[:3]).all() and (model_mse[:3] < persistence[:3]).all(), \
        (model_mse[:3], last_frame[:3], persistence[:3])
