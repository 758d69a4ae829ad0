"""Block bootstrap, averages, skill scores and summary tables."""
import csv

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from video_prediction_tools.postprocess import bootstrap as B
from video_prediction_tools.utils.errors import UserError


def raw_metrics(nsamples=12 * 168, nlead=3, seed=0, shuffle=False):
    rng = np.random.default_rng(seed)
    init = pd.date_range("2017-01-01T11", periods=nsamples, freq="h").values
    values = rng.gamma(2.0, 1.0, (nsamples, nlead))
    order = rng.permutation(nsamples) if shuffle else np.arange(nsamples)
    coords = {"init_time": init[order], "fcst_hour": np.arange(1, nlead + 1)}
    model = xr.DataArray(values[order], dims=("init_time", "fcst_hour"), coords=coords, attrs={"units": "K^2"})
    return xr.Dataset({"2t_convLSTM_mse": model, "2t_persistence_mse": 2.0 * model}), values


def test_bootstrap_shapes_values_and_determinism():
    raw, values = raw_metrics()
    boots = B.block_bootstrap(raw)
    assert boots["2t_convLSTM_mse"].dims == ("iboot", "fcst_hour")
    assert boots["2t_convLSTM_mse"].shape == (1000, 3)
    assert boots.attrs["nblocks"] == 12 and boots.attrs["seed"] == 42
    # independent computation: block means of consecutive 168 samples, replicate = mean of the drawn blocks
    block_means = values.reshape(12, 168, 3).mean(axis=1)
    draws = np.sort(np.random.default_rng(42).integers(0, 12, size=(1000, 12)), axis=1)
    expected = np.stack([block_means[row].mean(axis=0) for row in draws])
    np.testing.assert_allclose(boots["2t_convLSTM_mse"].values, expected, rtol=1e-12)
    # same seed → identical; another seed → different
    again = B.block_bootstrap(raw)
    xr.testing.assert_identical(boots, again)
    other = B.block_bootstrap(raw, seed=7)
    assert not np.allclose(other["2t_convLSTM_mse"].values, boots["2t_convLSTM_mse"].values)


def test_bootstrap_pairs_replicates_across_variables_and_leaves_global_rng_alone():
    raw, _ = raw_metrics()
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    boots = B.block_bootstrap(raw)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    # persistence = 2 x model in every sample → every replicate is exactly twice the model's (same draws)
    np.testing.assert_allclose(boots["2t_persistence_mse"].values, 2 * boots["2t_convLSTM_mse"].values,
                               rtol=1e-12)


def test_bootstrap_sorts_by_init_time_and_drops_the_remainder():
    raw, _ = raw_metrics(nsamples=10 * 168 + 50)
    shuffled, _ = raw_metrics(nsamples=10 * 168 + 50, shuffle=True)
    xr.testing.assert_allclose(B.block_bootstrap(raw, nboots=50), B.block_bootstrap(shuffled, nboots=50))
    assert B.block_bootstrap(raw, nboots=50).attrs["nblocks"] == 10


def test_too_few_blocks_is_a_clear_error():
    raw, _ = raw_metrics(nsamples=9 * 168 + 167)
    with pytest.raises(UserError, match=r"at least 10 blocks of 168 samples \(1680 samples\).*1679"):
        B.block_bootstrap(raw)
    assert B.block_bootstrap(raw, block_length=100).attrs["nblocks"] == 16


def test_nan_samples_are_skipped_in_block_means():
    raw, values = raw_metrics(nsamples=10 * 2)
    raw["2t_convLSTM_mse"][0, :] = np.nan
    boots = B.block_bootstrap(raw, block_length=2, nboots=20)
    assert np.isfinite(boots["2t_convLSTM_mse"].values).all()


def test_summarize_metrics_writes_raw_bootstrapped_and_average():
    raw, values = raw_metrics()
    summary = B.summarize_metrics(raw, nboots=100)
    for name in ("2t_convLSTM_mse", "2t_persistence_mse"):
        assert summary[name].dims == ("init_time", "fcst_hour")
        assert summary[f"{name}_bootstrapped"].shape == (100, 3)
        assert summary[f"{name}_avg"].dims == ("fcst_hour",)
        assert summary[f"{name}_avg"].attrs["units"] == "K^2"
    np.testing.assert_allclose(summary["2t_convLSTM_mse_avg"].values, values.mean(axis=0), rtol=1e-12)
    assert summary.attrs["bootstrap_block_length"] == 168


def test_skill_score():
    model = xr.DataArray([1.0, 2.0, 4.0, 0.0])
    reference = xr.DataArray([2.0, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(B.skill_score(model, reference, perfect_score=0.0).values, [0.5, 0.0, -1.0, 1.0])
    acc_model, acc_reference = xr.DataArray([0.9, 1.0]), xr.DataArray([0.8, 0.8])
    np.testing.assert_allclose(B.skill_score(acc_model, acc_reference, perfect_score=1.0).values, [0.5, 1.0])
    # gradient ratio: perfect 1 approached from either side
    texture_model, texture_reference = xr.DataArray([1.1, 0.9, 1.3]), xr.DataArray([0.8, 1.2, 1.1])
    np.testing.assert_allclose(B.skill_score(texture_model, texture_reference, perfect_score=1.0).values,
                               [0.5, 0.5, -2.0])


def test_write_table_and_skill_summary(tmp_path):
    raw, values = raw_metrics()
    summary = B.summarize_metrics(raw, nboots=10)
    rows = B.skill_summary_rows(summary, "2t", "convLSTM", ["mse"], {"mse": 0.0})
    assert [row["fcst_hour"] for row in rows] == [1, 2, 3]
    assert rows[0]["skill_mse"] == pytest.approx(0.5)       # persistence MSE = 2 x model MSE
    csv_path, md_path = B.write_table(rows, tmp_path / "summary_metrics")
    with open(csv_path) as handle:
        table = list(csv.DictReader(handle))
    assert float(table[1]["convLSTM_mse"]) == pytest.approx(values[:, 1].mean(), rel=1e-5)
    lines = md_path.read_text().splitlines()
    assert lines[0].startswith("| fcst_hour | convLSTM_mse | persistence_mse | skill_mse |")
    assert len(lines) == 2 + 3


def test_skill_summary_gives_the_skill_against_every_baseline_present():
    raw, values = raw_metrics()
    raw["2t_copy_last_frame_mse"] = 4.0 * raw["2t_convLSTM_mse"]
    summary = B.summarize_metrics(raw, nboots=10)
    rows = B.skill_summary_rows(summary, "2t", "convLSTM", ["mse"], {"mse": 0.0})
    assert list(rows[0]) == ["fcst_hour", "convLSTM_mse", "persistence_mse", "skill_mse", "copy_last_frame_mse",
                             "skill_copy_last_frame_mse"]
    for row, lead_values in zip(rows, values.T):
        assert row["copy_last_frame_mse"] == pytest.approx(4.0 * lead_values.mean(), rel=1e-12)
        assert row["skill_mse"] == pytest.approx(0.5) and row["skill_copy_last_frame_mse"] == pytest.approx(0.75)
    # a baseline missing from the file (a quick evaluation, an older file) has no columns
    only_model = B.skill_summary_rows(summary[["2t_convLSTM_mse_avg"]], "2t", "convLSTM", ["mse"], {"mse": 0.0})
    assert list(only_model[0]) == ["fcst_hour", "convLSTM_mse"]
