"""Postprocessing: persistence alignment, per-sample netCDF files, plots, and the CLI end to end."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fixtures.common import assert_user_error, run_module
from fixtures.preprocessed import make_step1_experiment
from video_prediction_tools.postprocess import bootstrap, forecast as F, plots

MODULE = "video_prediction_tools.main_scripts.main_visualize_postprocess"
LAT = np.array([45.0, 44.7, 44.4, 44.1, 43.8, 43.5, 43.2, 42.9])
LON = np.array([359.1, 359.4, 359.7, 0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4])


@pytest.fixture(scope="module")
def year_boundary_data(tmp_path_factory):
    """Step-2 data of December 2017 (complete) and 2018-01-01T00..2018-01-02T05 with known values."""
    from video_prediction_tools.data_preprocess.step2 import run_step2

    exp_dir = tmp_path_factory.mktemp("persistence") / "era5-persistence-test"
    raw = make_step1_experiment(exp_dir, {(2017, 12): 744, (2018, 1): 30})
    run_step2(exp_dir, sequence_length=24)
    times = np.concatenate([raw[key][1] for key in sorted(raw)])
    data = np.concatenate([raw[key][0] for key in sorted(raw)])
    return exp_dir, dict(zip(times.tolist(), data))


def test_persistence_is_the_analysis_24h_before_valid_time_across_year_end(year_boundary_data):
    exp_dir, by_time = year_boundary_data
    reader = F.PersistenceReader(str(exp_dir), forecast_frames=12)
    inits = np.array(["2018-01-01T15", "2017-12-31T02", "2017-12-15T23"], dtype="datetime64[h]")
    persistence = reader.batch(inits, (8, 12, 3))
    assert persistence.shape == (3, 12, 8, 12, 3)
    for i, init in enumerate(inits):
        for lead in range(1, 13):
            source = (init + np.timedelta64(lead - 24, "h")).item()
            np.testing.assert_array_equal(persistence[i, lead - 1], by_time[source])
    # init 2018-01-01T15, lead 1 → 2017-12-31T16 (previous year); lead 12 → 2018-01-01T03
    np.testing.assert_array_equal(persistence[0, 0], by_time[np.datetime64("2017-12-31T16", "h").item()])
    np.testing.assert_array_equal(persistence[0, 11], by_time[np.datetime64("2018-01-01T03", "h").item()])
    assert reader.missing == []


def test_persistence_without_previous_day_is_nan_and_reported(year_boundary_data):
    exp_dir, by_time = year_boundary_data
    reader = F.PersistenceReader(str(exp_dir), forecast_frames=12)
    inits = np.array(["2017-12-01T05", "2017-12-02T11"], dtype="datetime64[h]")
    persistence = reader.batch(inits, (8, 12, 3))
    assert np.isnan(persistence[0]).all()
    np.testing.assert_array_equal(persistence[1, 0], by_time[np.datetime64("2017-12-01T12", "h").item()])
    assert reader.missing == [inits[0]]


def _sample(members=1, seed=0):
    rng = np.random.default_rng(seed)
    inputs = 280 + rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    reference = 280 + rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    forecast = reference[None] + rng.standard_normal((members, 12, 8, 12, 3)).astype(np.float32)
    persistence = reference + 2 * rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    init = np.datetime64("2018-01-01T11", "h")
    dataset = F.sample_dataset(["2t", "tcc", "t_850"], "convLSTM", init, inputs, reference, forecast, persistence,
                               LAT, LON, {"model": "convLSTM"})
    return dataset, (inputs, reference, forecast, persistence)


@pytest.mark.parametrize("members", [1, 3])
def test_sample_file_is_cf_netcdf_with_units(tmp_path, members):
    dataset, (inputs, reference, forecast, persistence) = _sample(members)
    path = tmp_path / F.sample_file_name(np.datetime64("2018-01-01T11", "h"), 7)
    assert path.name == "vfp_date_2018010111_sample_ind_7.nc"
    F.write_netcdf(dataset, path)
    with xr.open_dataset(path) as sample:
        assert sample["2t_in"].dims == ("in_hour", "lat", "lon")
        assert sample["in_hour"].values.tolist() == list(range(-11, 1))
        assert sample["fcst_hour"].values.tolist() == list(range(1, 13))
        assert sample["2t_ref"].attrs["units"] == "K" and sample["tcc_ref"].attrs["units"] == "1"
        assert sample["t_850_persistence_fcst"].attrs["long_name"].startswith("temperature at 850 hPa")
        assert sample["lat"].attrs["units"] == "degrees_north" and sample["lon"].attrs["units"] == "degrees_east"
        assert sample["init_time"].values == np.datetime64("2018-01-01T11", "ns")
        assert sample["valid_time"].values[0] == np.datetime64("2018-01-01T12", "ns")
        expected_dims = ("fcst_hour", "lat", "lon") if members == 1 else ("sample", "fcst_hour", "lat", "lon")
        assert sample["2t_convLSTM_fcst"].dims == expected_dims
        np.testing.assert_array_equal(sample["t_850_convLSTM_fcst"].values,
                                      forecast[..., 2] if members > 1 else forecast[0, ..., 2])
        np.testing.assert_array_equal(sample["2t_in"].values, inputs[..., 0])
        np.testing.assert_array_equal(sample["tcc_persistence_fcst"].values, persistence[..., 1])
        assert sample["2t_ref"].encoding["zlib"] is True


def test_variable_attributes():
    assert F.variable_attributes("2t") == {"long_name": "2 metre temperature", "units": "K"}
    assert F.variable_attributes("t_850")["long_name"] == "temperature at 850 hPa"
    assert F.variable_attributes("foo")["units"] == "unknown"


def test_example_sample_positions_pick_percentiles():
    scores = np.array([5.0, np.nan, 1.0, 3.0, 2.0, 4.0])
    positions = F.example_sample_positions(scores, percentiles=[0, 50, 100])
    assert positions == {0: 2, 50: 3, 100: 0}


def _evaluation():
    rng = np.random.default_rng(0)
    init = pd.date_range("2018-01-01", periods=40, freq="h").values
    coords = {"init_time": init, "fcst_hour": np.arange(1, 13)}
    mse = xr.DataArray(rng.gamma(2, 1, (40, 12)) * np.arange(1, 13), dims=("init_time", "fcst_hour"),
                       coords=coords, attrs={"units": "K^2"})
    raw = xr.Dataset({"2t_convLSTM_mse": mse, "2t_persistence_mse": 1.5 * mse})
    return bootstrap.summarize_metrics(raw, block_length=4, nboots=50)


def test_plots_are_written_and_closed(tmp_path):
    evaluation = _evaluation()
    path = plots.plot_metric_vs_lead(evaluation, "2t", "mse", {"convLSTM": "convLSTM",
                                                               "persistence": "persistence"},
                                     tmp_path / "evaluation_mse.png")
    dataset, _ = _sample(members=2)
    example = plots.plot_example_forecast(dataset, "2t", "convLSTM", tmp_path / "forecast_2t.png")
    quantiles = plots.ConditionalQuantiles()
    quantiles.add(np.random.default_rng(0).normal(280, 3, 1000), np.random.default_rng(1).normal(280, 3, 1000))
    cq = plots.plot_conditional_quantiles(quantiles.result(), "2t from convLSTM [K]", "2t from ERA5 [K]",
                                          tmp_path / "cq.png")
    for written in (path, example, cq):
        assert written.is_file() and written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []
    assert plots.metric_axis_label("mse", "K^2") == "MSE [K^2]"
    assert plots.example_leads(range(1, 13)) == [1, 5, 8, 12]


def test_conditional_quantiles_match_numpy_within_resolution():
    rng = np.random.default_rng(3)
    condition = rng.normal(280.0, 4.0, 20000)
    target = condition + rng.normal(0.0, 1.0, 20000)
    accumulator = plots.ConditionalQuantiles(bin_width=1.0, resolution=0.05)
    for part in np.array_split(np.arange(20000), 7):  # streaming in pieces (the histogram grows)
        accumulator.add(condition[part], target[part])
    accumulator.add([np.nan], [1.0])
    result = accumulator.result()
    assert int(result["counts"].sum()) == 20000
    for centre in (276.5, 280.5, 283.5):
        inside = np.floor(condition) == np.floor(centre)
        expected = np.quantile(target[inside], [0.05, 0.5, 0.95])
        got = result["quantile_panel"].sel(bin_center=centre).values
        np.testing.assert_allclose(got, expected, atol=0.05 + 0.02)


# --- the CLI ---------------------------------------------------------------------------------------------------
def test_missing_or_incomplete_checkpoint_is_a_user_error(tmp_path):
    result = run_module(MODULE, "--checkpoint", tmp_path / "nope", "--results_dir", tmp_path / "results")
    assert_user_error(result, "nope", "does not exist")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint_5").mkdir(parents=True)
    (run_dir / "checkpoint_5" / "model.weights.h5").write_bytes(b"")
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", tmp_path / "results")
    assert_user_error(result, "no complete checkpoint_<step>")
    result = run_module(MODULE, "--checkpoint", run_dir / "checkpoint_5", "--results_dir", tmp_path / "results")
    assert_user_error(result, "checkpoint_5", "incomplete")


def test_unknown_metric_is_a_user_error(tmp_path):
    result = run_module(MODULE, "--checkpoint", tmp_path, "--results_dir", tmp_path / "r",
                        "--evaluation_metrics", "mse", "crps")
    assert_user_error(result, "crps")


# --- end to end on the trained tiny model of the training area --------------------------------------------------
TF_ENV = {"TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}


@pytest.fixture(scope="module")
def trained_run(tiny_trained_run, tiny_tfrecords):
    """(run dir, {datetime: raw float32 [lat, lon, channel]}): the convLSTM of ``tiny_trained_run`` on
    ``tiny_tfrecords`` (2017-2018 x months 01-02, 72 h each); test split 2018-02 = 49 windows, inits
    2018-02-01T11 .. 2018-02-03T11; January 2018 holds only its first 3 days."""
    raw = tiny_tfrecords.raw
    times = np.concatenate([raw[key][1] for key in sorted(raw)])
    data = np.concatenate([raw[key][0] for key in sorted(raw)])
    return tiny_trained_run, dict(zip(times.tolist(), data))


def _climatology_file(path, lat, lon):
    rng = np.random.default_rng(5)
    values = (280 + rng.standard_normal((12, 24, len(lat), len(lon)))).astype(np.float32)
    xr.Dataset({"2t": (("month", "hour", "lat", "lon"), values)},
               coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": lat, "lon": lon}).to_netcdf(path)
    return xr.DataArray(values, dims=("month", "hour", "lat", "lon"),
                        coords={"month": np.arange(1, 13), "hour": np.arange(24)})


@pytest.mark.slow
def test_full_postprocessing_cli(trained_run, tmp_path):
    run_dir, by_time = trained_run
    results = tmp_path / "Results"
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", results, "--batch_size", 4,
                        "--block_length", 4, "--nboots", 100, env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no --climatology_file given: metric(s) acc, weighted_acc skipped" in result.stderr
    samples = sorted(results.glob("vfp_date_*_sample_ind_*.nc"))
    assert len(samples) == 49
    evaluation = xr.open_dataset(results / "evaluation_metrics.nc")
    assert evaluation.attrs["model"] == "convLSTM" and evaluation.attrs["variable"] == "2t"
    assert evaluation.sizes["init_time"] == 49
    for product in ("convLSTM", "persistence"):
        for metric in ("mse", "rmse", "psnr", "ssim", "texture", "weighted_rmse"):
            name = f"2t_{product}_{metric}"
            assert evaluation[name].dims == ("init_time", "fcst_hour")
            assert evaluation[f"{name}_bootstrapped"].shape == (100, 12)
            assert evaluation[f"{name}_avg"].dims == ("fcst_hour",)
        assert f"2t_{product}_acc" not in evaluation
    assert evaluation["2t_convLSTM_mse"].attrs["units"] == "K^2"

    path = results / "vfp_date_2018020223_sample_ind_36.nc"
    with xr.open_dataset(path) as sample:
        init = np.datetime64("2018-02-02T23", "h")
        for lead in (1, 12):
            valid = init + np.timedelta64(lead, "h")
            # reference = the analysis at the valid time; persistence = the analysis 24 h earlier
            np.testing.assert_allclose(sample["2t_ref"].sel(fcst_hour=lead).values, by_time[valid.item()][..., 0],
                                       rtol=1e-5)
            np.testing.assert_array_equal(sample["2t_persistence_fcst"].sel(fcst_hour=lead).values,
                                          by_time[(valid - np.timedelta64(24, "h")).item()][..., 0])
        np.testing.assert_allclose(sample["t_850_in"].sel(in_hour=0).values, by_time[init.item()][..., 2], rtol=1e-5)
        evaluation_grid = {"lat": sample["lat"].values, "lon": sample["lon"].values}
        model_mse = ((sample["2t_convLSTM_fcst"] - sample["2t_ref"]) ** 2).mean(("lat", "lon")).values
        stored = evaluation["2t_convLSTM_mse"].sel(init_time=np.datetime64(init, "ns")).values
        np.testing.assert_allclose(stored, model_mse, rtol=1e-5)
        assert sample["2t_ref"].attrs["units"] == "K"
    # the first day has no previous day in the data: persistence NaN there, reported
    with xr.open_dataset(results / "vfp_date_2018020111_sample_ind_0.nc") as first:
        assert np.isnan(first["2t_persistence_fcst"].values).all()
    assert "persistence unavailable" in result.stderr
    assert np.isnan(evaluation["2t_persistence_mse"].values[0]).all()
    assert np.isfinite(evaluation["2t_persistence_mse_avg"].values).all()

    for metric in ("mse", "rmse", "psnr", "ssim", "texture", "weighted_rmse"):
        assert (results / f"evaluation_{metric}.png").is_file()
    assert len(list(results.glob("forecast_2t_*_mse_*percentile.png"))) == 11
    assert len(list(results.glob("cond_quantile_2t_convLSTM_fh*_calibration_refinement.png"))) == 12
    assert len(list(results.glob("cond_quantile_2t_convLSTM_fh*_likelihood-base_rate.png"))) == 12
    summary = (results / "summary_metrics.csv").read_text().splitlines()
    assert summary[0].startswith("fcst_hour,convLSTM_mse,persistence_mse,skill_mse")
    assert len(summary) == 13 and (results / "summary_metrics.md").is_file()
    assert (results / "postprocess.log").is_file() and (results / "options_checkpoints.json").is_file()

    # quick evaluation with a climatology: model metrics only, ACC at the valid time
    quick = tmp_path / "Quick"
    climatology = _climatology_file(tmp_path / "clim.nc", evaluation_grid["lat"], evaluation_grid["lon"])
    checkpoint = sorted(run_dir.glob("checkpoint_*"))[0]
    result = run_module(MODULE, "--checkpoint", checkpoint, "--results_dir", quick,
                        "--lquick_evaluation", "--evaluation_metrics", "mse", "acc", "--climatology_file",
                        tmp_path / "clim.nc", "--block_length", 4, "--nboots", 10, env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in quick.glob("*.png")) == [] and not list(quick.glob("vfp_date_*"))
    with xr.open_dataset(quick / "evaluation_metrics.nc") as quick_eval:
        assert "2t_persistence_mse" not in quick_eval
        np.testing.assert_allclose(quick_eval["2t_convLSTM_mse"].values, evaluation["2t_convLSTM_mse"].values,
                                   rtol=1e-6)
        with xr.open_dataset(path) as sample:
            lead = 3
            valid = init + np.timedelta64(lead, "h")   # 2018-02-03T02: month 2, hour 2
            clim = climatology.sel(month=2, hour=2).values
            f = sample["2t_convLSTM_fcst"].sel(fcst_hour=lead).values.astype(np.float64) - clim
            o = sample["2t_ref"].sel(fcst_hour=lead).values.astype(np.float64) - clim
            expected = (f * o).sum() / np.sqrt((f ** 2).sum() * (o ** 2).sum())
            stored = float(quick_eval["2t_convLSTM_acc"].sel(init_time=np.datetime64(init, "ns"), fcst_hour=lead))
            assert stored == pytest.approx(expected, rel=1e-5)
            assert str(valid) == "2018-02-03T02"


@pytest.mark.slow
def test_missing_climatology_file_skips_acc_and_too_few_blocks_fail_early(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", tmp_path / "r", "--lquick_evaluation",
                        "--mode", "val", "--evaluation_metrics", "mse", "acc", "--climatology_file",
                        tmp_path / "none.nc", "--block_length", 4, "--nboots", 10, env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "none.nc not found: metric(s) acc skipped" in result.stderr
    with xr.open_dataset(tmp_path / "r" / "evaluation_metrics.nc") as evaluation:
        assert "2t_convLSTM_mse" in evaluation and "2t_convLSTM_acc" not in evaluation
        # --mode val evaluates the val split (2018-01), chronologically sorted
        init = evaluation["init_time"].values
        assert len(init) == 49 and init[0] == np.datetime64("2018-01-01T11", "ns") and (np.diff(init) > 0).all()
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", tmp_path / "r2", "--lquick_evaluation",
                        env=TF_ENV)
    assert_user_error(result, "at least 10 blocks of 168 samples", "49 sample(s)", "--block_length")
    # a wrong coastline file is reported before forecasting, not when the first map is drawn
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", tmp_path / "r3", "--mode", "val",
                        "--block_length", 4, env={**TF_ENV, "AMBS_COASTLINES": str(tmp_path / "coast.shp")})
    assert_user_error(result, f"AMBS_COASTLINES={tmp_path / 'coast.shp'}: no such coastline shapefile")
    assert not list((tmp_path / "r3").glob("vfp_date_*.nc"))


def test_scores_of_several_members_are_the_mean_of_member_scores():
    from video_prediction_tools.postprocess.metrics import MSE, SSIM

    rng = np.random.default_rng(4)
    init = np.array(["2018-01-01T11", "2018-01-01T12"], dtype="datetime64[ns]")
    coords = {"init_time": init, "fcst_hour": [1, 2, 3], "lat": LAT, "lon": LON}
    dims = ("init_time", "fcst_hour", "lat", "lon")
    truth = xr.DataArray(280 + rng.standard_normal((2, 3, 8, 12)), dims=dims, coords=coords)
    members = xr.DataArray(280 + rng.standard_normal((2, 2, 3, 8, 12)), dims=("sample", *dims), coords=coords)
    evaluation = F._Evaluation([MSE(), SSIM()], ["savp", "persistence"], "2t", np.array([1, 2, 3]), quantiles=True)
    evaluation.add(truth, {"savp": members, "persistence": members.isel(sample=0)})
    raw = evaluation.raw_dataset({"model": "savp"})
    per_member = [((members.values[k] - truth.values) ** 2).mean(axis=(2, 3)) for k in range(2)]
    np.testing.assert_allclose(raw["2t_savp_mse"].values, (per_member[0] + per_member[1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(raw["2t_persistence_mse"].values, per_member[0], rtol=1e-12)
    assert set(raw.data_vars) == {"2t_savp_mse", "2t_savp_ssim", "2t_persistence_mse", "2t_persistence_ssim"}
    # conditional quantiles pool every member, init time and grid point of a lead hour
    assert int(evaluation.calibration[2].result()["counts"].sum()) == 2 * 2 * 8 * 12
