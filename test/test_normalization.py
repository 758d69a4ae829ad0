"""Per-channel normalisation (datasets/normalization.py): min-max and z-score values computed by hand, round trips on
numpy arrays and TensorFlow tensors, constant fields, and the JSON form saved with a model."""
import json

import numpy as np
import pytest
import tensorflow as tf

from video_prediction_tools.datasets.normalization import Normalization
from video_prediction_tools.utils.errors import UserError

STATS = {
    "2t": {"min": 250.0, "max": 300.0, "avg": 280.0, "sigma": 5.0, "count": 96},
    "tcc": {"min": 0.0, "max": 1.0, "avg": 0.25, "sigma": 0.5},
    "t_850": {"min": 260.0, "max": 270.0, "avg": 265.0, "sigma": 2.0},
}
VARIABLES = ["2t", "tcc", "t_850"]
#: two points of three channels (2t [K], tcc [1], t_850 [K])
FRAMES = np.array([[[275.0, 0.5, 262.0], [300.0, 0.0, 270.0]]], dtype=np.float32)


def test_minmax_by_hand():
    result = Normalization("minmax", STATS, VARIABLES).normalize(FRAMES)
    # (275-250)/50, (0.5-0)/1, (262-260)/10 ; (300-250)/50, 0/1, (270-260)/10
    np.testing.assert_allclose(result, [[[0.5, 0.5, 0.2], [1.0, 0.0, 1.0]]], rtol=1e-6)
    assert result.dtype == np.float32


def test_znorm_by_hand():
    result = Normalization("znorm", STATS, VARIABLES).normalize(FRAMES)
    # (275-280)/5, (0.5-0.25)/0.5, (262-265)/2 ; (300-280)/5, (0-0.25)/0.5, (270-265)/2
    np.testing.assert_allclose(result, [[[-1.0, 0.5, -1.5], [4.0, -0.5, 2.5]]], rtol=1e-6)


@pytest.mark.parametrize("method", ["minmax", "znorm"])
def test_round_trip_numpy_and_tensorflow(method):
    norm = Normalization(method, STATS, VARIABLES)
    frames = np.random.default_rng(0).uniform(250.0, 300.0, size=(2, 4, 3, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(frames)), frames, rtol=1e-6)
    normalized = norm.normalize(tf.constant(frames))
    assert isinstance(normalized, tf.Tensor) and normalized.dtype == tf.float32
    np.testing.assert_allclose(normalized.numpy(), norm.normalize(frames), rtol=1e-6)
    np.testing.assert_allclose(norm.denormalize(normalized).numpy(), frames, rtol=1e-6)


def test_repeated_channels_and_float64_keep_their_statistics():
    norm = Normalization("minmax", STATS, ["t_850", "2t", "t_850"])
    result = norm.normalize(np.array([265.0, 275.0, 270.0]))
    np.testing.assert_allclose(result, [0.5, 0.5, 1.0])  # (265-260)/10, (275-250)/50, (270-260)/10
    assert result.dtype == np.float64


def test_a_constant_variable_gets_scale_one():
    stats = {"x": {"min": 3.0, "max": 3.0, "avg": 3.0, "sigma": 0.0}}
    for method in ("minmax", "znorm"):
        norm = Normalization(method, stats, ["x"])
        np.testing.assert_array_equal(norm.normalize(np.array([[3.0], [4.5]])), [[0.0], [1.5]])
        np.testing.assert_array_equal(norm.denormalize(np.array([[0.0], [1.5]])), [[3.0], [4.5]])


def test_to_dict_and_from_dict_through_json():
    norm = Normalization("znorm", STATS, VARIABLES)
    saved = json.loads(json.dumps(norm.to_dict()))
    assert saved == {"method": "znorm", "variables": VARIABLES,
                     "stats": {name: {key: STATS[name][key] for key in ("min", "max", "avg", "sigma")}
                               for name in VARIABLES}}  # extra keys such as count are not kept
    again = Normalization.from_dict(saved)
    assert again == norm and again != Normalization("minmax", STATS, VARIABLES)
    np.testing.assert_array_equal(again.normalize(FRAMES), norm.normalize(FRAMES))


@pytest.mark.parametrize("make, fragment", [
    (lambda: Normalization("robust", STATS, VARIABLES), "'robust': expected one of minmax, znorm"),
    (lambda: Normalization("minmax", STATS, ["2t", "msl"]), "lack the variable(s) msl"),
    (lambda: Normalization("minmax", {"2t": {"min": 1.0}}, ["2t"]), "needs numeric min, max, avg, sigma"),
    (lambda: Normalization("minmax", {"2t": {**STATS["2t"], "max": "hot"}}, ["2t"]), "needs numeric"),
    (lambda: Normalization.from_dict({"method": "minmax", "stats": STATS}), "'method', 'stats' and 'variables'"),
])
def test_bad_settings_are_user_errors(make, fragment):
    with pytest.raises(UserError) as err:
        make()
    assert fragment in str(err.value), str(err.value)


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="2 channels, the normalisation 3"):
        Normalization("minmax", STATS, VARIABLES).normalize(np.zeros((4, 2)))
