"""Preprocessing step 1 end to end on tiny extracted archives (real netCDF files, real CLI, real mpiexec)."""
import json

import netCDF4
import numpy as np
import pytest
import xarray as xr

from fixtures.common import assert_user_error, mpiexec, run_module
from fixtures.preprocessed import (STEP1_MODULE, analytic_field, hourly_times, write_extracted_archive,
                                   write_extracted_file)
from video_prediction_tools.data_preprocess.statistics import channel_stats, merge_stats

#: a small global 1.5° band (21 rows 60N → 30N, 240 columns) for the tests that build their own archive
BAND_LAT = np.arange(60.0, 29.9, -1.5)
BAND_LON = np.arange(240) * 1.5


def run_step1(source, destination, *extra, years=(2017,), variables=("2t", "tcc"), sw_corner=(45.0, -3.0),
              nyx=(4, 5)):
    return run_module(STEP1_MODULE, "--source_dir", source, "--destination_dir", destination, "--years", *years,
                      "--vars", *variables, "--sw_corner", *sw_corner, "--nyx", *nyx, *extra)


def single_experiment(destination):
    [expdir] = [p for p in destination.iterdir() if p.is_dir()]
    return expdir


# ----------------------------------------------------------------------------------------------------------------
# the session fixture: 2 years x 2 months, 8 x 12 box crossing 0°
# ----------------------------------------------------------------------------------------------------------------

def test_metadata_options_and_log(tiny_preprocessed_step1):
    expdir = tiny_preprocessed_step1.expdir
    metadata = json.loads((expdir / "metadata.json").read_text())
    assert metadata["expname"] == expdir.name == "era5-Y2017-2018M01to02-12x8-3600N1200W-2t_tcc_t_850"
    assert metadata["expdir"] == str(tiny_preprocessed_step1.destination_dir)
    assert metadata["sw_corner_frame"] == {"lat": 36.0, "lon": -12.0}
    assert metadata["coordinates"]["lat"] == [57.0, 54.0, 51.0, 48.0, 45.0, 42.0, 39.0, 36.0]
    assert metadata["coordinates"]["lon"] == [348.0, 351.0, 354.0, 357.0] + [3.0 * k for k in range(8)]
    assert metadata["frame_size"] == {"nx": 12, "ny": 8}
    assert metadata["variables"] == [{"var1": "2t"}, {"var2": "tcc"}, {"var3": "t_850"}]
    options = json.loads((expdir / "options.json").read_text())
    assert options["years"] == [2017, 2018] and options["vars"] == ["2t", "tcc", "t_850"]
    assert options["sw_corner"] == [36.0, -12.0] and options["nyx"] == [8, 12]
    log = (expdir / "preprocess_step1.log").read_text()
    assert "2018-02: 72 hours written" in log and "before the end of the month" in log


@pytest.mark.parametrize("year, month", [(2017, 1), (2017, 2), (2018, 1), (2018, 2)])
def test_cropped_month_equals_source_slice(tiny_preprocessed_step1, year, month):
    fixture = tiny_preprocessed_step1
    fields = xr.open_dataarray(fixture.expdir / f"{year}" / f"X_{month:02d}.nc")
    assert fields.name == "X" and fields.dims == ("time", "lat", "lon", "channel")
    assert fields.dtype == np.float32 and fields.shape == (72, 8, 12, 3)
    assert list(fields["channel"].values) == ["2t", "tcc", "t_850"]
    assert list(fields["channel_units"].values) == ["K", "(0 - 1)", "K"]
    np.testing.assert_array_equal(fields["time"].values, hourly_times(year, month, 3).astype("datetime64[ns]"))
    np.testing.assert_array_equal(fields["lat"].values, fixture.source.lat[fixture.lat_indices])
    np.testing.assert_array_equal(fields["lon"].values, fixture.source.lon[fixture.lon_indices])
    source_file = fixture.source.source_dir / f"{year}" / f"{month:02d}" / f"era5_{year}_{month:02d}.nc"
    with netCDF4.Dataset(source_file) as source:
        for channel, variable in enumerate(fixture.variables):
            full = source[variable][:].filled(np.nan)
            expected = full[:, fixture.lat_indices][:, :, fixture.lon_indices]
            np.testing.assert_array_equal(fields.values[..., channel], expected)
    # and the analytic values at the selected grid points
    np.testing.assert_allclose(fields.values[..., 0], analytic_field("2t", fields["time"].values, fields["lat"],
                                                                     fields["lon"]), rtol=0, atol=0)


def test_monthly_stats_are_exact_and_merge_to_the_concatenation(tiny_preprocessed_step1):
    fixture = tiny_preprocessed_step1
    monthly, arrays = [], []
    for year in fixture.years:
        for month in fixture.months:
            values = xr.open_dataarray(fixture.expdir / f"{year}" / f"X_{month:02d}.nc").values
            stats = json.loads((fixture.expdir / f"{year}" / f"stat_{month:02d}.json").read_text())
            assert list(stats) == ["2t", "tcc", "t_850"]
            assert stats["2t"]["count"] == 72 * 8 * 12
            assert stats["tcc"]["min"] == float(values[..., 1].min())
            np.testing.assert_allclose(stats["t_850"]["sigma"], values[..., 2].astype(np.float64).std(), rtol=1e-12)
            monthly.append(stats)
            arrays.append(values)
    everything = np.concatenate(arrays).astype(np.float64)
    merged = merge_stats(monthly)
    for channel, variable in enumerate(fixture.variables):
        assert merged[variable]["count"] == everything[..., channel].size
        assert merged[variable]["max"] == everything[..., channel].max()
        np.testing.assert_allclose(merged[variable]["avg"], everything[..., channel].mean(), rtol=1e-12)
        np.testing.assert_allclose(merged[variable]["sigma"], everything[..., channel].std(), rtol=1e-10)
    # a subset of months (2017-02, 2018-01) also merges exactly
    subset = merge_stats([monthly[1], monthly[2]])["2t"]
    np.testing.assert_allclose(subset["sigma"], np.concatenate([arrays[1], arrays[2]])[..., 0]
                               .astype(np.float64).std(), rtol=1e-10)


# ----------------------------------------------------------------------------------------------------------------
# MPI, rerun, overwrite, several files per month, duplicates
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.mpi
def test_one_and_two_ranks_write_identical_files(tiny_extracted_netcdf, tmp_path):
    args = ["--source_dir", tiny_extracted_netcdf.source_dir, "--years", 2017, 2018, "--vars", "t_850", "2t",
            "--sw_corner", -12.0, 351.0, "--nyx", 5, 6]
    outputs = {}
    for ranks in (1, 2):
        destination = tmp_path / f"ranks{ranks}"
        result = mpiexec(ranks, STEP1_MODULE, *args, "--destination_dir", destination)
        assert result.returncode == 0, result.stderr
        outputs[ranks] = single_experiment(destination)
    assert outputs[1].name == outputs[2].name == "era5-Y2017-2018M01to02-6x5-1200S0900W-t_850_2t"
    assert (tmp_path / "ranks2" / outputs[2].name / "preprocess_step1.log.rank1").exists()
    for year in (2017, 2018):
        for month in (1, 2):
            one = xr.open_dataarray(outputs[1] / f"{year}" / f"X_{month:02d}.nc")
            two = xr.open_dataarray(outputs[2] / f"{year}" / f"X_{month:02d}.nc")
            xr.testing.assert_identical(one.load(), two.load())
            assert ((outputs[1] / f"{year}" / f"stat_{month:02d}.json").read_text()
                    == (outputs[2] / f"{year}" / f"stat_{month:02d}.json").read_text())
    metadata = [json.loads((outputs[r] / "metadata.json").read_text()) for r in (1, 2)]
    assert [dict(m, expdir=None) for m in metadata][0] == dict(metadata[1], expdir=None)


def test_rerun_skips_finished_months_and_overwrite_redoes_them(tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1, 2], days=1, lat=BAND_LAT,
                                     lon=BAND_LON)
    destination = tmp_path / "PreprocessedData"
    assert run_step1(source, destination).returncode == 0
    expdir = single_experiment(destination)
    assert expdir.name == "era5-Y2017-2017M01to02-5x4-4500N0300W-2t_tcc"
    stat = expdir / "2017" / "stat_01.json"
    # a marker value: a skipped month keeps it, an overwritten month gets the real statistics back
    stat.write_text(json.dumps({"marker": True}))
    (expdir / "2017" / "X_02.nc").unlink()
    (expdir / "2017" / "stat_02.json").unlink()
    rerun = run_step1(source, destination)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(stat.read_text()) == {"marker": True}
    assert "2017-01" in rerun.stderr and "skipped" in rerun.stderr
    assert (expdir / "2017" / "X_02.nc").exists() and (expdir / "2017" / "stat_02.json").exists()
    overwritten = run_step1(source, destination, "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    values = xr.open_dataarray(expdir / "2017" / "X_01.nc").values
    assert json.loads(stat.read_text()) == channel_stats(values, ["2t", "tcc"])
    assert not list((expdir / "2017").glob(".*"))  # no temporaries left


def test_several_files_per_month_are_ordered_by_time_not_name(tmp_path):
    source = tmp_path / "ExtractedData"
    times = hourly_times(2017, 1, 3)
    # names in reverse chronological order
    write_extracted_file(source / "2017" / "01" / "c_part.nc", times[:30], BAND_LAT, BAND_LON)
    write_extracted_file(source / "2017" / "01" / "b_part.nc", times[30:50], BAND_LAT, BAND_LON)
    write_extracted_file(source / "2017" / "01" / "a_part.nc", times[50:], BAND_LAT, BAND_LON)
    destination = tmp_path / "PreprocessedData"
    result = run_step1(source, destination, variables=("tcc", "2t", "tcc"), sw_corner=(30.0, 358.6))
    assert result.returncode == 0, result.stderr
    expdir = single_experiment(destination)
    assert expdir.name == "era5-Y2017-2017M01to01-5x4-3000N0150W-tcc_2t_tcc"
    fields = xr.open_dataarray(expdir / "2017" / "X_01.nc")
    np.testing.assert_array_equal(fields["time"].values, times.astype("datetime64[ns]"))
    assert list(fields["channel"].values) == ["tcc", "2t", "tcc"]
    np.testing.assert_array_equal(fields["lon"].values, [358.5, 0.0, 1.5, 3.0, 4.5])
    expected = analytic_field("tcc", times, fields["lat"].values, fields["lon"].values)
    np.testing.assert_array_equal(fields.values[..., 0], expected)
    np.testing.assert_array_equal(fields.values[..., 2], expected)
    assert list(json.loads((expdir / "2017" / "stat_01.json").read_text())) == ["tcc", "2t"]


# ----------------------------------------------------------------------------------------------------------------
# bad input ends cleanly
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def band_archive(tmp_path):
    return write_extracted_archive(tmp_path / "ExtractedData", [2017], [1], days=1, lat=BAND_LAT, lon=BAND_LON)


def test_gap_inside_a_month_names_files_and_hours(tmp_path):
    source = tmp_path / "ExtractedData"
    times = hourly_times(2017, 1, 3)
    write_extracted_file(source / "2017" / "01" / "day1.nc", times[:24], BAND_LAT, BAND_LON)
    write_extracted_file(source / "2017" / "01" / "day3.nc", times[48:], BAND_LAT, BAND_LON)
    result = run_step1(source, tmp_path / "PreprocessedData")
    assert_user_error(result, "2017-01", "24 hour(s) missing between 2017-01-01 23:00", "day1.nc",
                      "2017-01-03 00:00", "day3.nc")
    assert not list((tmp_path / "PreprocessedData").glob("*/2017/*"))


def test_month_not_starting_at_hour_zero_and_overlapping_files(tmp_path):
    source = tmp_path / "ExtractedData"
    times = hourly_times(2017, 1, 2)
    write_extracted_file(source / "2017" / "01" / "late.nc", times[5:], BAND_LAT, BAND_LON)
    assert_user_error(run_step1(source, tmp_path / "P"), "hours missing at the start", "2017-01-01 05:00")
    write_extracted_file(source / "2017" / "01" / "early.nc", times[:10], BAND_LAT, BAND_LON)
    assert_user_error(run_step1(source, tmp_path / "P"), "repeated or out of order", "2017-01-01 09:00")


def test_nan_inside_the_domain_names_file_variable_and_time(band_archive, tmp_path):
    path = band_archive / "2017" / "01" / "era5_2017_01.nc"
    with netCDF4.Dataset(path, "a") as dataset:
        dataset["tcc"][7, 10, 0] = np.nan   # 45N 0E at 07 UTC: inside the 4 x 5 box
        dataset["2t"][3, 0, 100] = np.nan   # far outside the box: irrelevant
    result = run_step1(band_archive, tmp_path / "PreprocessedData")
    assert_user_error(result, str(path), "1 NaN/inf", "'tcc'", "2017-01-01 07:00")
    expdir = single_experiment(tmp_path / "PreprocessedData")
    assert not (expdir / "2017" / "X_01.nc").exists() and not (expdir / "2017" / "stat_01.json").exists()
    assert not list((expdir / "2017").glob(".*"))


@pytest.mark.parametrize("value, shown", [(1e30, "first 1e+30 K"), (-1e30, "first -1e+30 K")])
def test_one_value_without_physical_sense_in_one_month_is_refused(tmp_path, value, shown):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1, 2], days=1, lat=BAND_LAT, lon=BAND_LON)
    path = source / "2017" / "02" / "era5_2017_02.nc"
    with netCDF4.Dataset(path, "a") as dataset:
        dataset["2t"][13, 10, 0] = value   # 45N 0E at 13 UTC: inside the 4 x 5 box
    result = run_step1(source, tmp_path / "PreprocessedData", "--months", 1, 2)
    assert_user_error(result, "2017-02", str(path), "1 value(s) outside the physical range", "'2t'", shown,
                      "2017-02-01 13:00 UTC", "45.00N 0.00E")
    expdir = single_experiment(tmp_path / "PreprocessedData")
    assert not (expdir / "2017" / "X_02.nc").exists() and not (expdir / "2017" / "stat_02.json").exists()


def test_a_month_in_celsius_beside_months_in_kelvin_is_refused_before_anything_is_written(tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1, 2], days=1, lat=BAND_LAT, lon=BAND_LON)
    path = source / "2017" / "02" / "era5_2017_02.nc"
    with netCDF4.Dataset(path, "a") as dataset:
        dataset["2t"][:] = dataset["2t"][:] - 273.15
        dataset["2t"].units = "degC"
    result = run_step1(source, tmp_path / "PreprocessedData", "--months", 1, 2)
    assert_user_error(result, f"2017-02 ({path}): '2t' is in units 'degC', expected K")
    assert not (tmp_path / "PreprocessedData").exists() or not list((tmp_path / "PreprocessedData").iterdir())


@pytest.mark.mpi
def test_nan_under_two_ranks_fails_every_rank_cleanly(band_archive, tmp_path):
    path = band_archive / "2017" / "01" / "era5_2017_01.nc"
    with netCDF4.Dataset(path, "a") as dataset:
        dataset["2t"][0, 10, 239] = np.inf
    result = mpiexec(2, STEP1_MODULE, "--source_dir", band_archive, "--destination_dir", tmp_path / "P",
                     "--years", 2017, "--vars", "2t", "--sw_corner", 45.0, -3.0, "--nyx", 4, 5)
    assert_user_error(result, "1 of 1 unit(s) failed", "NaN/inf", "'2t'", "2017-01-01 00:00")


@pytest.mark.parametrize("extra, fragments", [
    ({"variables": ("2t", "q")}, ("era5_2017_01.nc", "variable 'q' not found", "2t, msl, t_850, tcc")),
    ({"sw_corner": (45.0, 0.0), "nyx": (12, 4)}, ("northern edge", "60")),
    ({"sw_corner": (20.0, 0.0)}, ("SW corner latitude 20.0", "outside the grid latitudes")),
    ({"nyx": (1, 5)}, ("at least 2 rows",)),
    ({"years": (2017, 2018)}, ("2018", "not found")),
])
def test_bad_arguments_end_with_one_clear_line(band_archive, tmp_path, extra, fragments):
    result = run_step1(band_archive, tmp_path / "PreprocessedData", **extra)
    assert_user_error(result, *fragments)
    assert not list((tmp_path / "PreprocessedData").glob("*/20*/*"))


def test_missing_month_and_metadata_mismatch(band_archive, tmp_path):
    assert_user_error(run_step1(band_archive, tmp_path / "P", "--months", 1, 2), "2017/02", "not found")
    assert run_step1(band_archive, tmp_path / "P").returncode == 0
    # same EXPNAME (same corner, size, variables) but a finer latitude grid: metadata.json differs
    other = write_extracted_archive(tmp_path / "Other", [2017], [1], days=1, lat=np.arange(60.0, 29.9, -1.0),
                                    lon=BAND_LON)
    assert_user_error(run_step1(other, tmp_path / "P"), "metadata.json",
                      "differs in coordinates", "--overwrite")


def test_help_and_original_aliases(band_archive, tmp_path):
    assert "--sw_corner" in run_module(STEP1_MODULE, "--help").stdout
    result = run_module(STEP1_MODULE, "-src_dir", band_archive, "-dest_dir", tmp_path / "P", "-y", 2017,
                        "--vars", "2t", "-swc", 45.0, -3.0, "-nyx", 4, 5)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "P" / "era5-Y2017-2017M01to01-5x4-4500N0300W-2t" / "2017" / "stat_01.json").exists()
