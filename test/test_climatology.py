"""Climatology for ACC: mean per (month, hour of day) from extracted netCDF, MPI over months."""
import hashlib
import shutil

import numpy as np
import pytest
import xarray as xr
from fixtures.archive import TINY_DAYS, TINY_GRID, TINY_MONTHS, TINY_YEAR
from fixtures.common import assert_user_error, mpiexec, run_module
from video_prediction_tools.data_extraction import climatology as C

MODULE = "video_prediction_tools.main_scripts.main_climatology"


def two_year_source(tiny_extracted_archive, tmp_path):
    """The tiny extraction plus a copy of its January as 2018 (times shifted by a year, values + 1 K)."""
    source = tmp_path / "ExtractedData"
    shutil.copytree(tiny_extracted_archive, source)
    january = xr.load_dataset(source / "2017" / "01" / "era5_2017_01.nc")
    january = january.assign_coords(time=january.time + np.timedelta64(365, "D"))
    january["2t"] = january["2t"] + np.float32(1.0)
    (source / "2018" / "01").mkdir(parents=True)
    january.to_netcdf(source / "2018" / "01" / "era5_2018_01.nc")
    return source


def test_climatology_is_the_mean_by_month_and_hour(tmp_path, tiny_extracted_archive):
    source = two_year_source(tiny_extracted_archive, tmp_path)
    out = tmp_path / "clim_2t.nc"
    result = run_module(MODULE, "--source_dir", source, "--years", "2017-2018", "--variable", "2t", "--out", out)
    assert result.returncode == 0, result.stderr
    clim = xr.open_dataset(out)
    assert clim["2t"].dims == ("month", "hour", "lat", "lon")
    np.testing.assert_array_equal(clim.month.values, np.arange(1, 13))
    np.testing.assert_array_equal(clim.hour.values, np.arange(24))
    np.testing.assert_allclose(clim.lat.values, TINY_GRID.latitudes)
    assert clim["2t"].attrs["units"] == "K" and clim.lat.attrs["units"] == "degrees_north"
    # hand computation: January mixes 2017 and 2018 (+1 K), February only 2017, other months have no data
    jan = xr.open_dataset(tiny_extracted_archive / "2017" / "01" / "era5_2017_01.nc")["2t"].values.astype(np.float64)
    feb = xr.open_dataset(tiny_extracted_archive / "2017" / "02" / "era5_2017_02.nc")["2t"].values.astype(np.float64)
    for hour in (0, 7, 23):
        jan_hours = jan[hour::24]
        expected_jan = (jan_hours.sum(axis=0) + (jan_hours + np.float32(1.0)).sum(axis=0)) / (2 * TINY_DAYS)
        np.testing.assert_allclose(clim["2t"].sel(month=1, hour=hour).values, expected_jan, rtol=1e-6)
        np.testing.assert_allclose(clim["2t"].sel(month=2, hour=hour).values, feb[hour::24].mean(axis=0), rtol=1e-6)
    assert clim.n_samples.sel(month=1).values.tolist() == [2 * TINY_DAYS] * 24
    assert clim.n_samples.sel(month=2).values.tolist() == [TINY_DAYS] * 24
    assert np.isnan(clim["2t"].sel(month=slice(3, 12)).values).all()
    assert not np.isnan(clim["2t"].sel(month=list(TINY_MONTHS)).values).any()
    assert not (tmp_path / "clim_2t.nc.parts").exists()
    assert (tmp_path / "clim_2t.log").is_file()


@pytest.mark.slow
@pytest.mark.mpi
def test_one_and_two_ranks_identical_rerun_skips_overwrite_redoes(tmp_path, tiny_extracted_archive):
    outputs = []
    for ranks in (1, 2):
        out = tmp_path / f"clim_{ranks}.nc"
        result = mpiexec(ranks, MODULE, "--source_dir", tiny_extracted_archive, "--years", str(TINY_YEAR),
                         "--variable", "t_850", "--out", out)
        assert result.returncode == 0, result.stderr
        outputs.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert outputs[0] == outputs[1]
    out = tmp_path / "clim_1.nc"
    before = out.stat()
    result = run_module(MODULE, "--source_dir", tiny_extracted_archive, "--years", str(TINY_YEAR),
                        "--variable", "t_850", "--out", out)
    assert result.returncode == 0 and "skipped" in result.stderr
    assert out.stat().st_ino == before.st_ino
    result = run_module(MODULE, "--source_dir", tiny_extracted_archive, "--years", str(TINY_YEAR),
                        "--variable", "t_850", "--out", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_ino != before.st_ino
    assert hashlib.sha256(out.read_bytes()).hexdigest() == outputs[0]


def test_bad_input_ends_cleanly(tmp_path, tiny_extracted_archive):
    out = tmp_path / "clim.nc"
    assert_user_error(run_module(MODULE, "--source_dir", tiny_extracted_archive, "--years", "2016-2017",
                                 "--variable", "2t", "--out", out), "year(s) 2016")
    assert_user_error(run_module(MODULE, "--source_dir", tiny_extracted_archive, "--years", "2017",
                                 "--variable", "q_700", "--out", out), "no extracted data of 'q_700'")
    assert_user_error(run_module(MODULE, "--source_dir", tmp_path / "nope", "--years", "2017",
                                 "--variable", "2t", "--out", out), "--source_dir", "does not exist")
    assert_user_error(run_module(MODULE, "--source_dir", tiny_extracted_archive, "--years", "17x",
                                 "--variable", "2t", "--out", out), "--years")
    source = tmp_path / "ExtractedData"
    shutil.copytree(tiny_extracted_archive, source)
    broken = source / "2017" / "02" / "era5_2017_02.nc"
    broken.write_bytes(broken.read_bytes()[:500])
    assert_user_error(run_module(MODULE, "--source_dir", source, "--years", "2017", "--variable", "2t",
                                 "--out", out), "era5_2017_02.nc")
    assert not out.exists()


def test_month_and_hour_of_valid_times_and_their_place_in_a_climatology():
    valid = np.array(["2017-12-31T23", "2018-01-01T00", "2018-02-28T13"], dtype="datetime64[h]")
    for times in (valid, valid.astype("datetime64[ns]")):  # as numpy and as xarray hold them
        months, hours = C.month_and_hour(times)
        assert months.tolist() == [12, 1, 2] and hours.tolist() == [23, 0, 13]
    climatology = xr.DataArray(np.zeros((2, 3, 1, 1)), dims=("month", "hour", "lat", "lon"),
                               coords={"month": [2, 12], "hour": [13, 23, 0]})
    month_index, hour_index = C.month_hour_indices(climatology, valid[[0, 2]])
    assert month_index.tolist() == [1, 0] and hour_index.tolist() == [1, 0]
    with pytest.raises(ValueError, match="the climatology has no month \\[1\\]"):
        C.month_hour_indices(climatology, valid)
