"""Exact mergeable statistics: monthly stats merged (parallel variance) equal the stats of the concatenated data."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

from video_prediction_tools.data_preprocess.statistics import channel_stats, field_stats, merge_stats
from video_prediction_tools.utils.errors import UserError


def numpy_stats(values):
    values = np.asarray(values, dtype=np.float64)
    return {"count": values.size, "min": values.min(), "max": values.max(), "avg": values.mean(),
            "sigma": values.std()}


def assert_stats_close(actual, expected, rtol=1e-12):
    assert actual["count"] == expected["count"]
    assert actual["min"] == expected["min"] and actual["max"] == expected["max"]
    np.testing.assert_allclose(actual["avg"], expected["avg"], rtol=rtol)
    np.testing.assert_allclose(actual["sigma"], expected["sigma"], rtol=1e-10)


@pytest.fixture(scope="module")
def months():
    """Six 'months' of float32 temperature-like data with different lengths, means and spreads."""
    rng = np.random.default_rng(42)
    return [(rng.normal(270.0 + 5 * k, 0.5 + k, size=(24 * (3 + k), 4, 5))).astype(np.float32) for k in range(6)]


def test_field_stats_equal_numpy(months):
    assert_stats_close(field_stats(months[0]), numpy_stats(months[0]), rtol=0)
    assert isinstance(field_stats(months[0])["count"], int)


def test_merge_equals_concatenation_for_every_subset(months):
    monthly = [{"2t": field_stats(month)} for month in months]
    for size in range(1, len(months) + 1):
        for subset in itertools.combinations(range(len(months)), size):
            merged = merge_stats([monthly[k] for k in subset])["2t"]
            expected = numpy_stats(np.concatenate([months[k].ravel() for k in subset]))
            assert_stats_close(merged, expected)


def test_merge_is_order_independent(months):
    monthly = [{"2t": field_stats(month)} for month in months]
    forward = merge_stats(monthly)["2t"]
    backward = merge_stats(monthly[::-1])["2t"]
    for key in ("avg", "sigma"):
        np.testing.assert_allclose(forward[key], backward[key], rtol=1e-12)


def test_channel_stats_counts_duplicates_once_in_first_occurrence_order():
    data = np.stack([np.full((2, 3, 3), 1.0), np.arange(18.0).reshape(2, 3, 3), np.full((2, 3, 3), 1.0)], axis=-1)
    stats = channel_stats(data, ["tcc", "2t", "tcc"])
    assert list(stats) == ["tcc", "2t"]
    assert stats["2t"] == {"count": 18, "min": 0.0, "max": 17.0, "avg": 8.5, "sigma": float(np.arange(18.0).std())}
    assert stats["tcc"]["sigma"] == 0.0


def test_merge_ignores_common_stat_and_rejects_mismatches(months):
    first = {"2t": field_stats(months[0]), "common_stat": {"nhours": 72}}
    second = {"2t": field_stats(months[1])}
    assert list(merge_stats([first, second])) == ["2t"]
    with pytest.raises(UserError, match="hold variables"):
        merge_stats([first, {"tcc": field_stats(months[1])}])
    with pytest.raises(UserError, match="expected the keys"):
        merge_stats([first, {"2t": {"min": 1.0}}])
    with pytest.raises(UserError, match="empty"):
        merge_stats([])


def test_statistics_module_does_not_import_tensorflow():
    code = ("import sys, video_prediction_tools.data_preprocess.statistics as s; "
            "print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
