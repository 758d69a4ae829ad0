"""The embedded ERA5-like GRIB archive generator: real GRIB that eccodes and cfgrib decode to the right fields,
deterministic, physically plausible, with ERA5's L137 model-level coefficients."""
import hashlib

import eccodes
import numpy as np
import pytest
import xarray as xr
from fixtures.archive import TINY_DAYS, TINY_GRID, TINY_MONTHS, TINY_SEED, TINY_YEAR
from fixtures.common import assert_user_error, run_module

from video_prediction_tools.data_extraction import synthetic
from video_prediction_tools.data_extraction.synthetic import Grid, SyntheticAtmosphere, generate_archive

MODULE = "video_prediction_tools.main_scripts.main_synthetic_archive"


def read_messages(path):
    """All messages of a GRIB file as dicts of keys plus decoded values, read with eccodes."""
    messages = []
    with open(path, "rb") as stream:
        while (handle := eccodes.codes_grib_new_from_file(stream)) is not None:
            keys = {key: eccodes.codes_get(handle, key) for key in (
                "shortName", "typeOfLevel", "level", "dataDate", "dataTime", "edition", "Ni", "Nj", "gridType",
                "latitudeOfFirstGridPointInDegrees", "latitudeOfLastGridPointInDegrees",
                "longitudeOfFirstGridPointInDegrees", "longitudeOfLastGridPointInDegrees",
                "iDirectionIncrementInDegrees", "jDirectionIncrementInDegrees", "units", "PVPresent")}
            keys["values"] = eccodes.codes_get_values(handle).reshape(keys["Nj"], keys["Ni"])
            keys["pv"] = eccodes.codes_get_array(handle, "pv") if keys["PVPresent"] else None
            messages.append(keys)
            eccodes.codes_release(handle)
    return messages


def packing_tolerance(values):
    """Maximum error of 16-bit GRIB simple packing for a field spanning ``values``."""
    return (values.max() - values.min()) / 2 ** 16 + 1e-6 * np.abs(values).max()


def digest_tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.grb"))}


def test_layout_is_one_file_pair_per_hour(tiny_grib_archive):
    for month in TINY_MONTHS:
        files = sorted(p.name for p in (tiny_grib_archive / f"{TINY_YEAR}" / f"{month:02d}").iterdir())
        hours = [f"{TINY_YEAR}{month:02d}{day:02d}{hour:02d}" for day in range(1, TINY_DAYS + 1) for hour in range(24)]
        assert files == sorted([f"{h}_ml.grb" for h in hours] + [f"{h}_sf.grb" for h in hours])


def test_eccodes_decodes_names_levels_dates_grid_and_values(tiny_grib_archive):
    hour = np.datetime64("2017-02-02T13", "h")
    surface = read_messages(tiny_grib_archive / "2017" / "02" / "2017020213_sf.grb")
    upper = read_messages(tiny_grib_archive / "2017" / "02" / "2017020213_ml.grb")
    assert [m["shortName"] for m in surface] == ["2t", "tcc", "msl", "10u", "10v"]
    assert {m["typeOfLevel"] for m in surface} == {"surface"}
    assert [(m["shortName"], m["typeOfLevel"], m["level"]) for m in upper] == [
        ("t", "isobaricInhPa", level) for level in (1000, 850, 700, 500)]
    for message in surface + upper:
        assert (message["dataDate"], message["dataTime"]) == (20170202, 1300)
        assert message["edition"] == 1 and message["gridType"] == "regular_ll"
        assert (message["Nj"], message["Ni"]) == (16, 24)
        assert message["latitudeOfFirstGridPointInDegrees"] == pytest.approx(42.9)
        assert message["latitudeOfLastGridPointInDegrees"] == pytest.approx(38.4)
        assert message["longitudeOfFirstGridPointInDegrees"] == pytest.approx(0.0)
        assert message["longitudeOfLastGridPointInDegrees"] == pytest.approx(6.9)
        assert message["iDirectionIncrementInDegrees"] == pytest.approx(0.3)
    state = SyntheticAtmosphere(TINY_GRID, TINY_SEED).state([hour])
    expected = {name: state.fields[name][0] for name in synthetic.SURFACE_VARIABLES}
    for message in surface:
        truth = expected[message["shortName"]]
        np.testing.assert_allclose(message["values"], truth, rtol=0, atol=packing_tolerance(truth))
    for message in upper:
        truth = state.temperature(100.0 * message["level"])[0]
        np.testing.assert_allclose(message["values"], truth, rtol=0, atol=packing_tolerance(truth))
    assert [m["units"] for m in surface] == ["K", "(0 - 1)", "Pa", "m s**-1", "m s**-1"]


def test_cfgrib_reads_the_same_fields(tiny_grib_archive):
    path = tiny_grib_archive / "2017" / "01" / "2017010306_sf.grb"
    eccodes_values = {m["shortName"]: m["values"] for m in read_messages(path)}
    cfgrib_names = {"2t": "t2m", "tcc": "tcc", "msl": "msl", "10u": "u10", "10v": "v10"}
    for short_name, cf_name in cfgrib_names.items():
        dataset = xr.open_dataset(path, engine="cfgrib",
                                  backend_kwargs={"filter_by_keys": {"shortName": short_name}, "indexpath": ""})
        assert list(dataset.data_vars) == [cf_name]
        assert dataset.valid_time.values == np.datetime64("2017-01-03T06:00")
        np.testing.assert_allclose(dataset.latitude.values, TINY_GRID.latitudes)
        np.testing.assert_allclose(dataset.longitude.values, TINY_GRID.longitudes)
        np.testing.assert_allclose(dataset[cf_name].values, eccodes_values[short_name], rtol=1e-6)
    upper = xr.open_dataset(str(path).replace("_sf", "_ml"), engine="cfgrib", backend_kwargs={"indexpath": ""})
    np.testing.assert_array_equal(upper.isobaricInhPa.values, [1000, 850, 700, 500])
    assert upper.t.attrs["units"] == "K"
    # temperature falls with height
    assert np.all(np.diff(upper.t.values, axis=0) < 0)


def test_grid_crossing_greenwich_is_a_proper_grib_grid(tmp_path):
    grid = Grid(45.0, 46.5, -1.5, 1.5, 0.3)
    generate_archive(tmp_path, [2018], [3], grid, days=1)
    path = tmp_path / "2018" / "03" / "2018030100_sf.grb"
    message = read_messages(path)[0]
    assert message["longitudeOfFirstGridPointInDegrees"] == pytest.approx(358.5)
    assert message["longitudeOfLastGridPointInDegrees"] == pytest.approx(1.5)
    assert message["Ni"] == 11
    dataset = xr.open_dataset(path, engine="cfgrib",
                              backend_kwargs={"filter_by_keys": {"shortName": "2t"}, "indexpath": ""})
    np.testing.assert_allclose(dataset.longitude.values % 360, np.round(np.arange(-1.5, 1.51, 0.3), 6) % 360,
                               atol=1e-6)
    truth = SyntheticAtmosphere(grid, 0).state([np.datetime64("2018-03-01T00", "h")]).fields["2t"][0]
    np.testing.assert_allclose(dataset.t2m.values, truth, atol=packing_tolerance(truth))


def test_model_levels_carry_era5_l137_coefficients(tmp_path):
    grid = Grid(50.0, 51.2, 5.0, 6.2, 0.3)
    generate_archive(tmp_path, [2017], [7], grid, model_levels=True, days=1)
    messages = read_messages(tmp_path / "2017" / "07" / "2017070112_ml.grb")
    t_levels = [m["level"] for m in messages if m["shortName"] == "t"]
    assert t_levels == list(range(70, 138))
    assert all(m["typeOfLevel"] == "hybrid" and m["edition"] == 2 for m in messages)
    lnsp = [m for m in messages if m["shortName"] == "lnsp"]
    assert len(lnsp) == 1 and lnsp[0]["level"] == 1
    pv = messages[0]["pv"]
    assert len(pv) == 276
    # values of ECMWF's L137 table: half level 137 is the surface (A=0, B=1), the top has p=0, and the full
    # level 137 of a 1013.25 hPa column lies at 1012.0494 hPa
    a, b = pv[:138], pv[138:]
    assert a[0] == 0 and b[0] == 0 and a[137] == 0 and b[137] == 1
    assert a[1] == pytest.approx(2.000365) and a[86] == pytest.approx(20442.078125) and b[114] == pytest.approx(
        0.790717)
    full_137 = 0.5 * (a[136] + b[136] * 101325 + a[137] + b[137] * 101325)
    assert full_137 / 100 == pytest.approx(1012.0494, abs=1e-3)
    state = SyntheticAtmosphere(grid, 0).state([np.datetime64("2017-07-01T12", "h")])
    np.testing.assert_allclose(np.exp(lnsp[0]["values"]), state.fields["sp"][0], rtol=1e-5)
    truth = state.model_level_temperature([137])[0, 0]
    np.testing.assert_allclose(messages[-2]["values"], truth, atol=packing_tolerance(truth))


def test_same_seed_gives_identical_bytes_and_months_join(tmp_path, tiny_grib_archive):
    generate_archive(tmp_path / "again", [TINY_YEAR], [2], TINY_GRID, seed=TINY_SEED, days=TINY_DAYS)
    original = {k: v for k, v in digest_tree(tiny_grib_archive).items() if k.startswith("2017/02")}
    assert digest_tree(tmp_path / "again") == original  # February alone = February of the 2-month run
    generate_archive(tmp_path / "other", [TINY_YEAR], [2], TINY_GRID, seed=TINY_SEED + 1, days=1)
    other = digest_tree(tmp_path / "other")
    assert all(other[name] != original[name] for name in other)


def test_weather_is_plausible_and_moves_east():
    grid = Grid(30.0, 60.0, -10.0, 35.0, 1.0)
    atmosphere = SyntheticAtmosphere(grid, seed=3)
    january = atmosphere.state(np.arange(np.datetime64("2017-01-10T00"), np.datetime64("2017-01-13T00")))
    july = atmosphere.state(np.arange(np.datetime64("2017-07-10T00"), np.datetime64("2017-07-13T00")))
    for state in (january, july):
        assert 230 < state.fields["2t"].min() and state.fields["2t"].max() < 320
        assert 94000 < state.fields["msl"].min() and state.fields["msl"].max() < 104500
        assert 0 <= state.fields["tcc"].min() and state.fields["tcc"].max() <= 1
        assert np.abs(state.fields["10u"]).max() < 40
        t850 = state.temperature(85000.0)
        assert np.all(t850 < state.fields["2t"] + 8)
    land = atmosphere.land > 0.9
    sea = atmosphere.land < 0.1
    assert land.sum() > 100 and sea.sum() > 100
    season_land = july.fields["2t"].mean(axis=0)[land].mean() - january.fields["2t"].mean(axis=0)[land].mean()
    season_sea = july.fields["2t"].mean(axis=0)[sea].mean() - january.fields["2t"].mean(axis=0)[sea].mean()
    assert season_land > 10 and 2 < season_sea < season_land
    # diurnal cycle in local solar time: afternoon warmer than early morning, more on land
    lon = atmosphere.lon2d
    local_hour = (july.times.astype(int)[:, None, None] % 24 + lon / 15.0) % 24
    afternoon = (local_hour > 12) & (local_hour < 17)
    night = (local_hour > 2) & (local_hour < 6)
    field = july.fields["2t"]
    diurnal_land = field[afternoon & land].mean() - field[night & land].mean()
    diurnal_sea = field[afternoon & sea].mean() - field[night & sea].mean()
    assert diurnal_land > 3 and 0 < diurnal_sea < diurnal_land
    # weather systems drift east: msl anomalies 6 h later match best when shifted east by 2-4 degrees
    anomaly = january.fields["msl"] - january.fields["msl"].mean(axis=(0, 2), keepdims=True)
    errors = {shift: np.mean((anomaly[6:, :, 10 + shift:35 + shift] - anomaly[:-6, :, 10:35]) ** 2)
              for shift in range(-6, 7)}
    assert 1 <= min(errors, key=errors.get) <= 5


def test_cli_writes_archive_and_rejects_bad_options(tmp_path):
    """The log (not a terminal) counts the files of each month and holds no progress bar at 0 %."""
    result = run_module(MODULE, "--years", "2017", "--months", "11,12", "--days", "1", "--out", tmp_path / "a",
                        "--lat_range", "40", "41.5", "--lon_range", "10", "11.5", "--edition", "2")
    assert result.returncode == 0, result.stderr
    for month in (11, 12):
        assert f"wrote 2017-{month} (48 files)" in result.stderr, result.stderr
    assert "0%" not in result.stderr, result.stderr
    messages = read_messages(tmp_path / "a" / "2017" / "12" / "2017120123_sf.grb")
    assert {m["edition"] for m in messages} == {2} and messages[0]["shortName"] == "2t"
    assert messages[0]["typeOfLevel"] == "heightAboveGround"
    assert len(list((tmp_path / "a" / "2017" / "12").iterdir())) == 48
    assert_user_error(run_module(MODULE, "--years", "2017", "--months", "13", "--out", tmp_path / "b"), "--months")
    assert_user_error(run_module(MODULE, "--years", "20x7", "--out", tmp_path / "b"), "--years")
    assert_user_error(run_module(MODULE, "--years", "2017", "--out", tmp_path / "b", "--lat_range", "50", "40"),
                      "--lat_range")
    assert_user_error(run_module(MODULE, "--years", "2017", "--out", tmp_path / "b", "--resolution", "0.7"),
                      "not a multiple of --resolution")
    assert not (tmp_path / "b").exists()


def test_context_only_forecast_beats_24h_persistence_at_every_lead():
    """Learnability: a forecast built from the last context frame plus the mean diurnal increment learnt from
    other days (something a ConvLSTM learns easily) beats 24-h persistence at every lead hour 1..12."""
    atmosphere = SyntheticAtmosphere(Grid(38.0, 55.0, 0.0, 27.0, 1.0), seed=1)

    def hourly(start, days):
        times = np.arange(np.datetime64(start, "h"), np.datetime64(start, "h") + 24 * days)
        state = atmosphere.state(times)
        return {"2t": state.fields["2t"], "tcc": state.fields["tcc"], "t_850": state.temperature(85000.0)}

    train, test = hourly("2018-03-01T00", 21), hourly("2018-04-01T00", 8)
    for name in train:
        by_hour = train[name].reshape(-1, 24, *train[name].shape[1:]).mean(axis=0)
        field = test[name]
        starts = np.arange(24, len(field) - 12, 3)
        for lead in range(1, 13):
            truth = field[starts + lead]
            persistence_24h = field[starts + lead - 24]
            learnt = field[starts] + by_hour[(starts + lead) % 24] - by_hour[starts % 24]
            rmse_persistence = np.sqrt(np.mean((persistence_24h - truth) ** 2))
            rmse_learnt = np.sqrt(np.mean((learnt - truth) ** 2))
            assert rmse_learnt < 0.9 * rmse_persistence, (name, lead, rmse_learnt, rmse_persistence)
