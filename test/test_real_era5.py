"""Extraction of real ERA5 (2 m temperature, March 2019, UK, all 744 hours in ONE GRIB 1 file as MARS writes it):
the one file gives the same month as its hours split into the original's hourly files, and the values that cfgrib
reads independently. The file is read where it lies (see fixtures.archive.shared_data); nothing is copied."""
import eccodes
import numpy as np
import pytest
import xarray as xr
from fixtures.archive import REAL_ERA5_T2M, shared_data

from video_prediction_tools.data_extraction.archive import months_of_work
from video_prediction_tools.data_extraction.extract import extract_month, month_output_path
from video_prediction_tools.data_extraction.varmapping import parse_varmapping

T2M_ONLY = parse_varmapping({"surface": ["2t"]})


@pytest.fixture(scope="module")
def real_grib():
    return shared_data(REAL_ERA5_T2M)


def split_into_hourly_files(path, root):
    """The messages of ``path`` written one per file as ``<root>/<YYYY>/<MM>/<YYYYMMDDHH>_sf.grb`` with eccodes."""
    with open(path, "rb") as stream:
        while (handle := eccodes.codes_grib_new_from_file(stream)) is not None:
            try:
                date, time = eccodes.codes_get(handle, "validityDate"), eccodes.codes_get(handle, "validityTime")
                month_dir = root / f"{date // 10000:04d}" / f"{date // 100 % 100:02d}"
                month_dir.mkdir(parents=True, exist_ok=True)
                with open(month_dir / f"{date}{time // 100:02d}_sf.grb", "wb") as out:
                    eccodes.codes_write(handle, out)
            finally:
                eccodes.codes_release(handle)


def extract_archive(root, target):
    archive, units = months_of_work(root)
    assert units == [(2019, 3)]
    assert extract_month(root, target, 2019, 3, T2M_ONLY, archive=archive)["hours"] == 744
    return xr.open_dataset(month_output_path(target, 2019, 3))


def test_the_one_file_extracts_like_its_hours_split_into_hourly_files(tmp_path, real_grib):
    one_file = tmp_path / "download"
    one_file.mkdir()
    (one_file / real_grib.name).symlink_to(real_grib)  # the archive as a user has it: one file, any name
    split_into_hourly_files(real_grib, tmp_path / "hourly")
    assert len(list((tmp_path / "hourly" / "2019" / "03").iterdir())) == 744
    whole = extract_archive(one_file, tmp_path / "from_one_file")
    hourly = extract_archive(tmp_path / "hourly", tmp_path / "from_hourly_files")
    for name in ("time", "lat", "lon"):
        np.testing.assert_array_equal(whole[name].values, hourly[name].values)
    np.testing.assert_array_equal(whole["2t"].values, hourly["2t"].values)
    assert whole["2t"].attrs == hourly["2t"].attrs == {"units": "K", "long_name": "2 metre temperature"}


def test_extracted_values_equal_cfgrib_and_the_documented_facts(tmp_path, real_grib):
    source = tmp_path / "download"
    source.mkdir()
    (source / "t2m.grib").symlink_to(real_grib)
    ours = extract_archive(source, tmp_path / "out")
    cf = xr.open_dataset(real_grib, engine="cfgrib", backend_kwargs={"indexpath": ""})
    assert cf.t2m.dims == ("time", "latitude", "longitude")
    cf = cf.assign_coords(longitude=cf.longitude % 360).sortby("longitude")  # ours: ascending in [0, 360)
    np.testing.assert_array_equal(ours.time.values, cf.valid_time.values)
    np.testing.assert_array_equal(ours.lat.values, cf.latitude.values)
    np.testing.assert_array_equal(ours.lon.values, cf.longitude.values)
    np.testing.assert_array_equal(ours["2t"].values, cf.t2m.values.astype(np.float32))
    # the file's documented facts: 33 x 49 points 58N..50N, 10W..2E; 265.7..291.6 K
    assert ours["2t"].shape == (744, 33, 49) and ours.lat.values[0] == 58.0 and ours.lat.values[-1] == 50.0
    assert ours.lon.values[0] == 0.0 and ours.lon.values[-1] == 359.75 and 350.0 in ours.lon.values
    assert round(float(ours["2t"].min()), 1) == 265.7 and round(float(ours["2t"].max()), 1) == 291.6
    # persistence (same hour, previous day) over all hours of the month: 3.49 K^2
    values = ours["2t"].values.astype(np.float64)
    assert round(float(np.mean((values[24:] - values[:-24]) ** 2)), 2) == 3.49
