"""Metrics against hand computations and independent libraries (xskillscore, scikit-image) on random fields."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import xskillscore as xs
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from video_prediction_tools.data_extraction import climatology as C
from video_prediction_tools.postprocess import metrics as M
from video_prediction_tools.utils.errors import UserError

NY, NX = 16, 24
LAT = np.linspace(55.0, 40.0, NY)            # north → south as ERA5
LON = np.linspace(3.0, 12.2, NX)
INITS = pd.date_range("2017-01-31T18", periods=6, freq="h").values   # leads cross into February


def fields(seed=0, n_init=6, n_lead=4, noise=1.0):
    rng = np.random.default_rng(seed)
    coords = {"init_time": INITS[:n_init], "fcst_hour": np.arange(1, n_lead + 1), "lat": LAT, "lon": LON}
    truth = xr.DataArray(280 + 6 * rng.standard_normal((n_init, n_lead, NY, NX)), dims=list(coords),
                         coords=coords, attrs={"units": "K"})
    forecast = truth + noise * rng.standard_normal(truth.shape)
    forecast.attrs = truth.attrs
    return forecast, truth


def climatology(seed=1):
    rng = np.random.default_rng(seed)
    return xr.DataArray(278 + 3 * rng.standard_normal((12, 24, NY, NX)), dims=("month", "hour", "lat", "lon"),
                        coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": LAT, "lon": LON})


def test_mse_rmse_equal_hand_computation_and_xskillscore():
    forecast, truth = fields()
    mse = M.MSE().compute(forecast, truth)
    assert mse.dims == ("init_time", "fcst_hour") and mse.attrs["units"] == "K^2"
    hand = ((forecast.values - truth.values) ** 2).mean(axis=(2, 3))
    np.testing.assert_allclose(mse.values, hand, rtol=1e-12)
    np.testing.assert_allclose(mse.values, xs.mse(forecast, truth, dim=["lat", "lon"]).values, rtol=1e-12)
    rmse = M.RMSE().compute(forecast, truth)
    np.testing.assert_allclose(rmse.values, xs.rmse(forecast, truth, dim=["lat", "lon"]).values, rtol=1e-12)
    assert rmse.attrs["units"] == "K"


def test_weighted_rmse_matches_xskillscore_with_cos_lat_weights():
    forecast, truth = fields(seed=3)
    weights = np.cos(np.deg2rad(truth["lat"])) * xr.ones_like(truth["lon"])
    expected = xs.rmse(forecast, truth, dim=["lat", "lon"], weights=weights)
    np.testing.assert_allclose(M.WeightedRMSE().compute(forecast, truth).values, expected.values, rtol=1e-12)
    # weighting matters: errors only at the northernmost row count less than unweighted
    error_north = truth.copy()
    error_north[..., 0, :] += 1.0
    assert (M.WeightedRMSE().compute(error_north, truth) < M.RMSE().compute(error_north, truth)).all()


@pytest.mark.parametrize("data_range", [None, 40.0])
def test_psnr_equals_skimage_with_stated_data_range(data_range):
    forecast, truth = fields(seed=4)
    psnr = M.PSNR(data_range=data_range).compute(forecast, truth)
    for i, j in [(0, 0), (5, 3), (2, 1)]:
        o, f = truth.values[i, j], forecast.values[i, j]
        stated = o.max() - o.min() if data_range is None else data_range
        assert psnr.values[i, j] == pytest.approx(peak_signal_noise_ratio(o, f, data_range=stated), rel=1e-12)
        assert psnr.values[i, j] == pytest.approx(10 * np.log10(stated ** 2 / np.mean((f - o) ** 2)), rel=1e-12)
    assert psnr.attrs["units"] == "dB"


@pytest.mark.parametrize("data_range", [None, 30.0])
def test_ssim_equals_skimage_uniform_window_7(data_range):
    forecast, truth = fields(seed=5, noise=3.0)
    ssim = M.SSIM(data_range=data_range).compute(forecast, truth)
    for i in range(truth.sizes["init_time"]):
        for j in range(truth.sizes["fcst_hour"]):
            o, f = truth.values[i, j], forecast.values[i, j]
            stated = o.max() - o.min() if data_range is None else data_range
            expected = structural_similarity(o, f, data_range=stated, gaussian_weights=False, win_size=7,
                                             use_sample_covariance=True)
            assert ssim.values[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0 < ssim.values.min() < 1


def test_ssim_is_not_symmetric_in_range_but_is_in_fields():
    forecast, truth = fields(seed=6)
    a = M.SSIM(data_range=20.0).compute(forecast, truth)
    b = M.SSIM(data_range=20.0).compute(truth, forecast)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-12)


def _hand_acc(f, o, clim_field, weights=None, centred=False):
    weights = np.ones_like(f) if weights is None else weights
    fa, oa = f - clim_field, o - clim_field
    if centred:
        fa = fa - (weights * fa).sum() / weights.sum()
        oa = oa - (weights * oa).sum() / weights.sum()
    return (weights * fa * oa).sum() / np.sqrt((weights * fa ** 2).sum() * (weights * oa ** 2).sum())


def test_acc_uses_climatology_at_valid_time_across_month_end():
    forecast, truth = fields(seed=7)
    clim = climatology()
    acc = M.ACC(clim).compute(forecast, truth)
    for i in range(len(INITS)):
        for j, lead in enumerate(truth["fcst_hour"].values):
            valid = pd.Timestamp(INITS[i]) + pd.Timedelta(hours=int(lead))
            right = clim.sel(month=valid.month, hour=valid.hour).values
            expected = _hand_acc(forecast.values[i, j], truth.values[i, j], right)
            assert acc.values[i, j] == pytest.approx(expected, rel=1e-10)
            early = valid - pd.Timedelta(hours=1)  # the original's one-hour offset must NOT be reproduced
            wrong = _hand_acc(forecast.values[i, j], truth.values[i, j],
                              clim.sel(month=early.month, hour=early.hour).values)
            assert abs(acc.values[i, j] - wrong) > 1e-6
    # init 2017-01-31T23 + 1 h is valid in February: month 2 of the climatology is used
    assert pd.Timestamp(INITS[5]).day == 31 and pd.Timestamp(INITS[5]).hour == 23


def test_centred_acc_equals_xskillscore_pearson_of_anomalies():
    forecast, truth = fields(seed=8)
    clim = climatology(seed=2)
    valid = truth["init_time"] + truth["fcst_hour"].astype("timedelta64[h]")
    clim_at_valid = clim.sel(month=valid.dt.month, hour=valid.dt.hour)
    anomaly_f, anomaly_o = forecast - clim_at_valid, truth - clim_at_valid
    expected = xs.pearson_r(anomaly_f, anomaly_o, dim=["lat", "lon"])
    np.testing.assert_allclose(M.ACC(clim, centred=True).compute(forecast, truth).values, expected.values,
                               rtol=1e-10)
    weights = np.cos(np.deg2rad(truth["lat"])) * xr.ones_like(truth["lon"])
    expected_weighted = xs.pearson_r(anomaly_f, anomaly_o, dim=["lat", "lon"], weights=weights)
    np.testing.assert_allclose(M.WeightedACC(clim, centred=True).compute(forecast, truth).values,
                               expected_weighted.values, rtol=1e-10)


def test_weighted_uncentred_acc_equals_hand_computation():
    forecast, truth = fields(seed=9)
    clim = climatology(seed=3)
    acc = M.WeightedACC(clim).compute(forecast, truth)
    weights = np.cos(np.deg2rad(LAT))[:, None] * np.ones(NX)
    valid = pd.Timestamp(INITS[2]) + pd.Timedelta(hours=3)
    expected = _hand_acc(forecast.values[2, 2], truth.values[2, 2],
                         clim.sel(month=valid.month, hour=valid.hour).values, weights)
    assert acc.values[2, 2] == pytest.approx(expected, rel=1e-10)


def test_perfect_forecast_scores():
    _, truth = fields(seed=10)
    clim = climatology()
    assert float(abs(M.MSE().compute(truth, truth)).max()) == 0.0
    assert float(M.RMSE().compute(truth, truth).max()) == 0.0
    np.testing.assert_allclose(M.ACC(clim).compute(truth, truth).values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(M.WeightedACC(clim).compute(truth, truth).values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(M.SSIM().compute(truth, truth).values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(M.GradientRatio().compute(truth, truth).values, 1.0, rtol=1e-12)
    np.testing.assert_array_equal(M.PSNR().compute(truth, truth).values, M.PSNR_CAP_DB)


def _grid_field(values, lat=LAT, lon=LON):
    return xr.DataArray(values[None, None], dims=("init_time", "fcst_hour", "lat", "lon"),
                        coords={"init_time": INITS[:1], "fcst_hour": [1], "lat": lat, "lon": lon})


def test_spherical_gradient_of_analytic_fields():
    phi = np.deg2rad(LAT)[:, None] * np.ones(NX)
    lam = np.ones(NY)[:, None] * np.deg2rad(LON)[None, :]
    # T = a·phi: |grad T| = a / R everywhere (centred and one-sided differences are exact for linear fields)
    magnitude = M.spherical_gradient_magnitude((3.0 * phi)[None], LAT, LON)[0]
    np.testing.assert_allclose(magnitude, 3.0 / M.EARTH_RADIUS_M, rtol=1e-10)
    # T = b·lambda: |grad T| = b / (R cos phi)
    magnitude = M.spherical_gradient_magnitude((2.0 * lam)[None], LAT, LON)[0]
    np.testing.assert_allclose(magnitude, 2.0 / (M.EARTH_RADIUS_M * np.cos(phi)), rtol=1e-10)
    # ratio of a doubled field is 2; of a field with only the lambda gradient vs one with the phi gradient, the
    # ratio of the unweighted domain means
    ratio = M.GradientRatio().compute(_grid_field(2 * (phi + lam)), _grid_field(phi + lam))
    assert float(ratio.squeeze()) == pytest.approx(2.0, rel=1e-12)
    ratio = M.GradientRatio().compute(_grid_field(lam), _grid_field(phi))
    expected = np.mean(1 / (M.EARTH_RADIUS_M * np.cos(phi))) / (1 / M.EARTH_RADIUS_M)
    assert float(ratio.squeeze()) == pytest.approx(expected, rel=1e-10)


def test_gradient_handles_longitudes_wrapping_through_zero():
    lon_wrapped = np.concatenate([np.arange(354.0, 360.0, 1.5), np.arange(0.0, 6.0, 1.5)])
    lon_continuous = np.arange(-6.0, 6.0, 1.5)
    rng = np.random.default_rng(11)
    values = rng.standard_normal((NY, len(lon_wrapped)))
    a = M.spherical_gradient_magnitude(values[None], LAT, lon_wrapped)
    b = M.spherical_gradient_magnitude(values[None], LAT, lon_continuous)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_metrics_vectorise_over_samples_and_broadcast_truth():
    forecast, truth = fields(seed=12)
    members = xr.concat([forecast, forecast + 1.0], dim="sample")
    scores = M.MSE().compute(members, truth)
    assert scores.dims == ("sample", "init_time", "fcst_hour")
    np.testing.assert_allclose(scores.isel(sample=0).values, M.MSE().compute(forecast, truth).values)
    np.testing.assert_allclose(scores.isel(sample=1).values,
                               ((forecast.values + 1 - truth.values) ** 2).mean(axis=(2, 3)), rtol=1e-12)
    # chunking does not change results (more fields than one chunk)
    repeats = 3 * M.fields_per_chunk(NY * NX) // members["fcst_hour"].size
    big_f, big_t = members.isel(init_time=[0] * repeats), truth.isel(init_time=[0] * repeats)
    assert big_f.size // (NY * NX) > 2 * M.fields_per_chunk(NY * NX)
    np.testing.assert_array_equal(M.SSIM().compute(big_f, big_t).values,
                                  M.SSIM().compute(members, truth).values[:, [0]].repeat(repeats, axis=1))


def test_mismatched_grids_and_unknown_metrics_are_errors():
    forecast, truth = fields()
    with pytest.raises(ValueError, match="lat/lon"):
        M.MSE().compute(forecast, truth.assign_coords(lat=truth["lat"] + 0.01))
    with pytest.raises(UserError, match="unknown evaluation metric.*bogus"):
        M.make_metrics(["mse", "bogus"])
    with pytest.raises(ValueError, match="needs a climatology"):
        M.make_metrics(["acc"])
    names = [m.name for m in M.make_metrics(list(M.DEFAULT_METRICS), climatology())]
    assert names == list(M.DEFAULT_METRICS)


def test_acc_without_the_valid_month_in_climatology_is_an_error():
    forecast, truth = fields()
    with pytest.raises(ValueError, match="no month"):
        M.ACC(climatology().sel(month=[1])).compute(forecast, truth)


def _write_climatology(path, lat, lon, variable="2t", offset=270.0, units=None):
    rng = np.random.default_rng(0)
    data = offset + rng.standard_normal((12, 24, len(lat), len(lon))).astype(np.float32)
    attrs = {} if units is None else {"units": units}
    xr.Dataset({variable: (("month", "hour", "lat", "lon"), data, attrs)},
               coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": lat, "lon": lon}).to_netcdf(path)
    return data


def test_load_climatology_matches_domain_by_nearest_coordinates(tmp_path):
    clim_lat = np.arange(60.0, 29.9, -0.25)
    clim_lon = np.arange(-20.0, 20.0, 0.25)                  # [-180, 180) convention
    data = _write_climatology(tmp_path / "clim.nc", clim_lat, clim_lon)
    domain_lat = np.array([45.0, 44.7, 44.4])                # 0.3° grid: nearest 0.25° point within 0.125°
    domain_lon = np.array([359.4, 359.7, 0.0, 0.3])          # wraps through 0°E
    with pytest.raises(UserError, match="is on another grid.*--climatology_regridding nearest"):
        C.load_climatology(tmp_path / "clim.nc", "2t", domain_lat, domain_lon)   # never matched silently
    clim = C.load_climatology(tmp_path / "clim.nc", "2t", domain_lat, domain_lon, regridding="nearest")
    assert clim.dims == ("month", "hour", "lat", "lon")
    np.testing.assert_array_equal(clim["lon"].values, domain_lon)
    lat_index = [np.abs(clim_lat - v).argmin() for v in domain_lat]
    lon_index = [np.abs(clim_lon - (v if v < 180 else v - 360)).argmin() for v in domain_lon]
    np.testing.assert_array_equal(clim.values, data[:, :, lat_index][:, :, :, lon_index])


def test_a_climatology_shifted_by_half_a_cell_is_refused_and_float_noise_accepted(tmp_path):
    grid_lat, grid_lon = np.arange(50.0, 39.9, -1.0), np.arange(0.0, 10.0, 1.0)
    _write_climatology(tmp_path / "shifted.nc", grid_lat + 0.5, grid_lon, units="K")
    with pytest.raises(UserError, match="is on another grid: its nearest latitude lies up to 0.5 deg"):
        C.load_climatology(tmp_path / "shifted.nc", "2t", [45.0, 44.0], [5.0])
    data = _write_climatology(tmp_path / "same.nc", grid_lat + 1e-5, grid_lon - 2e-3, units="K")   # < 1 % of a step
    clim = C.load_climatology(tmp_path / "same.nc", "2t", [45.0, 44.0], [5.0])
    np.testing.assert_array_equal(clim.values, data[:, :, [5, 6]][:, :, :, [5]])


@pytest.mark.parametrize("offset, units, message", [
    (10.0, "degC", "in units 'degC', the data's 2t in K"),
    (10.0, None, "holds .* .no units attribute., outside the physical range of 2t .150 to 350 K."),
])
def test_a_climatology_in_other_units_than_the_data_is_refused(tmp_path, offset, units, message):
    _write_climatology(tmp_path / "clim.nc", np.arange(50.0, 39.9, -1.0), np.arange(0.0, 10.0, 1.0), offset=offset,
                       units=units)
    with pytest.raises(UserError, match=message):
        C.load_climatology(tmp_path / "clim.nc", "2t", [45.0], [5.0])


def test_load_climatology_errors(tmp_path):
    _write_climatology(tmp_path / "clim.nc", np.arange(50.0, 39.9, -1.0), np.arange(0.0, 10.0, 1.0))
    with pytest.raises(UserError, match="does not cover the domain.*longitude"):
        C.load_climatology(tmp_path / "clim.nc", "2t", [45.0], [20.0])
    with pytest.raises(UserError, match="does not cover the domain.*latitude"):
        C.load_climatology(tmp_path / "clim.nc", "2t", [55.0], [5.0])
    with pytest.raises(UserError, match="no variable 't_850'"):
        C.load_climatology(tmp_path / "clim.nc", "t_850", [45.0], [5.0])
    with pytest.raises(UserError, match="missing.nc does not exist"):
        C.load_climatology(tmp_path / "missing.nc", "2t", [45.0], [5.0])


@pytest.fixture
def scratch_registry():
    """The metric registry; metrics registered during the test are removed afterwards."""
    before = dict(M.METRICS)
    yield M.METRICS
    M.METRICS.clear()
    M.METRICS.update(before)


def test_a_new_metric_is_one_registered_class(scratch_registry):
    """What README "Adding a metric" describes: one class, and every consumer offers and builds it."""
    from dataclasses import dataclass
    from typing import ClassVar

    from video_prediction_tools.postprocess.era5_job import resolve_metric_names
    from video_prediction_tools.runscript_generator.checks import known_metrics

    @M.register
    @dataclass(eq=False)
    class ClippedMAE(M.Metric):
        name: ClassVar[str] = "clipped_mae"
        long_name: ClassVar[str] = "mean absolute error, errors clipped at the data range"
        perfect_score: ClassVar[float] = 0.0
        data_range: float | None = None
        weighted: bool = False

        def units(self, data_units):
            return data_units

        def _score(self, forecast, truth, context, chunk):
            return np.minimum(np.abs(M._difference(forecast, truth)), self.data_range).mean(axis=(1, 2))

    @M.register
    @dataclass(eq=False)
    class AnomalyBias(M.Metric):
        name: ClassVar[str] = "anomaly_bias"
        needs: ClassVar[frozenset[str]] = frozenset({"climatology"})
        climatology: xr.DataArray = None

    assert list(M.METRICS)[-2:] == ["clipped_mae", "anomaly_bias"]
    assert known_metrics()[-2:] == ("clipped_mae", "anomaly_bias")
    assert resolve_metric_names(None, None)[-1] == "clipped_mae"  # needs a climatology: not by default without one
    built = M.make_metrics(["mse", "clipped_mae"], data_range=0.5)
    assert repr(built[1]).endswith("ClippedMAE(data_range=0.5, weighted=False)")
    forecast, truth = fields()
    score = built[1].compute(forecast, truth)
    hand = np.minimum(np.abs(forecast.values - truth.values), 0.5).mean(axis=(2, 3))
    np.testing.assert_allclose(score.values, hand, rtol=1e-12)
    assert score.attrs == {"long_name": ClippedMAE.long_name, "units": "K"}
    with pytest.raises(ValueError, match="anomaly_bias needs a climatology"):
        M.make_metrics(["anomaly_bias"])
    assert M.make_metrics(["anomaly_bias"], climatology())[0].climatology is not None
    with pytest.raises(ValueError, match="unique name"):
        M.register(ClippedMAE)
    with pytest.raises(ValueError, match="unknown run input"):
        M.register(type("Odd", (M.Metric,), {"name": "odd", "needs": frozenset({"orography"})}))


def test_registry_order_is_the_default_order_and_acc_types_need_a_climatology():
    assert M.DEFAULT_METRICS == ("mse", "rmse", "psnr", "ssim", "acc", "texture", "weighted_rmse", "weighted_acc",
                                 "crps", "ensemble_mean_mse", "ensemble_mean_rmse", "spread", "spread_skill",
                                 "rank_histogram")
    assert M.CLIMATOLOGY_METRICS == ("acc", "weighted_acc")
    acc = M.make_metrics(["weighted_acc"], climatology(), data_range=3.0)[0]
    assert acc.weighted and not acc.centred
    assert repr(acc) == "WeightedACC(centred=False, weighted=True, climatology_hour_offset=0)"
    assert repr(M.make_metrics(["ssim"], data_range=3.0)[0]) == "SSIM(data_range=3.0, window=7)"


def test_sequence_metrics_are_registered_apart_from_the_gridded_ones():
    mnist = M.METRICS_BY_EVALUATION[M.SEQUENCES]
    assert list(mnist) == ["mse", "mse_frame", "mae", "mae_frame", "ssim", "psnr"]
    assert all(issubclass(cls, M.Metric) and cls.evaluation == M.SEQUENCES for cls in mnist.values())
    assert M.METRICS is M.METRICS_BY_EVALUATION[M.GRIDDED] and "mae" not in M.METRICS
    psnr, ssim = M.make_metrics(["psnr", "ssim"], evaluation=M.SEQUENCES)
    assert psnr.data_range == 1.0 and ssim.data_range == 1.0 and psnr.units("1") == "dB" and ssim.units("1") == "1"
    assert M.make_metrics(["mse"], evaluation=M.SEQUENCES)[0].units("1") == "1"
    with pytest.raises(UserError, match="unknown evaluation metric.s. acc; known: mse, mse_frame, mae"):
        M.check_metric_names(["acc"], M.SEQUENCES)
    with pytest.raises(ValueError, match="unknown evaluation 'radar'"):
        M.register(type("CriticalSuccessIndex", (M.Metric,), {"name": "csi", "evaluation": "radar"}))


# --- the original's CDO climatology file (climatology_t2m_1991-2020.nc): (time, lat, lon), 288 steps ----------
GLOBAL_LAT = np.arange(90.0, -90.1, -5.0)              # north → south
GLOBAL_LON = np.arange(0.0, 360.0, 5.0)                # 0..355
DOMAIN_LAT = np.array([55.0, 50.0, 45.0, 40.0])
DOMAIN_LON = np.array([350.0, 355.0, 0.0, 5.0, 10.0])  # wraps through 0°E


def _global_climatology_values(dtype):
    rng = np.random.default_rng(3)
    return (278 + 3 * rng.standard_normal((12, 24, len(GLOBAL_LAT), len(GLOBAL_LON)))).astype(dtype)


def _write_cdo_climatology(path, values, lat=GLOBAL_LAT, lon=GLOBAL_LON, variable="var167", times=None):
    """``values (month, hour, lat, lon)`` written as CDO does: ``(time, lat, lon)``, month-major then hour."""
    if times is None:
        times = pd.DatetimeIndex([pd.Timestamp(2020, month, 1, hour) for month in range(1, 13) for hour in range(24)])
    flat = values.reshape(-1, *values.shape[2:])
    xr.Dataset({variable: (("time", "lat", "lon"), flat[:len(times)])},
               coords={"time": times, "lat": lat, "lon": lon}).to_netcdf(path)


def _domain_fields(seed):
    rng = np.random.default_rng(seed)
    inits = pd.date_range("2017-03-31T20", periods=3, freq="h").values
    coords = {"init_time": inits, "fcst_hour": np.arange(1, 5), "lat": DOMAIN_LAT, "lon": DOMAIN_LON}
    truth = xr.DataArray(280 + 5 * rng.standard_normal((3, 4, len(DOMAIN_LAT), len(DOMAIN_LON))),
                         dims=list(coords), coords=coords)
    return truth + rng.standard_normal(truth.shape), truth


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("latitudes_ascending", [False, True])
@pytest.mark.parametrize("longitudes_180", [False, True])
def test_cdo_climatology_gives_the_same_acc_as_the_ambs_file(tmp_path, dtype, latitudes_ascending, longitudes_180):
    values = _global_climatology_values(dtype)
    _write_climatology_values(tmp_path / "ambs.nc", values, GLOBAL_LAT, GLOBAL_LON)
    lat, lon, cdo_values = GLOBAL_LAT, GLOBAL_LON, values
    if latitudes_ascending:
        lat, cdo_values = lat[::-1], cdo_values[:, :, ::-1]
    if longitudes_180:                                       # -180..175 with the columns rolled accordingly
        lon = (lon + 180.0) % 360.0 - 180.0
        order = np.argsort(lon)
        lon, cdo_values = lon[order], cdo_values[..., order]
    _write_cdo_climatology(tmp_path / "cdo.nc", cdo_values, lat, lon)
    forecast, truth = _domain_fields(seed=4)
    ambs = M.ACC(C.load_climatology(tmp_path / "ambs.nc", "2t", DOMAIN_LAT, DOMAIN_LON)).compute(forecast, truth)
    cdo = M.ACC(C.load_climatology(tmp_path / "cdo.nc", "2t", DOMAIN_LAT, DOMAIN_LON)).compute(forecast, truth)
    np.testing.assert_allclose(cdo.values, ambs.values, rtol=0, atol=1e-6)
    # and both equal the hand computation with the global array indexed at the domain's points
    lat_index = [list(GLOBAL_LAT).index(v) for v in DOMAIN_LAT]
    lon_index = [list(GLOBAL_LON).index(v) for v in DOMAIN_LON]
    i, j = 2, 3                                              # init 2017-03-31T22 + 4 h: valid 2017-04-01T02
    clim = values[3, 2][lat_index][:, lon_index].astype(np.float64)
    assert cdo.values[i, j] == pytest.approx(_hand_acc(forecast.values[i, j], truth.values[i, j], clim), abs=1e-6)


def _write_climatology_values(path, values, lat, lon):
    xr.Dataset({"2t": (("month", "hour", "lat", "lon"), values)},
               coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": lat, "lon": lon}).to_netcdf(path)


def test_cdo_climatology_with_undecoded_times_is_read_in_the_documented_order(tmp_path):
    values = _global_climatology_values(np.float32)
    _write_cdo_climatology(tmp_path / "cdo.nc", values, times=np.arange(288.0))   # plain numbers, no units
    clim = C.load_climatology(tmp_path / "cdo.nc", "t2m", DOMAIN_LAT, DOMAIN_LON)
    assert clim.sel(month=7, hour=13, lat=45.0, lon=5.0).item() == values[6, 13, 9, 1]


def test_bad_cdo_climatologies_are_user_errors(tmp_path):
    values = _global_climatology_values(np.float32)
    _write_cdo_climatology(tmp_path / "short.nc", values, times=pd.date_range("2020-01-01", periods=287, freq="h"))
    with pytest.raises(UserError, match="'var167' has 287 time steps, expected 288"):
        C.load_climatology(tmp_path / "short.nc", "2t", DOMAIN_LAT, DOMAIN_LON)
    _write_cdo_climatology(tmp_path / "other.nc", values, variable="var130")
    with pytest.raises(UserError, match="no variable '2t' or 't2m' or 'var167' \\(it has var130\\)"):
        C.load_climatology(tmp_path / "other.nc", "2t", DOMAIN_LAT, DOMAIN_LON)
    europe_lat, europe_lon = np.arange(70.0, 44.9, -5.0), np.arange(-10.0, 30.1, 5.0)
    _write_cdo_climatology(tmp_path / "europe.nc", values[:, :, 4:10, :9], europe_lat, europe_lon)
    with pytest.raises(UserError, match="does not cover the domain: no latitude .* of \\[40.0\\]"):
        C.load_climatology(tmp_path / "europe.nc", "2t", DOMAIN_LAT, DOMAIN_LON)
    hourly = pd.DatetimeIndex([pd.Timestamp(2020, 1, 1) + pd.Timedelta(hours=k) for k in range(288)])
    _write_cdo_climatology(tmp_path / "hourly.nc", values, times=hourly)     # 12 days, not 12 months
    with pytest.raises(UserError, match="time step 24 is month 1 hour 0, expected month 2 hour 0"):
        C.load_climatology(tmp_path / "hourly.nc", "2t", DOMAIN_LAT, DOMAIN_LON)
    # the generator's check accepts both layouts without knowing the variable, and refuses the bad ones
    _write_cdo_climatology(tmp_path / "good.nc", values)
    C.check_climatology_file(tmp_path / "good.nc")
    with pytest.raises(UserError, match="287 time steps"):
        C.check_climatology_file(tmp_path / "short.nc")
    not_climatology = tmp_path / "not_climatology.nc"
    xr.Dataset({"2t": (("x",), np.zeros(3))}).to_netcdf(not_climatology)
    with pytest.raises(UserError, match="no variable by month and hour on a lat/lon grid"):
        C.check_climatology_file(not_climatology)


def test_truth_terms_are_shared_without_changing_scores():
    """SSIM and texture compute the truth's half once (``truth_terms``) for every member and product: the scores
    equal those of each member scored alone, whatever the truth's dim order; a truth at other times is an error."""
    forecast, truth = fields(seed=21)
    members = xr.concat([forecast, forecast + 0.5 * forecast.std()], dim="sample")
    reordered = truth.transpose("fcst_hour", "lon", "init_time", "lat")
    for metric in (M.SSIM(), M.GradientRatio()):
        shared = metric.compute(members, reordered, metric.truth_terms(reordered))
        for k in range(2):
            alone = metric.compute(members.isel(sample=k), truth)
            np.testing.assert_array_equal(shared.isel(sample=k).transpose(*alone.dims).values, alone.values)
    with pytest.raises(ValueError, match="different coordinates"):
        M.SSIM().compute(forecast, truth.assign_coords(init_time=truth["init_time"] + np.timedelta64(1, "h")))
