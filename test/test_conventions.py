"""Metric conventions: ``ambs`` (default) and ``gmd2022`` (the original AMBS's definitions, as published), each
against a hand computation; the convention is recorded in ``evaluation_metrics.nc`` and the summary table."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from skimage.metrics import structural_similarity

from fixtures.common import assert_user_error, run_module
from video_prediction_tools.postprocess import metrics as M
from video_prediction_tools.utils.errors import UserError

MODULE = "video_prediction_tools.main_scripts.main_visualize_postprocess"
LAT = np.linspace(50.0, 47.9, 8)
LON = np.linspace(5.0, 7.7, 10)


def _case():
    """One forecast/truth pair (init 2017-05-31T23, lead 1 h: valid 2017-06-01T00) and a climatology whose month 5
    hour 23 and month 6 hour 0 differ."""
    rng = np.random.default_rng(11)
    coords = {"init_time": [np.datetime64("2017-05-31T23", "ns")], "fcst_hour": [1], "lat": LAT, "lon": LON}
    truth = xr.DataArray(285 + 4 * rng.standard_normal((1, 1, 8, 10)), dims=list(coords), coords=coords,
                         attrs={"units": "K"})
    forecast = truth + 0.7 * rng.standard_normal(truth.shape)
    clim = xr.DataArray(283 + 2 * rng.standard_normal((12, 24, 8, 10)), dims=("month", "hour", "lat", "lon"),
                        coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": LAT, "lon": LON})
    return forecast, truth, clim


def _scores(conventions, data_range=None):
    forecast, truth, clim = _case()
    metrics = M.make_metrics(["psnr", "ssim", "acc"], clim, data_range, conventions)
    return {metric.name: float(metric.compute(forecast, truth).squeeze()) for metric in metrics}


def _hand_acc(f, o, c):
    fa, oa = f - c, o - c
    return (fa * oa).sum() / np.sqrt((fa ** 2).sum() * (oa ** 2).sum())


@pytest.mark.parametrize("conventions", ["ambs", "gmd2022"])
def test_each_convention_equals_its_hand_computation(conventions):
    forecast, truth, clim = _case()
    f, o = forecast.values[0, 0], truth.values[0, 0]
    mse = ((f - o) ** 2).mean()
    if conventions == "ambs":
        data_range = o.max() - o.min()
        psnr = 10 * np.log10(data_range ** 2 / mse)
        ssim = structural_similarity(o, f, data_range=data_range, win_size=7, gaussian_weights=False)
        climate = clim.sel(month=6, hour=0).values                 # the valid time
    else:
        psnr = -10 * np.log10(mse)                                 # pixel_max = 1 K
        ssim = structural_similarity(o, f, data_range=2.0, win_size=7, gaussian_weights=False)
        climate = clim.sel(month=5, hour=23).values                # the hour before the valid time
    scores = _scores(conventions)
    assert scores["psnr"] == pytest.approx(psnr, rel=1e-10)
    assert scores["ssim"] == pytest.approx(ssim, rel=1e-9)
    assert scores["acc"] == pytest.approx(_hand_acc(f, o, climate), rel=1e-10)


def test_conventions_change_the_numbers_and_bad_choices_are_user_errors():
    ambs, gmd = _scores("ambs"), _scores("gmd2022")
    for name in ("psnr", "ssim", "acc"):
        assert abs(ambs[name] - gmd[name]) > 1e-5, name
    assert _scores("ambs", data_range=1.0)["psnr"] == pytest.approx(gmd["psnr"], rel=1e-12)
    with pytest.raises(UserError, match="--data_range 3 contradicts --metric_conventions gmd2022"):
        _scores("gmd2022", data_range=3.0)
    with pytest.raises(UserError, match="unknown metric conventions 'gmd'; known: ambs, gmd2022"):
        _scores("gmd")


def _cdo_climatology(path, lat, lon, steps=288, variable="var167"):
    """A CDO-layout climatology ``(time, lat, lon)`` on the global 0.3° grid (a latitude band around ``lat``, to keep
    the file small): 270 + month + hour / 100 K plus a smooth field of the position."""
    global_lat, global_lon = np.round(np.arange(90.0, -90.01, -0.3), 1), np.round(np.arange(0.0, 359.99, 0.3), 1)
    keep_lat = (global_lat >= lat.min() - 1) & (global_lat <= lat.max() + 1)   # a band: keeps the file small
    global_lat = global_lat[keep_lat]
    times = pd.DatetimeIndex([pd.Timestamp(2020, m, 1, h) for m in range(1, 13) for h in range(24)])[:steps]

    def value(month, hour, la, lo):
        return 270 + month + hour / 100 + np.cos(np.deg2rad(la))[:, None] * np.sin(np.deg2rad(lo))[None, :]

    data = np.stack([value(t.month, t.hour, global_lat, global_lon) for t in times]).astype(np.float32)
    xr.Dataset({variable: (("time", "lat", "lon"), data)},
               coords={"time": times, "lat": global_lat, "lon": global_lon}).to_netcdf(path)


@pytest.mark.slow
def test_gmd2022_postprocessing_with_the_published_climatology_layout(tiny_trained_run, tmp_path):
    from video_prediction_tools.datasets.era5 import ERA5Dataset
    from video_prediction_tools.training.checkpoints import load_trained_model

    _, run = load_trained_model(tiny_trained_run)
    dataset = ERA5Dataset(run.input_dir, run.datasplit, "test", hparams=run.hparams)
    lat, lon = np.asarray(dataset.lat), np.asarray(dataset.lon)
    _cdo_climatology(tmp_path / "climatology_t2m_1991-2020.nc", lat, lon)
    common = ("--checkpoint", tiny_trained_run, "--lquick_evaluation", "--evaluation_metrics", "mse", "psnr",
              "acc", "--block_length", 4, "--nboots", 10)
    results = {}
    for conventions in ("ambs", "gmd2022"):
        results[conventions] = tmp_path / conventions
        result = run_module(MODULE, *common, "--results_dir", results[conventions], "--climatology_file",
                            tmp_path / "climatology_t2m_1991-2020.nc", "--metric_conventions", conventions,
                            env={"TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
    evaluations = {name: xr.load_dataset(path / "evaluation_metrics.nc") for name, path in results.items()}
    for name, evaluation in evaluations.items():
        assert evaluation.attrs["metric_conventions"] == name
        assert evaluation.attrs["climatology_regridding"] == "none"      # the same grid points: recorded
        assert evaluation.attrs["climatology_file"] == str(tmp_path / "climatology_t2m_1991-2020.nc")
        table = (results[name] / "summary_metrics.csv").read_text().splitlines()
        assert table[0].split(",")[-1] == "metric_conventions" and table[1].endswith(f",{name}")
    ambs, gmd = evaluations["ambs"], evaluations["gmd2022"]
    mse = ambs["2t_convLSTM_mse"].values
    np.testing.assert_allclose(gmd["2t_convLSTM_mse"].values, mse, rtol=1e-12)
    np.testing.assert_allclose(gmd["2t_convLSTM_psnr"].values, -10 * np.log10(mse), rtol=1e-9)
    # the climatology differs between two consecutive hours by 0.01 K everywhere: ACC changes with the convention
    assert np.abs(gmd["2t_convLSTM_acc"].values - ambs["2t_convLSTM_acc"].values).max() > 1e-6


@pytest.mark.slow
def test_bad_published_climatology_files_end_with_one_error_line(tiny_trained_run, tmp_path):
    from video_prediction_tools.datasets.era5 import ERA5Dataset
    from video_prediction_tools.training.checkpoints import load_trained_model

    _, run = load_trained_model(tiny_trained_run)
    dataset = ERA5Dataset(run.input_dir, run.datasplit, "test", hparams=run.hparams)
    lat, lon = np.asarray(dataset.lat), np.asarray(dataset.lon)
    _cdo_climatology(tmp_path / "short.nc", lat, lon, steps=287)
    _cdo_climatology(tmp_path / "other.nc", lat, lon, variable="var130")
    _cdo_climatology(tmp_path / "south.nc", lat - 30.0, lon)
    expected = {"short.nc": "'var167' has 287 time steps, expected 288",
                "other.nc": "has no variable '2t' or 't2m' or 'var167' (it has var130)",
                "south.nc": "does not cover the domain: no latitude within half a grid step"}
    for name, fragment in expected.items():
        result = run_module(MODULE, "--checkpoint", tiny_trained_run, "--results_dir", tmp_path / f"r_{name}",
                            "--lquick_evaluation", "--evaluation_metrics", "acc", "--block_length", 4,
                            "--climatology_file", tmp_path / name)
        assert_user_error(result, fragment)
        assert not (tmp_path / f"r_{name}").exists()


def test_normalisation_from_every_preprocessed_month_as_the_original(tiny_tfrecords):
    """``normalization_months="all"``: min/max/mean/sigma over all four months (val and test included), by hand."""
    from video_prediction_tools.datasets.era5 import ERA5Dataset

    tiny = tiny_tfrecords
    hparams = {"sequence_length": 24, "normalization": "znorm"}
    everything = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams=hparams, normalization_months="all")
    train_only = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams=hparams)
    stacked = np.concatenate([tiny.raw[month][0] for month in sorted(tiny.raw)]).astype(np.float64)
    assert len(tiny.raw) == 4
    for channel, variable in enumerate(tiny.variables):
        stats = everything.normalization.stats[variable]
        assert stats["min"] == stacked[..., channel].min() and stats["max"] == stacked[..., channel].max()
        assert stats["avg"] == pytest.approx(stacked[..., channel].mean(), rel=1e-9)
        assert stats["sigma"] == pytest.approx(stacked[..., channel].std(), rel=1e-6)
    assert everything.normalization != train_only.normalization
    with pytest.raises(UserError, match="normalization months 'some': expected train or all"):
        ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams=hparams, normalization_months="some")
