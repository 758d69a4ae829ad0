"""Postprocessing: the baselines (persistence alignment, the last frame held), per-sample netCDF files, plots, and the
CLI end to end."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fixtures.common import assert_user_error, run_module
from fixtures.preprocessed import make_step1_experiment
from video_prediction_tools.data_extraction.climatology import check_climatology_covers
from video_prediction_tools.postprocess import bootstrap, era5_job, figure_selection, plots, results_io as R
from video_prediction_tools.postprocess.evaluation import ScoreAccumulator
from video_prediction_tools.postprocess.baselines import BASELINES, COPY_LAST_FRAME, PERSISTENCE, CopyLastFrame, \
    Persistence, skill_name
from video_prediction_tools.utils.errors import UserError

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
    reader = Persistence(str(exp_dir), forecast_frames=12)
    inits = np.array(["2018-01-01T15", "2017-12-31T02", "2017-12-15T23"], dtype="datetime64[h]")
    persistence = reader.fields(inits, np.zeros((3, 12, 8, 12, 3), np.float32))
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
    reader = Persistence(str(exp_dir), forecast_frames=12)
    inits = np.array(["2017-12-01T05", "2017-12-02T11"], dtype="datetime64[h]")
    persistence = reader.fields(inits, np.zeros((2, 12, 8, 12, 3), np.float32))
    assert np.isnan(persistence[0]).all()
    np.testing.assert_array_equal(persistence[1, 0], by_time[np.datetime64("2017-12-01T12", "h").item()])
    assert reader.missing == [inits[0]]


def test_copy_last_frame_holds_the_last_context_frame_exactly():
    rng = np.random.default_rng(3)
    context = (280 + 5 * rng.standard_normal((4, 12, 8, 12, 3))).astype(np.float32)
    inits = np.arange("2018-01-01T11", "2018-01-01T15", dtype="datetime64[h]")
    baseline = CopyLastFrame("unused: made from the window alone", forecast_frames=7)
    fields = baseline.fields(inits, context)
    assert fields.shape == (4, 7, 8, 12, 3) and fields.dtype == np.float32
    for lead in range(7):
        np.testing.assert_array_equal(fields[:, lead], context[:, -1])
    assert baseline.missing == []


def test_baselines_are_one_registry_with_distinct_skill_names():
    assert list(BASELINES) == [PERSISTENCE, COPY_LAST_FRAME]
    assert all(cls.name == name and cls.long_name for name, cls in BASELINES.items())
    # today's skill against persistence keeps its name; the skill against any other baseline names it
    assert skill_name(PERSISTENCE, "mse") == "skill_mse"
    assert skill_name(COPY_LAST_FRAME, "mse") == "skill_copy_last_frame_mse"


def _sample(members=1, seed=0):
    rng = np.random.default_rng(seed)
    inputs = 280 + rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    reference = 280 + rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    forecast = reference[None] + rng.standard_normal((members, 12, 8, 12, 3)).astype(np.float32)
    persistence = reference + 2 * rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    init = np.datetime64("2018-01-01T11", "h")
    dataset = R.sample_dataset(["2t", "tcc", "t_850"], "convLSTM", init, inputs, reference, forecast, persistence,
                               LAT, LON, {"model": "convLSTM"})
    return dataset, (inputs, reference, forecast, persistence)


@pytest.mark.parametrize("members", [1, 3])
def test_sample_file_is_cf_netcdf_with_units(tmp_path, members):
    dataset, (inputs, reference, forecast, persistence) = _sample(members)
    path = tmp_path / R.sample_file_name(np.datetime64("2018-01-01T11", "h"), 7)
    assert path.name == "vfp_date_2018010111_sample_ind_7.nc"
    R.write_netcdf(dataset, path)
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


def _netcdf_layout(path):
    """Everything of a netCDF file but its data: format, global attributes, dimensions in order, and per variable
    its dtype, dimensions, attributes, compression filters and chunking."""
    import netCDF4

    with netCDF4.Dataset(path) as file:
        variables = {name: (str(var.dtype), var.dimensions, {key: str(var.getncattr(key)) for key in var.ncattrs()},
                            var.filters(), var.chunking()) for name, var in file.variables.items()}
        return (file.data_model, {key: str(file.getncattr(key)) for key in file.ncattrs()},
                [(name, len(dim)) for name, dim in file.dimensions.items()], variables)


@pytest.mark.parametrize("members, leads, compression", [(1, 12, "none"), (3, 12, "zlib"), (2, 1, "none"),
                                                         (1, 12, "zlib")])
def test_sample_writer_gives_the_file_xarray_writes(tmp_path, members, leads, compression):
    """The fast netCDF4 writer of the sample files and xarray's ``to_netcdf`` of the same Dataset: same
    variables, values (NaN persistence included), attributes, time encoding, dimensions and compression."""
    rng = np.random.default_rng(members)
    inputs = 280 + rng.standard_normal((12, 8, 12, 3)).astype(np.float32)
    reference = 280 + rng.standard_normal((leads, 8, 12, 3)).astype(np.float32)
    forecast = reference[None] + rng.standard_normal((members, leads, 8, 12, 3)).astype(np.float32)
    persistence = reference + 2 * rng.standard_normal((leads, 8, 12, 3)).astype(np.float32)
    persistence[0, :2] = np.nan
    arguments = (["2t", "tcc", "2t"], "savp", np.datetime64("2017-12-31T23", "h"), inputs, reference, forecast,
                 persistence, LAT, LON, {"model": "savp", "checkpoint_step": 40, "mode": "test"})
    R.write_netcdf(R.sample_dataset(*arguments), tmp_path / "xarray.nc", R.SAMPLE_COMPRESSION[compression])
    R.write_sample(R.sample_content(*arguments), tmp_path / "fast.nc", R.SAMPLE_COMPRESSION[compression])
    layout = _netcdf_layout(tmp_path / "fast.nc")
    assert layout == _netcdf_layout(tmp_path / "xarray.nc")
    assert layout[3]["2t_ref"][3]["zlib"] == (compression == "zlib")
    with xr.open_dataset(tmp_path / "fast.nc", decode_times=False) as fast, \
            xr.open_dataset(tmp_path / "xarray.nc", decode_times=False) as expected:
        xr.testing.assert_identical(fast, expected)
    with xr.open_dataset(tmp_path / "fast.nc") as fast:
        # values against the inputs, computed here: not only the same as xarray but the right ones
        np.testing.assert_array_equal(fast["2t_persistence_fcst"].values, persistence[..., 0])
        np.testing.assert_array_equal(fast["tcc_in"].values, inputs[..., 1])
        members_written = fast["2t_savp_fcst"].values
        np.testing.assert_array_equal(members_written, forecast[..., 0] if members > 1 else forecast[0, ..., 0])
        assert fast["init_time"].values == np.datetime64("2017-12-31T23", "ns")
        expected_valid = np.datetime64("2018-01-01T00", "ns") + np.arange(leads) * np.timedelta64(1, "h")
        np.testing.assert_array_equal(fast["valid_time"].values, expected_valid)
        assert "sample" in fast.dims if members > 1 else "sample" not in fast.dims
    assert not [path.name for path in tmp_path.iterdir() if ".tmp-" in path.name]


def test_variable_attributes():
    assert R.variable_attributes("2t") == {"long_name": "2 metre temperature", "units": "K"}
    assert R.variable_attributes("t_850")["long_name"] == "temperature at 850 hPa"
    assert R.variable_attributes("foo")["units"] == "unknown"


def test_example_sample_positions_pick_percentiles():
    scores = np.array([5.0, np.nan, 1.0, 3.0, 2.0, 4.0])
    positions = figure_selection.example_sample_positions(scores, percentiles=[0, 50, 100])
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


def test_one_score_figure_draws_each_metric_as_a_new_figure_would(tmp_path):
    """The score-against-lead figure reused for every metric gives the same pixels as a new figure per metric:
    other ranges and units, a product without bootstrap band, fewer products."""
    import matplotlib.image

    evaluation = _evaluation()
    ssim = (1 - evaluation["2t_convLSTM_mse_avg"] / 100).assign_attrs(units="1")
    evaluation = evaluation.assign({"2t_convLSTM_ssim_avg": ssim, "2t_persistence_ssim_avg": ssim * 0.9})
    both = {"convLSTM": "convLSTM", "persistence": "persistence"}
    series = [("mse", both), ("ssim", both), ("mse", {"convLSTM": "convLSTM"}), ("mse", both)]
    with plots.MetricVsLeadFigure() as figure:
        for k, (metric, products) in enumerate(series):
            figure.save(evaluation, "2t", metric, products, tmp_path / f"reused_{k}.png")
    for k, (metric, products) in enumerate(series):
        plots.plot_metric_vs_lead(evaluation, "2t", metric, products, tmp_path / f"new_{k}.png")
        np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / f"reused_{k}.png"),
                                      matplotlib.image.imread(tmp_path / f"new_{k}.png"))
    assert plt.get_fignums() == []


def test_one_example_figure_draws_each_forecast_as_a_new_figure_would(tmp_path):
    """The example-forecast figure reused for a series of forecasts gives the same pixels as a new figure per
    forecast: other values and colour ranges, persistence unavailable, other leads (a new layout), also after
    being prepared with a sample of NaN fields (before any forecast exists)."""
    import matplotlib.image

    samples = [_sample(members=1, seed=seed)[0] for seed in range(3)]
    samples[1]["2t_persistence_fcst"][:] = np.nan  # "not available" in the persistence column
    samples[2]["2t_ref"] += 5.0  # another colour range
    series = [(sample, None) for sample in samples] + [(samples[0], [2, 6])]
    with plots.ExampleForecastFigure() as figure:
        figure.prepare(samples[0].map(lambda values: values * np.nan, keep_attrs=True), "2t", "convLSTM")
        for k, (sample, leads) in enumerate(series):
            figure.save(sample, "2t", "convLSTM", tmp_path / f"reused_{k}.png", leads=leads)
    for k, (sample, leads) in enumerate(series):
        plots.plot_example_forecast(sample, "2t", "convLSTM", tmp_path / f"new_{k}.png", leads=leads)
        np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / f"reused_{k}.png"),
                                      matplotlib.image.imread(tmp_path / f"new_{k}.png"))
    assert plt.get_fignums() == []


def test_example_figure_prepared_before_the_forecasts_is_the_one_their_maps_are_drawn_on(tmp_path):
    """The helper builds the example figure from ``layout_sample`` (NaN fields of the run's grid) while the model
    loads: a sample file of that run, as written and read back, has the same layout, so its map is drawn on the
    prepared figure (no new figure) and gives the pixels of a new figure."""
    import types

    import matplotlib.image

    job = types.SimpleNamespace(context_frames=12, forecast_frames=12,
                                dataset=types.SimpleNamespace(frame_shape=(8, 12, 3), variables=["2t", "tcc", "t_850"],
                                                              lat=LAT, lon=LON),
                                run=types.SimpleNamespace(model_name="convLSTM"))
    rng = np.random.default_rng(5)
    fields = 280 + rng.standard_normal((24, 8, 12, 3)).astype(np.float32)
    R.write_sample(R.sample_content(job.dataset.variables, "convLSTM", np.datetime64("2017-03-02T11", "h"),
                                    fields[:12], fields[12:], fields[None, 12:] + 1, fields[12:] - 1, LAT, LON,
                                    {"model": "convLSTM"}), tmp_path / "sample.nc")
    with plots.ExampleForecastFigure() as figure, xr.open_dataset(tmp_path / "sample.nc") as sample:
        figure.prepare(figure_selection.layout_sample(job), "2t", "convLSTM")
        prepared = figure.maps
        figure.save(sample.load(), "2t", "convLSTM", tmp_path / "prepared.png")
        assert figure.maps is prepared
        plots.plot_example_forecast(sample, "2t", "convLSTM", tmp_path / "new.png")
    np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "prepared.png"),
                                  matplotlib.image.imread(tmp_path / "new.png"))


def test_one_conditional_quantile_figure_draws_each_plot_as_a_new_figure_would(tmp_path):
    """The figure reused for every lead hour gives the same pixels as a figure made for each plot, whatever the
    plot before it left (other bins and numbers of bins, counts, labels, a plot without any data, the drawing
    without data that prepares it)."""
    import matplotlib.image

    rng = np.random.default_rng(4)
    results = []
    for spread in (3.0, 8.0, 1.0):
        quantiles = plots.ConditionalQuantiles()
        truth = rng.normal(280.0, spread, 3000)
        quantiles.add(truth + rng.normal(0.0, 1.0, 3000), truth)
        results.append(quantiles.result())
    results.insert(2, plots.ConditionalQuantiles().result())  # nothing counted
    labels = [(f"2t from model {k} [K]", f"2t from ERA5 {k} [K]", f"lead {k} h") for k in range(len(results))]
    with plots.ConditionalQuantileFigure() as figure:
        figure.prepare(*labels[0][:2])  # as the helper process before the forecasts
        reused = [figure.save(result, *label[:2], tmp_path / f"reused_{k}.png", title=label[2])
                  for k, (result, label) in enumerate(zip(results, labels))]
    for k, (result, label) in enumerate(zip(results, labels)):
        # the reference: a figure made from scratch for this plot alone
        figure, axis = plt.subplots(figsize=(8, 5))
        centres, counts = result["bin_center"].values, result["counts"].values
        present = counts > 0
        limits = [centres[present].min() - 0.5, centres[present].max() + 0.5] if present.any() else [0, 1]
        axis.plot(limits, limits, color="tab:grey", linewidth=0.8, label="1:1")
        for q in result["quantile"].values:
            axis.plot(centres, result["quantile_panel"].sel(quantile=q).values, color="black",
                      linestyle="-" if q == 0.5 else "--", linewidth=1.5 if q == 0.5 else 1.0,
                      label=f"{q:.0%} quantile")
        axis.set_xlabel(label[0])
        axis.set_ylabel(label[1])
        axis.set_xlim(limits)
        axis.legend(loc="upper left")
        counts_axis = axis.twinx()
        counts_axis.bar(centres, counts, width=1.0, color="grey", alpha=0.3)
        counts_axis.set_yscale("log")
        counts_axis.set_ylabel("counts")
        counts_axis.set_ylim((0.5, counts.max() ** 3) if present.any() else (1, 10))
        axis.set_title(label[2])
        figure.savefig(tmp_path / f"fresh_{k}.png", format="png", dpi=100)
        plt.close(figure)
        np.testing.assert_array_equal(matplotlib.image.imread(reused[k]),
                                      matplotlib.image.imread(tmp_path / f"fresh_{k}.png"))
    assert plt.get_fignums() == []


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
    assert not (tmp_path / "results").exists()  # refused before the results directory or its log is created


def test_unknown_metric_is_a_user_error(tmp_path):
    result = run_module(MODULE, "--checkpoint", tmp_path, "--results_dir", tmp_path / "r",
                        "--evaluation_metrics", "mse", "brier")
    assert_user_error(result, "brier")
    assert not (tmp_path / "r").exists()


def test_default_metrics_include_acc_only_with_a_climatology_file(tmp_path):
    climatology = tmp_path / "clim.nc"
    climatology.write_bytes(b"")  # existence is checked here; contents when the domain is known
    ensemble = ["crps", "ensemble_mean_mse", "ensemble_mean_rmse"]
    assert era5_job.resolve_metric_names(None, None) == ["mse", "rmse", "psnr", "ssim", "texture", "weighted_rmse",
                                                         *ensemble]
    assert era5_job.resolve_metric_names(None, str(climatology)) == ["mse", "rmse", "psnr", "ssim", "acc", "texture",
                                                              "weighted_rmse", "weighted_acc", *ensemble]
    assert era5_job.resolve_metric_names(["mse", "mse", "rmse"], None) == ["mse", "rmse"]
    with pytest.raises(UserError, match="acc need a climatology: give --climatology_file or drop acc"):
        era5_job.resolve_metric_names(["mse", "acc"], None)
    with pytest.raises(UserError, match=f"climatology file {tmp_path / 'none.nc'} does not exist .needed by metric.s. "
                                        f"weighted_acc"):
        era5_job.resolve_metric_names(["weighted_acc"], str(tmp_path / "none.nc"))
    # a given but missing file with the default metrics (which then include ACC) is an error too
    with pytest.raises(UserError, match="none.nc does not exist"):
        era5_job.resolve_metric_names(None, str(tmp_path / "none.nc"))


def test_climatology_must_cover_every_month_and_hour_of_the_valid_times():
    months, hours = np.arange(1, 13), np.arange(24)
    values = np.ones((12, 24, 2, 3), dtype=np.float32)
    values[1, 5, 0, 0] = np.nan  # February 05 UTC has a gap on the domain: ACC there would be NaN
    values[2] = np.nan           # March has no data at all (the climatology step writes NaN then)
    climatology = xr.DataArray(values, dims=("month", "hour", "lat", "lon"), coords={"month": months, "hour": hours})
    february = np.arange(np.datetime64("2018-02-01T00"), np.datetime64("2018-02-01T05"), np.timedelta64(1, "h"))
    check_climatology_covers(climatology, february, "clim.nc")
    valid = np.arange(np.datetime64("2018-02-28T00"), np.datetime64("2018-03-01T02"), np.timedelta64(1, "h"))
    with pytest.raises(UserError) as error:
        check_climatology_covers(climatology, valid, "clim.nc")
    assert "climatology clim.nc has no values for month 2 hour(s) 5; month 3 (all 2 hours)" in str(error.value)
    with pytest.raises(UserError, match="month 7 hour.s. 0, 1"):  # a coordinate that is absent is missing too
        check_climatology_covers(climatology.isel(hour=slice(2, None)), valid + np.timedelta64(150, "D"), "c")


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


def test_the_job_is_checked_without_tensorflow_and_its_model_loaded_last(trained_run, tmp_path):
    """``open_job`` checks the run without importing TensorFlow (the helper lays out its figures meanwhile) and
    writes nothing; ``load_model`` then gives the model with the frames the job already had."""
    run_dir, _ = trained_run
    options = f"checkpoint={str(run_dir)!r}, results_dir={str(tmp_path / 'results')!r}, block_length=4"
    script = ("import sys\n"
              "from video_prediction_tools.postprocess.era5_job import load_model, open_job\n"
              "from video_prediction_tools.postprocess.options import PostprocessOptions\n"
              f"job = open_job(PostprocessOptions({options}))\n"
              "print({'tensorflow', 'keras'} & set(sys.modules), job.context_frames, job.forecast_frames, job.model)\n"
              "job = load_model(job)\n"
              "print(job.model.context_frames, job.model.forecast_frames, job.members)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, **TF_ENV})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["set() 12 12 None", "12 12 1"]
    assert not (tmp_path / "results").exists()


def _climatology_file(path, lat, lon):
    rng = np.random.default_rng(5)
    values = (280 + rng.standard_normal((12, 24, len(lat), len(lon)))).astype(np.float32)
    xr.Dataset({"2t": (("month", "hour", "lat", "lon"), values)},
               coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": lat, "lon": lon}).to_netcdf(path)
    return xr.DataArray(values, dims=("month", "hour", "lat", "lon"),
                        coords={"month": np.arange(1, 13), "hour": np.arange(24)})


#: the options of the full run of the tiny model (default metrics: ACC left out, no climatology file given)
FULL_RUN_OPTIONS = ("--batch_size", 4, "--block_length", 4, "--nboots", 100)


@pytest.fixture(scope="module")
def full_results(trained_run, tmp_path_factory):
    """(results dir, CompletedProcess) of one uninterrupted postprocessing run with :data:`FULL_RUN_OPTIONS`."""
    run_dir, _ = trained_run
    results = tmp_path_factory.mktemp("full") / "Results"
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", results, *FULL_RUN_OPTIONS, env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return results, result


#: a forecast of the full run: its sample file and initialisation time
FULL_RUN_SAMPLE, FULL_RUN_INIT = "vfp_date_2018020223_sample_ind_36.nc", np.datetime64("2018-02-02T23", "h")


@pytest.mark.slow
def test_full_postprocessing_cli(trained_run, full_results):
    _, by_time = trained_run
    results, result = full_results
    assert "acc" not in json.loads((results / "options.json").read_text())["evaluation_metrics"]
    assert len(list(results.glob("vfp_date_*_sample_ind_*.nc"))) == 49
    evaluation = xr.open_dataset(results / "evaluation_metrics.nc")
    assert evaluation.attrs["model"] == "convLSTM" and evaluation.attrs["variable"] == "2t"
    assert evaluation.sizes["init_time"] == 49
    assert evaluation.attrs["products"] == "convLSTM persistence copy_last_frame"
    for product in ("convLSTM", "persistence", "copy_last_frame"):
        for metric in ("mse", "rmse", "psnr", "ssim", "texture", "weighted_rmse"):
            name = f"2t_{product}_{metric}"
            assert evaluation[name].dims == ("init_time", "fcst_hour")
            assert evaluation[f"{name}_bootstrapped"].shape == (100, 12)
            assert evaluation[f"{name}_avg"].dims == ("fcst_hour",)
        assert f"2t_{product}_acc" not in evaluation
    assert evaluation["2t_convLSTM_mse"].attrs["units"] == "K^2"

    with xr.open_dataset(results / FULL_RUN_SAMPLE) as sample:
        init = FULL_RUN_INIT
        for lead in (1, 12):
            valid = init + np.timedelta64(lead, "h")
            # reference = the analysis at the valid time; persistence = the analysis 24 h earlier
            np.testing.assert_allclose(sample["2t_ref"].sel(fcst_hour=lead).values, by_time[valid.item()][..., 0],
                                       rtol=1e-5)
            np.testing.assert_array_equal(sample["2t_persistence_fcst"].sel(fcst_hour=lead).values,
                                          by_time[(valid - np.timedelta64(24, "h")).item()][..., 0])
        np.testing.assert_allclose(sample["t_850_in"].sel(in_hour=0).values, by_time[init.item()][..., 2], rtol=1e-5)
        model_mse = ((sample["2t_convLSTM_fcst"] - sample["2t_ref"]) ** 2).mean(("lat", "lon")).values
        stored = evaluation["2t_convLSTM_mse"].sel(init_time=np.datetime64(init, "ns")).values
        np.testing.assert_allclose(stored, model_mse, rtol=1e-5)
        assert sample["2t_ref"].attrs["units"] == "K"
        assert "2t_copy_last_frame_fcst" not in sample  # its fields are 2t_in at in_hour 0
    # the last frame held: the analysis at the init time at every lead, scored against the later analyses
    held = by_time[init.item()][..., 0].astype(np.float64)
    expected = [np.mean((by_time[(init + np.timedelta64(lead, "h")).item()][..., 0] - held) ** 2)
                for lead in range(1, 13)]
    np.testing.assert_allclose(evaluation["2t_copy_last_frame_mse"].sel(init_time=np.datetime64(init, "ns")).values,
                               expected, rtol=1e-3)
    # the first day has no previous day in the data: persistence NaN there, reported
    with xr.open_dataset(results / "vfp_date_2018020111_sample_ind_0.nc") as first:
        assert np.isnan(first["2t_persistence_fcst"].values).all()
    assert "persistence unavailable" in result.stderr
    assert np.isnan(evaluation["2t_persistence_mse"].values[0]).all()
    assert np.isfinite(evaluation["2t_persistence_mse_avg"].values).all()


@pytest.mark.slow
def test_full_postprocessing_scores_figures_and_tables(full_results):
    results, _ = full_results
    evaluation = xr.open_dataset(results / "evaluation_metrics.nc")
    # every stored MSE / RMSE and the averages over the forecasts against a hand computation from the sample
    # files (file names sort like the init times, as evaluation_metrics.nc does)
    hand_mse, hand_held = [], []
    for sample_path in sorted(results.glob("vfp_date_*_sample_ind_*.nc")):
        with xr.open_dataset(sample_path) as sample:
            error = sample["2t_convLSTM_fcst"].values.astype(np.float64) - sample["2t_ref"].values
            hand_mse.append((error ** 2).mean(axis=(1, 2)))
            held = sample["2t_in"].sel(in_hour=0).values.astype(np.float64) - sample["2t_ref"].values
            hand_held.append((held ** 2).mean(axis=(1, 2)))
    hand_mse = np.array(hand_mse)
    hand_held = np.array(hand_held)
    np.testing.assert_allclose(evaluation["2t_convLSTM_mse"].values, hand_mse, rtol=1e-5)
    np.testing.assert_allclose(evaluation["2t_convLSTM_rmse"].values, np.sqrt(hand_mse), rtol=1e-5)
    np.testing.assert_allclose(evaluation["2t_convLSTM_mse_avg"].values, hand_mse.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(evaluation["2t_copy_last_frame_mse"].values, hand_held, rtol=1e-6)
    np.testing.assert_allclose(evaluation["2t_copy_last_frame_mse_avg"].values, hand_held.mean(axis=0), rtol=1e-6)
    assert evaluation["2t_copy_last_frame_mse_bootstrapped"].shape == (100, 12)
    # the example maps show the forecasts at the 0, 10, ..., 100 % percentiles of the lead-averaged MSE
    order = np.argsort(evaluation["2t_convLSTM_mse"].mean("fcst_hour").values, kind="stable")
    stamps = [str(np.datetime64(evaluation["init_time"].values[order[int(round(p / 100 * 48))]], "h"))
              for p in range(0, 101, 10)]
    assert sorted(path.name for path in results.glob("forecast_2t_*percentile.png")) == sorted(
        f"forecast_2t_{stamp.replace('-', '')}00_mse_{p}percentile.png" for stamp, p in zip(stamps, range(0, 101, 10)))
    for metric in ("mse", "rmse", "psnr", "ssim", "texture", "weighted_rmse"):
        assert (results / f"evaluation_{metric}.png").is_file()
    assert len(list(results.glob("cond_quantile_2t_convLSTM_fh*_calibration_refinement.png"))) == 12
    assert len(list(results.glob("cond_quantile_2t_convLSTM_fh*_likelihood-base_rate.png"))) == 12
    summary = (results / "summary_metrics.csv").read_text().splitlines()
    header = summary[0].split(",")
    assert header[:4] == ["fcst_hour", "convLSTM_mse", "persistence_mse", "skill_mse"]
    assert header.index("copy_last_frame_mse") + 1 == header.index("skill_copy_last_frame_mse")
    assert len(summary) == 13 and (results / "summary_metrics.md").is_file()
    rows = pd.read_csv(results / "summary_metrics.csv")
    # the first test windows have no previous day: the skill against persistence says over how many forecasts
    paired = evaluation["2t_persistence_mse"].notnull().sum("init_time").values
    assert paired.min() < 49
    np.testing.assert_array_equal(rows["skill_mse_forecasts"], paired)
    # the model's skill against the last frame from the averaged MSEs: 1 - MSE_model / MSE_last_frame (the skill
    # against persistence is not checked here: the tiny data repeat every 24 h, so persistence is perfect)
    np.testing.assert_allclose(rows["skill_copy_last_frame_mse"], 1 - hand_mse.mean(axis=0) / hand_held.mean(axis=0),
                               rtol=1e-5)
    assert (results / "postprocess.log").is_file() and (results / "options_checkpoints.json").is_file()


@pytest.mark.slow
def test_quick_evaluation_with_a_climatology_scores_acc_at_the_valid_time(trained_run, full_results, tmp_path):
    """Model metrics only (no persistence, no sample files, no plots), ACC at the valid time."""
    run_dir, _ = trained_run
    results, _ = full_results
    quick = tmp_path / "Quick"
    with xr.open_dataset(results / FULL_RUN_SAMPLE) as sample:
        sample.load()
    climatology = _climatology_file(tmp_path / "clim.nc", sample["lat"].values, sample["lon"].values)
    checkpoint = sorted(run_dir.glob("checkpoint_*"))[0]
    result = run_module(MODULE, "--checkpoint", checkpoint, "--results_dir", quick,
                        "--lquick_evaluation", "--evaluation_metrics", "mse", "acc", "--climatology_file",
                        tmp_path / "clim.nc", "--block_length", 4, "--nboots", 10, env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in quick.glob("*.png")) == [] and not list(quick.glob("vfp_date_*"))
    with xr.open_dataset(quick / "evaluation_metrics.nc") as quick_eval, \
            xr.open_dataset(results / "evaluation_metrics.nc") as evaluation:
        assert "2t_persistence_mse" not in quick_eval
        np.testing.assert_allclose(quick_eval["2t_convLSTM_mse"].values, evaluation["2t_convLSTM_mse"].values,
                                   rtol=1e-6)
        lead = 3
        valid = FULL_RUN_INIT + np.timedelta64(lead, "h")   # 2018-02-03T02: month 2, hour 2
        clim = climatology.sel(month=2, hour=2).values
        f = sample["2t_convLSTM_fcst"].sel(fcst_hour=lead).values.astype(np.float64) - clim
        o = sample["2t_ref"].sel(fcst_hour=lead).values.astype(np.float64) - clim
        expected = (f * o).sum() / np.sqrt((f ** 2).sum() * (o ** 2).sum())
        stored = float(quick_eval["2t_convLSTM_acc"].sel(init_time=np.datetime64(FULL_RUN_INIT, "ns"), fcst_hour=lead))
        assert stored == pytest.approx(expected, rel=1e-5)
        assert str(valid) == "2018-02-03T02"


@pytest.mark.slow
def test_refused_runs_fail_before_forecasting_and_leave_no_results(trained_run, tmp_path):
    run_dir, _ = trained_run
    quick = ("--lquick_evaluation", "--block_length", 4, "--nboots", 10)

    def refused(name, *args, env=None):
        results = tmp_path / name
        result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", results, *args,
                            env={**TF_ENV, **(env or {})})
        assert not results.exists(), f"{name}: {sorted(p.name for p in results.iterdir())}"
        return result

    # an explicitly requested ACC without a climatology file is an error, never silently dropped
    result = refused("no_clim", *quick, "--evaluation_metrics", "mse", "acc")
    assert_user_error(result, "give --climatology_file or drop acc from --evaluation_metrics")
    result = refused("missing_clim", *quick, "--evaluation_metrics", "mse", "acc", "--climatology_file",
                     tmp_path / "none.nc")
    assert_user_error(result, f"climatology file {tmp_path / 'none.nc'} does not exist", "acc")
    # a climatology without February (the test split's month) would give ACC all NaN: refused, naming month and file
    from video_prediction_tools.datasets.era5 import ERA5Dataset
    from video_prediction_tools.training.checkpoints import load_trained_model

    _, run = load_trained_model(run_dir)
    dataset = ERA5Dataset(run.input_dir, run.datasplit, "test", hparams=run.hparams)
    _climatology_file(tmp_path / "clim.nc", dataset.lat, dataset.lon)
    with xr.open_dataset(tmp_path / "clim.nc") as full:
        full.load()
    no_february = full.copy(deep=True)
    no_february["2t"][1] = np.nan
    no_february.to_netcdf(tmp_path / "clim_no_feb.nc")
    result = refused("clim_no_feb", *quick, "--evaluation_metrics", "weighted_acc", "--climatology_file",
                     tmp_path / "clim_no_feb.nc")
    assert_user_error(result, f"climatology {tmp_path / 'clim_no_feb.nc'} has no values for month 2 (all 24 hours)")
    full.sel(hour=np.arange(0, 24, 2)).to_netcdf(tmp_path / "clim_even_hours.nc")
    result = refused("clim_even_hours", *quick, "--evaluation_metrics", "acc", "--climatology_file",
                     tmp_path / "clim_even_hours.nc")
    assert_user_error(result, "clim_even_hours.nc has no values for month 2 hour(s) 1, 3, 5, 7, 9, 11, 13, 15")
    # too few bootstrap blocks, a wrong coastline file: reported before forecasting, nothing written
    result = refused("blocks", "--lquick_evaluation")
    assert_user_error(result, "at least 10 blocks of 168 samples", "49 sample(s)", "--block_length")
    result = refused("coast", "--block_length", 4, env={"AMBS_COASTLINES": str(tmp_path / "coast.shp")})
    assert_user_error(result, f"AMBS_COASTLINES={tmp_path / 'coast.shp'}: no such coastline shapefile")


def test_each_dataset_goes_to_its_pipeline_and_an_unknown_one_is_refused(trained_run, tmp_path):
    import shutil

    from video_prediction_tools.datasets.registry import EVALUATIONS, get_dataset_class, known_datasets
    from video_prediction_tools.postprocess import forecast, moving_mnist, pipeline
    from video_prediction_tools.postprocess.options import PostprocessOptions

    assert pipeline.PIPELINES == {"gridded": forecast.run_era5_postprocess,
                                  "sequences": moving_mnist.run_moving_mnist_postprocess}
    assert set(pipeline.PIPELINES) == set(EVALUATIONS)
    assert {name: get_dataset_class(name).evaluation for name in known_datasets()} == {
        "era5": "gridded", "moving_mnist": "sequences"}
    run_dir, _ = trained_run
    assert pipeline.trained_dataset(run_dir) == "era5"
    assert pipeline.trained_dataset(tmp_path / "nope") is None  # the ERA5 pipeline's validation reports it
    radar_run = tmp_path / "radar_run"
    shutil.copytree(run_dir, radar_run)
    options = json.loads((radar_run / "options.json").read_text())
    (radar_run / "options.json").write_text(json.dumps({**options, "dataset": "radar"}))
    with pytest.raises(UserError, match="unknown dataset 'radar'"):
        pipeline.run_postprocess(PostprocessOptions(str(radar_run), str(tmp_path / "results")))
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_val_split_is_evaluated_in_time_order(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", tmp_path / "r", "--lquick_evaluation",
                        "--mode", "val", "--evaluation_metrics", "mse", "--block_length", 4, "--nboots", 10,
                        env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    with xr.open_dataset(tmp_path / "r" / "evaluation_metrics.nc") as evaluation:
        # --mode val evaluates the val split (2018-01), chronologically sorted
        init = evaluation["init_time"].values
        assert len(init) == 49 and init[0] == np.datetime64("2018-01-01T11", "ns") and (np.diff(init) > 0).all()


@pytest.mark.slow
def test_written_forecast_is_the_model_forecast_of_the_normalised_context(trained_run, full_results):
    """The ``2t_<model>_fcst`` of a sample file, recomputed independently: the raw step-1 context normalised by
    hand with the run's normalization.json, the restored model's forecast, denormalised by hand."""
    from video_prediction_tools.training.checkpoints import load_trained_model

    run_dir, by_time = trained_run
    results, _ = full_results
    saved = json.loads((run_dir / "normalization.json").read_text())
    assert saved["method"] == "minmax"
    low = np.array([saved["stats"][v]["min"] for v in saved["variables"]])
    high = np.array([saved["stats"][v]["max"] for v in saved["variables"]])
    model, _ = load_trained_model(run_dir)
    for name in ("vfp_date_2018020111_sample_ind_0.nc", "vfp_date_2018020223_sample_ind_36.nc"):
        with xr.open_dataset(results / name) as sample:
            init = sample["init_time"].values.astype("datetime64[h]")
            written = sample["2t_convLSTM_fcst"].values
        context_times = init + np.arange(-(model.context_frames - 1), 1).astype("timedelta64[h]")
        context = np.stack([by_time[t.item()] for t in context_times]).astype(np.float64)  # [ctx, lat, lon, channel]
        normalised = ((context - low) / (high - low)).astype(np.float32)
        forecast = np.asarray(model.forecast(normalised[None]))[0].astype(np.float64)  # [F, lat, lon, channel]
        expected = forecast[..., 0] * (high[0] - low[0]) + low[0]
        assert written.shape == expected.shape == (12, 8, 12)
        np.testing.assert_allclose(written, expected, rtol=0, atol=1e-4)
        # not trivially equal to the truth or persistence: the check above is about the model's forecast
        assert np.abs(written - by_time[(init + np.timedelta64(1, "h")).item()][..., 0]).max() > 1e-3


def _result_files(results):
    """Sample files, the evaluation file and the plots of a results directory: name → bytes."""
    patterns = ("vfp_date_*.nc", "evaluation_metrics.nc", "*.png", "summary_metrics.*")
    return {path.name: path.read_bytes() for pattern in patterns for path in results.glob(pattern)}


@pytest.mark.slow
def test_kill_9_then_rerun_gives_byte_identical_results(trained_run, full_results, tmp_path):
    run_dir, _ = trained_run
    clean, _ = full_results
    results = tmp_path / "Results"
    command = [sys.executable, "-m", MODULE, "--checkpoint", str(run_dir), "--results_dir", str(results),
               *map(str, FULL_RUN_OPTIONS)]
    process = subprocess.Popen(command, env={**os.environ, **TF_ENV}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list(results.glob("vfp_date_*.nc")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)  # a real kill -9 while the sample files are being written
    finally:
        returncode = process.wait()
    assert returncode == -signal.SIGKILL
    written_before = len(list(results.glob("vfp_date_*.nc")))
    assert 1 <= written_before < 49 and not (results / "evaluation_metrics.nc").exists()
    result = run_module(MODULE, "--checkpoint", run_dir, "--results_dir", results, *FULL_RUN_OPTIONS, env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, uninterrupted = _result_files(results), _result_files(clean)
    # samples, evaluation, a score plot per metric (mse, rmse, psnr, ssim, texture, weighted_rmse, crps and the two
    # ensemble-mean scores), example maps, conditional quantiles, tables
    assert len(uninterrupted) == 49 + 1 + 9 + 11 + 24 + 2
    assert sorted(resumed) == sorted(uninterrupted)
    different = [name for name in uninterrupted if resumed[name] != uninterrupted[name]]
    assert different == []
    assert not [path.name for path in results.iterdir() if ".tmp-" in path.name]  # temporaries cleared


def test_scores_of_several_members_are_the_mean_of_member_scores():
    from video_prediction_tools.postprocess.metrics import MSE, SSIM

    rng = np.random.default_rng(4)
    init = np.array(["2018-01-01T11", "2018-01-01T12"], dtype="datetime64[ns]")
    coords = {"init_time": init, "fcst_hour": [1, 2, 3], "lat": LAT, "lon": LON}
    dims = ("init_time", "fcst_hour", "lat", "lon")
    truth = xr.DataArray(280 + rng.standard_normal((2, 3, 8, 12)), dims=dims, coords=coords)
    members = xr.DataArray(280 + rng.standard_normal((2, 2, 3, 8, 12)), dims=("sample", *dims), coords=coords)
    scores = ScoreAccumulator([MSE(), SSIM()], ["savp", "persistence"], "2t", np.array([1, 2, 3]), quantiles=True)
    scores.add(truth, {"savp": members, "persistence": members.isel(sample=0)})
    raw = scores.raw_dataset({"model": "savp"})
    per_member = [((members.values[k] - truth.values) ** 2).mean(axis=(2, 3)) for k in range(2)]
    np.testing.assert_allclose(raw["2t_savp_mse"].values, (per_member[0] + per_member[1]) / 2, rtol=1e-12)
    np.testing.assert_allclose(raw["2t_persistence_mse"].values, per_member[0], rtol=1e-12)
    assert set(raw.data_vars) == {"2t_savp_mse", "2t_savp_ssim", "2t_persistence_mse", "2t_persistence_ssim"}
    # conditional quantiles pool every member, init time and grid point of a lead hour
    assert int(scores.calibration[2].result()["counts"].sum()) == 2 * 2 * 8 * 12


# --- structure ---------------------------------------------------------------------------------------------------
def _package_imports(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (at module level or inside functions), from the source."""
    import ast

    graph = {}
    for path in sorted(package_dir.glob("*.py")):
        module = f"{package}.{path.stem}"
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                   else []))
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            imported |= {name for name in names if name.startswith(package + ".") and name.count(".") == 2}
        graph[module] = imported - {module}
    return graph


def test_postprocess_modules_import_no_circle():
    """Walk the imports of every postprocessing module: no module reaches itself again."""
    import video_prediction_tools.postprocess as package

    graph = _package_imports(Path(package.__file__).parent, package.__name__)
    assert "video_prediction_tools.postprocess.pipeline" in graph
    state: dict[str, str] = {}

    def visit(module, path):
        if state.get(module) == "open":
            raise AssertionError(f"import circle: {' -> '.join(path + [module])}")
        if module not in state:
            state[module] = "open"
            for target in sorted(graph.get(module, ())):
                visit(target, path + [module])
            state[module] = "done"

    for module in graph:
        visit(module, [])
