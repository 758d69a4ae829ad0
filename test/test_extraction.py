"""Data extraction: GRIB → monthly netCDF, variable mapping, model-level interpolation, MPI, robustness."""
import hashlib
import json
import os
import shutil
import subprocess

import eccodes
import numpy as np
import pytest
import xarray as xr
from fixtures.archive import TINY_DAYS, TINY_GRID, TINY_MONTHS, TINY_VARIABLES, TINY_YEAR
from fixtures.common import assert_user_error, mpiexec, run_module

from video_prediction_tools.data_extraction import grib
from video_prediction_tools.data_extraction.synthetic import Grid, SyntheticAtmosphere, generate_archive
from video_prediction_tools.data_extraction.varmapping import load_varmapping, parse_varmapping
from video_prediction_tools.utils.errors import UserError

MODULE = "video_prediction_tools.main_scripts.main_data_extraction"
TEMPLATE = "templates/data_extraction/era5_varmapping_template.json"


def write_mapping(path, mapping):
    path.write_text(json.dumps(mapping))
    return path


def extract(source, target, *extra, year=TINY_YEAR, mapping_path=None, repo_root=None):
    mapping_path = mapping_path or (repo_root / TEMPLATE)
    return run_module(MODULE, "--source_dir", source, "--target_dir", target, "--year", year,
                      "--varslist_path", mapping_path, *extra)


def eccodes_field(path, short_name, level=None):
    """Values of the first message of ``short_name`` (at ``level``) in ``path``, decoded with plain eccodes."""
    with open(path, "rb") as stream:
        while (handle := eccodes.codes_grib_new_from_file(stream)) is not None:
            try:
                if eccodes.codes_get(handle, "shortName") == short_name and (
                        level is None or eccodes.codes_get(handle, "level") == level):
                    return eccodes.codes_get_values(handle).reshape(eccodes.codes_get(handle, "Nj"),
                                                                    eccodes.codes_get(handle, "Ni"))
            finally:
                eccodes.codes_release(handle)
    raise AssertionError(f"{short_name} not in {path}")


def edit_grib_file(path, edit):
    """Rewrite the GRIB file ``path`` after ``edit(handles)`` changed its messages (eccodes handles, in file order)."""
    with open(path, "rb") as stream:
        handles = []
        while (handle := eccodes.codes_grib_new_from_file(stream)) is not None:
            handles.append(handle)
    edit(handles)
    with open(path, "wb") as stream:
        for handle in handles:
            eccodes.codes_write(handle, stream)
            eccodes.codes_release(handle)


def copy_month(archive, tmp_path, month=1):
    """A private copy of one month of the tiny archive (to damage it)."""
    source = tmp_path / "grib"
    shutil.copytree(archive / f"{TINY_YEAR}" / f"{month:02d}", source / f"{TINY_YEAR}" / f"{month:02d}")
    return source, source / f"{TINY_YEAR}" / f"{month:02d}"


# ---- variable mapping ---------------------------------------------------------------------------------------------
def test_template_is_valid(repo_root):
    mapping = load_varmapping(repo_root / TEMPLATE)
    assert mapping.surface == ("2t", "tcc", "msl")
    assert mapping.output_names == ("2t", "tcc", "msl", "t_850")
    assert mapping.levels[0].pressure_pa == 85000 and mapping.levels[0].short_name == "t"


@pytest.mark.parametrize("data, fragment", [
    ([], "top level must be a JSON object"),
    ({}, "no variable is requested"),
    ({"surface": ["2t"], "multi": {}, "extra": 1}, "unknown key(s) 'extra'"),
    ({"surface": {"2t": "2t"}, "multi": {}}, "'surface' must be a list"),
    ({"surface": ["2t", 5], "multi": {}}, "'surface' entry 5"),
    ({"surface": [""], "multi": {}}, "'surface' entry ''"),
    ({"surface": [], "multi": ["t"]}, "'multi' must be an object"),
    ({"surface": [], "multi": {"t": 85000}}, "'multi'.t must be a non-empty object"),
    ({"surface": [], "multi": {"t": {}}}, "'multi'.t must be a non-empty object"),
    ({"surface": [], "multi": {"t": {"pl": "850"}}}, "is not a number"),
    ({"surface": [], "multi": {"t": {"pl": 850.5}}}, "whole number of hPa"),
    ({"surface": [], "multi": {"t": {"pl": -100}}}, "whole number of hPa"),
    ({"surface": [], "multi": {}}, "no variable is requested"),
    ({"surface": ["t_850"], "multi": {"t": {"pl": 85000}}}, "t_850 requested more than once"),
    ({"surface": ["2t", "2t"], "multi": {}}, "2t requested more than once"),
])
def test_wrong_mapping_shapes_are_user_errors(data, fragment):
    with pytest.raises(UserError, match="mapping") as caught:
        parse_varmapping(data, source="mapping.json")
    assert fragment in str(caught.value)


def test_mapping_file_errors_reach_the_cli(tmp_path, tiny_grib_archive):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"surface": ["2t"],, }')
    assert_user_error(extract(tiny_grib_archive, tmp_path / "out", mapping_path=bad_json), "bad.json",
                      "not valid JSON")
    wrong = write_mapping(tmp_path / "wrong.json", {"surface": "2t", "multi": {}})
    assert_user_error(extract(tiny_grib_archive, tmp_path / "out", mapping_path=wrong), "wrong.json", "'surface'")
    assert_user_error(extract(tiny_grib_archive, tmp_path / "out", mapping_path=tmp_path / "nope.json"),
                      "not found", "nope.json")
    assert not (tmp_path / "out" / "2017" / "01").exists()


# ---- extracted values --------------------------------------------------------------------------------------------
def test_extracted_month_matches_grib_decoded_values(tiny_extracted_archive, tiny_grib_archive):
    for month in TINY_MONTHS:
        path = tiny_extracted_archive / f"{TINY_YEAR}" / f"{month:02d}" / f"era5_{TINY_YEAR}_{month:02d}.nc"
        dataset = xr.open_dataset(path)
        assert tuple(dataset.data_vars) == TINY_VARIABLES
        start = np.datetime64(f"{TINY_YEAR}-{month:02d}-01T00", "ns")
        np.testing.assert_array_equal(dataset.time.values, start + np.arange(TINY_DAYS * 24) * np.timedelta64(1, "h"))
        np.testing.assert_allclose(dataset.lat.values, TINY_GRID.latitudes)
        np.testing.assert_allclose(dataset.lon.values, TINY_GRID.longitudes)
        assert dataset.lat.attrs["units"] == "degrees_north" and dataset.lon.attrs["units"] == "degrees_east"
        assert dataset["2t"].attrs == {"units": "K", "long_name": "2 metre temperature"}
        assert dataset["t_850"].attrs == {"units": "K", "long_name": "Temperature"}
        for name in TINY_VARIABLES:
            assert dataset[name].dims == ("time", "lat", "lon") and dataset[name].dtype == np.float32
        month_dir = tiny_grib_archive / f"{TINY_YEAR}" / f"{month:02d}"
        for index in (0, 37, TINY_DAYS * 24 - 1):
            stamp = str(dataset.time.values[index].astype("datetime64[h]")).replace("-", "").replace("T", "")
            for name in ("2t", "tcc", "msl", "10u", "10v"):
                expected = eccodes_field(month_dir / f"{stamp}_sf.grb", name).astype(np.float32)
                np.testing.assert_array_equal(dataset[name].values[index], expected)
            for name, level in (("t_850", 850), ("t_500", 500)):
                expected = eccodes_field(month_dir / f"{stamp}_ml.grb", "t", level).astype(np.float32)
                np.testing.assert_array_equal(dataset[name].values[index], expected)
    # an independent decoder: cfgrib on one hour
    sample = xr.open_dataset(tiny_grib_archive / "2017" / "02" / "2017020305_sf.grb", engine="cfgrib",
                             backend_kwargs={"filter_by_keys": {"shortName": "msl"}, "indexpath": ""})
    extracted = xr.open_dataset(tiny_extracted_archive / "2017" / "02" / "era5_2017_02.nc")
    np.testing.assert_allclose(extracted["msl"].sel(time="2017-02-03T05").values, sample.msl.values, rtol=1e-7)


def test_grid_across_greenwich_and_grib2_give_lon_ascending_in_0_360(tmp_path, repo_root):
    grid = Grid(45.0, 46.5, -1.5, 1.5, 0.3)
    generate_archive(tmp_path / "grib", [2018], [3], grid, days=1, edition=2)
    result = extract(tmp_path / "grib", tmp_path / "out", year=2018, repo_root=repo_root)
    assert result.returncode == 0, result.stderr
    dataset = xr.open_dataset(tmp_path / "out" / "2018" / "03" / "era5_2018_03.nc")
    expected_lon = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 358.5, 358.8, 359.1, 359.4, 359.7]
    np.testing.assert_allclose(dataset.lon.values, expected_lon, atol=1e-9)
    cf = xr.open_dataset(tmp_path / "grib" / "2018" / "03" / "2018030107_sf.grb", engine="cfgrib",
                         backend_kwargs={"filter_by_keys": {"shortName": "2t"}, "indexpath": ""})
    cf = cf.assign_coords(longitude=cf.longitude % 360).sortby("longitude")
    np.testing.assert_array_equal(dataset["2t"].sel(time="2018-03-01T07").values, cf.t2m.values)


MODEL_LEVEL_GRID = Grid(44.1, 45.6, 6.0, 7.8, 0.3)


@pytest.fixture(scope="module")
def model_level_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_levels")
    generate_archive(root, [2017], [7], MODEL_LEVEL_GRID, seed=5, model_levels=True, days=1)
    return root


def test_model_levels_interpolated_like_ml2pl_match_the_analytic_profile(tmp_path, model_level_archive):
    mapping = write_mapping(tmp_path / "m.json", {"surface": ["2t"], "multi": {"t": {"a": 85000, "b": 50000}}})
    result = extract(model_level_archive, tmp_path / "out", mapping_path=mapping)
    assert result.returncode == 0, result.stderr
    dataset = xr.open_dataset(tmp_path / "out" / "2017" / "07" / "era5_2017_07.nc")
    state = SyntheticAtmosphere(MODEL_LEVEL_GRID, seed=5).state(dataset.time.values)
    for name, pressure in (("t_850", 85000.0), ("t_500", 50000.0)):
        difference = np.abs(dataset[name].values - state.temperature(pressure))
        assert difference.max() < 0.05, (name, difference.max())


def test_full_column_model_levels_match_cdo_ml2pl(tmp_path):
    """Our t_850 from all 137 hybrid levels against CDO's ``ml2pl`` (the original's tool, an independent
    implementation: linear in pressure where ours is linear in log pressure, a difference far below 0.01 K between
    model levels 10 hPa apart), and the surface 2t against CDO's GRIB decoding."""
    if shutil.which("cdo") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("cdo is not installed: test/run_tests.sh installs it (apt-get install cdo)")
        pytest.skip("cdo is not installed (apt-get install cdo)")
    grid = Grid(44.1, 45.0, 6.0, 6.9, 0.3)
    generate_archive(tmp_path / "grib", [2017], [7], grid, seed=3, model_levels=True, full_column=True, days=1)
    mapping = write_mapping(tmp_path / "m.json", {"surface": ["2t"], "multi": {"t": {"a": 85000}}})
    result = extract(tmp_path / "grib", tmp_path / "out", mapping_path=mapping)
    assert result.returncode == 0, result.stderr
    ours = xr.open_dataset(tmp_path / "out" / "2017" / "07" / "era5_2017_07.nc")
    for hour in (0, 13):
        stamp = f"20170701{hour:02d}"
        for name, command in (("t_850", ["-selname,t", "-ml2pl,85000", f"{stamp}_ml.grb"]),
                              ("2t", ["-selname,2t", f"{stamp}_sf.grb"])):
            target = tmp_path / f"cdo_{name}_{stamp}.nc"
            subprocess.run(["cdo", "-s", "-f", "nc", "copy", *command[:-1], tmp_path / "grib" / "2017" / "07" /
                            command[-1], target], check=True)
            with xr.open_dataset(target) as cdo_file:
                cdo_values = next(iter(cdo_file.data_vars.values())).values.squeeze()
            np.testing.assert_allclose(ours[name].values[hour], cdo_values, atol=0.01, err_msg=f"{name} {stamp}")


def test_interpolation_is_linear_in_log_pressure():
    pressure = np.array([[[50000.0]], [[70000.0]], [[90000.0]]])
    values = np.array([[[250.0]], [[265.0]], [[280.0]]])
    result = grib.interpolate_to_pressure(values, pressure, 85000.0)
    weight = (np.log(85000) - np.log(70000)) / (np.log(90000) - np.log(70000))
    assert result[0, 0] == pytest.approx(265 + weight * 15)
    assert grib.interpolate_to_pressure(values, pressure, 95000.0)[0, 0] == 280.0  # below: lowest level
    assert grib.interpolate_to_pressure(values, pressure, 40000.0) is None  # above the top: refused


def test_model_level_errors(tmp_path, model_level_archive):
    mapping = write_mapping(tmp_path / "m.json", {"surface": [], "multi": {"t": {"pl": 10000}}})
    assert_user_error(extract(model_level_archive, tmp_path / "out", mapping_path=mapping),
                      "100 hPa lies above the highest model level")
    source = tmp_path / "grib"
    (source / "2017" / "07").mkdir(parents=True)
    original = model_level_archive / "2017" / "07" / "2017070100_ml.grb"
    lnsp_offset = grib.index_messages([original])[-1].offset  # lnsp is the last message
    (source / "2017" / "07" / original.name).write_bytes(original.read_bytes()[:lnsp_offset])
    mapping = write_mapping(tmp_path / "m.json", {"surface": [], "multi": {"t": {"pl": 85000}}})
    assert_user_error(extract(source, tmp_path / "out", mapping_path=mapping), "no 'lnsp'")
    assert not (tmp_path / "out" / "2017" / "07").exists()


# ---- MPI, rerun, overwrite ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.mpi
def test_one_and_two_ranks_give_identical_files(tmp_path, tiny_grib_archive, tiny_extracted_archive, repo_root):
    mapping = tiny_extracted_archive.parent / "varmapping.json"
    for ranks in (1, 2):
        result = mpiexec(ranks, MODULE, "--source_dir", tiny_grib_archive, "--target_dir", tmp_path / f"n{ranks}",
                         "--year", TINY_YEAR, "--varslist_path", mapping)
        assert result.returncode == 0, result.stderr
    for month in TINY_MONTHS:
        name = f"{TINY_YEAR}/{month:02d}/era5_{TINY_YEAR}_{month:02d}.nc"
        digests = {hashlib.sha256((root / name).read_bytes()).hexdigest()
                   for root in (tmp_path / "n1", tmp_path / "n2", tiny_extracted_archive)}
        assert len(digests) == 1, name
    assert (tmp_path / "n2" / "2017" / "extraction_2017.log").is_file()


def test_rerun_skips_and_overwrite_redoes(tmp_path, tiny_grib_archive, repo_root):
    result = extract(tiny_grib_archive, tmp_path / "out", "--months", "2", repo_root=repo_root)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "out" / "2017" / "02" / "era5_2017_02.nc"
    first = output.stat()
    result = extract(tiny_grib_archive, tmp_path / "out", "--months", "2", repo_root=repo_root)
    assert result.returncode == 0 and "skipped" in result.stderr
    assert output.stat().st_ino == first.st_ino and output.stat().st_mtime_ns == first.st_mtime_ns
    result = extract(tiny_grib_archive, tmp_path / "out", "--months", "2", "--overwrite", repo_root=repo_root)
    assert result.returncode == 0 and "1 month(s) written" in result.stderr
    assert output.stat().st_ino != first.st_ino
    assert not (tmp_path / "out" / "2017" / "01").exists()
    assert "2017-02" in (tmp_path / "out" / "2017" / "extraction_2017.log").read_text()


# ---- time axis ----------------------------------------------------------------------------------------------------
def test_six_hourly_data_with_a_gap_is_extracted_with_a_warning(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    for path in month_dir.iterdir():
        if int(path.name[8:10]) % 6 or path.name.startswith("2017010212"):
            path.unlink()
    result = extract(source, tmp_path / "out", repo_root=repo_root)
    assert result.returncode == 0, result.stderr
    assert "1 gap(s)" in result.stderr and "2017-01-02T06:00:00 -> 2017-01-02T18:00:00" in result.stderr
    dataset = xr.open_dataset(tmp_path / "out" / "2017" / "01" / "era5_2017_01.nc")
    assert len(dataset.time) == 4 * TINY_DAYS - 1
    assert (dataset.time.diff("time") >= np.timedelta64(6, "h")).all()


def test_ensemble_member_zero_is_taken_unless_told(tmp_path, repo_root):
    grid = Grid(40.0, 40.6, 10.0, 10.9, 0.3)
    month_dir = tmp_path / "grib" / "2019" / "05"
    month_dir.mkdir(parents=True)
    handle = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    for key, value in grid.grib_keys().items():
        eccodes.codes_set(handle, key, value)
    eccodes.codes_set(handle, "productDefinitionTemplateNumber", 1)
    eccodes.codes_set(handle, "shortName", "2t")
    eccodes.codes_set(handle, "dataDate", 20190501)
    with open(month_dir / "ens.grib2", "wb") as stream:
        for member in (2, 0, 1):
            eccodes.codes_set(handle, "number", member)
            eccodes.codes_set_values(handle, np.full(grid.ny * grid.nx, 270.0 + member))
            eccodes.codes_write(handle, stream)
    eccodes.codes_release(handle)
    mapping = write_mapping(tmp_path / "m.json", {"surface": ["2t"], "multi": {}})
    assert extract(tmp_path / "grib", tmp_path / "out", year=2019, mapping_path=mapping).returncode == 0
    assert extract(tmp_path / "grib", tmp_path / "out1", "--member", "1", year=2019,
                   mapping_path=mapping).returncode == 0
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "out/2019/05/era5_2019_05.nc")["2t"], 270.0)
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "out1/2019/05/era5_2019_05.nc")["2t"], 271.0)


# ---- bad input ends cleanly ---------------------------------------------------------------------------------------
def assert_no_output(target, month=1):
    month_dir = target / f"{TINY_YEAR}" / f"{month:02d}"
    assert not month_dir.exists() or not any(month_dir.iterdir()), list(month_dir.iterdir())


def test_truncated_grib_file(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    victim = month_dir / "2017010205_sf.grb"
    victim.write_bytes(victim.read_bytes()[:-300])
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), str(victim), "truncated")
    assert_no_output(tmp_path / "out")


def test_grib_file_with_trailing_garbage(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    victim = month_dir / "2017010100_ml.grb"
    # a lenient reader decodes the complete messages and ignores the rest
    victim.write_bytes(victim.read_bytes() + b"GRIB\x00\x01 not a message")
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), str(victim), "corrupt")
    assert_no_output(tmp_path / "out")


def test_empty_grib_file(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    (month_dir / "2017010300_sf.grb").write_bytes(b"")
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), "2017010300_sf.grb",
                      "no GRIB message")


@pytest.mark.parametrize("mapping, fragments", [
    ({"surface": ["2t", "sp"], "multi": {}}, ["variable 'sp'", "not found", "found: 10u, 10v, 2t"]),
    ({"surface": ["2t"], "multi": {"t": {"pl": 92500}}}, ["level 925 hPa of 't' not found", "_ml.grb",
                                                         "500, 700, 850, 1000 hPa"]),
    ({"surface": ["2t"], "multi": {"q": {"pl": 85000}}}, ["variable 'q'", "not found"]),
])
def test_variable_or_level_not_in_source(tmp_path, tiny_grib_archive, mapping, fragments):
    path = write_mapping(tmp_path / "m.json", mapping)
    result = extract(tiny_grib_archive, tmp_path / "out", "--months", "1", mapping_path=path)
    assert_user_error(result, *fragments)
    assert_no_output(tmp_path / "out")


def test_hour_with_a_missing_field(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    (month_dir / "2017010207_ml.grb").unlink()
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), "t_850 missing at 2017-01-02T07:00:00",
                      "2017010207_sf.grb")


def test_mixed_grids(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    other = tmp_path / "other"
    generate_archive(other, [TINY_YEAR], [1], Grid(38.4, 42.9, 0.0, 7.2, 0.3), days=1)
    shutil.copy(other / "2017" / "01" / "2017010109_sf.grb", month_dir / "2017010109_sf.grb")
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), "mixed grids", "2017010109_sf.grb")
    assert_no_output(tmp_path / "out")


def test_missing_values_in_a_field(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    victim = month_dir / "2017010111_sf.grb"

    def one_missing_value(handles):
        values = eccodes.codes_get_values(handles[2])
        values[5] = 9999.0
        eccodes.codes_set(handles[2], "missingValue", 9999.0)
        eccodes.codes_set(handles[2], "bitmapPresent", 1)
        eccodes.codes_set_values(handles[2], values)

    edit_grib_file(victim, one_missing_value)
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), str(victim), "msl",
                      "1 missing or NaN values")
    assert_no_output(tmp_path / "out")


def test_a_value_without_physical_sense_in_a_grib_field_is_refused(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    victim = month_dir / "2017010111_sf.grb"

    def one_huge_temperature(handles):
        [two_metre] = [handle for handle in handles if eccodes.codes_get(handle, "shortName") == "2t"]
        values = eccodes.codes_get_values(two_metre)
        values[5] = 1e30   # first row (the northernmost latitude), sixth column
        eccodes.codes_set_values(two_metre, values)

    edit_grib_file(victim, one_huge_temperature)
    decoded = eccodes_field(victim, "2t")[0, 5]
    assert decoded > 1e29
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), f"{TINY_YEAR}-01", "'2t'",
                      "1 value(s) outside the physical range", f"first {np.float32(decoded):.7g} K",
                      f"{TINY_YEAR}-01-01 11:00 UTC",
                      f"{TINY_GRID.lat_north:.2f}N {TINY_GRID.lon_west + 5 * TINY_GRID.resolution:.2f}E")
    assert_no_output(tmp_path / "out")


def test_months_the_archive_does_not_hold_are_refused_naming_what_it_holds(tmp_path, tiny_grib_archive, repo_root):
    assert_user_error(extract(tiny_grib_archive, tmp_path / "out", year=2016, repo_root=repo_root),
                      "holds no data for 2016", "(it holds 2017-01..2017-02)")
    assert_user_error(extract(tiny_grib_archive, tmp_path / "out", "--months", "1", "5", repo_root=repo_root),
                      "holds no data for 2017-05", "(it holds 2017-01..2017-02)")
    assert_user_error(extract(tmp_path / "nowhere", tmp_path / "out", repo_root=repo_root), "nowhere",
                      "does not exist")
    assert_user_error(extract(tiny_grib_archive, tmp_path / "no" / "such" / "out", repo_root=repo_root),
                      "parent directory does not exist")


@pytest.mark.slow
@pytest.mark.mpi
def test_a_failing_month_under_mpi_fails_the_job_but_not_the_other_month(tmp_path, tiny_grib_archive, repo_root):
    source = tmp_path / "grib"
    shutil.copytree(tiny_grib_archive, source)
    victim = source / "2017" / "02" / "2017020101_sf.grb"
    victim.write_bytes(victim.read_bytes()[:100])
    result = mpiexec(2, MODULE, "--source_dir", source, "--target_dir", tmp_path / "out", "--year", TINY_YEAR,
                     "--varslist_path", repo_root / TEMPLATE)
    assert_user_error(result, "1 of 2 unit(s) failed", "2017-02", str(victim))
    assert (tmp_path / "out" / "2017" / "01" / "era5_2017_01.nc").is_file()
    assert_no_output(tmp_path / "out", month=2)


# ---- archive layouts: files of any period and name, GRIB 1/2 or CDS netCDF --------------------------------------
def concatenate(files, target):
    """One GRIB file holding the messages of ``files`` (GRIB files are sequences of self-contained messages)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(path.read_bytes() for path in sorted(files)))
    return target


def assert_same_month(path, reference, names=None):
    ours, expected = xr.open_dataset(path), xr.open_dataset(reference)
    names = names or tuple(expected.data_vars)
    assert tuple(ours.data_vars) == names
    for coordinate in ("time", "lat", "lon"):
        np.testing.assert_array_equal(ours[coordinate].values, expected[coordinate].values)
    for name in names:
        np.testing.assert_array_equal(ours[name].values, expected[name].values)
        assert ours[name].attrs == expected[name].attrs


def test_a_month_file_anywhere_extracts_like_the_hourly_files(tmp_path, tiny_grib_archive, tiny_extracted_archive):
    root = tmp_path / "era5"
    concatenate((tiny_grib_archive / "2017" / "01").iterdir(), root / "downloads" / "january 2017.grib")
    mapping = tiny_extracted_archive.parent / "varmapping.json"
    result = run_module(MODULE, "--source_dir", root, "--target_dir", tmp_path / "out", "--varslist_path", mapping)
    assert result.returncode == 0, result.stderr
    assert_same_month(tmp_path / "out" / "2017" / "01" / "era5_2017_01.nc",
                      tiny_extracted_archive / "2017" / "01" / "era5_2017_01.nc")
    assert sorted(p.name for p in (tmp_path / "out" / "2017").iterdir()) == ["01", "extraction_2017.log"]
    # a single-level mapping needs no "multi" key
    single = write_mapping(tmp_path / "single.json", {"surface": ["2t", "msl"]})
    result = run_module(MODULE, "--source_dir", root, "--target_dir", tmp_path / "single", "--year", "2017",
                        "--months", "1", "--varslist_path", single)
    assert result.returncode == 0, result.stderr
    assert_same_month(tmp_path / "single" / "2017" / "01" / "era5_2017_01.nc",
                      tiny_extracted_archive / "2017" / "01" / "era5_2017_01.nc", names=("2t", "msl"))


def test_grib2_day_files_without_suffix_extract_like_the_hourly_files(tmp_path, repo_root):
    grid = Grid(45.0, 45.9, -0.6, 0.6, 0.3)
    generate_archive(tmp_path / "hourly", [2018], [3], grid, days=2, edition=2)
    month_dir = tmp_path / "hourly" / "2018" / "03"
    for day in ("01", "02"):  # files of one day each, named without a GRIB suffix, outside month folders
        concatenate(month_dir.glob(f"201803{day}*"), tmp_path / "days" / "march" / f"era5-day-{day}")
    for source, target in (("hourly", "reference"), ("days", "out")):
        assert extract(tmp_path / source, tmp_path / target, year=2018, repo_root=repo_root).returncode == 0
    assert_same_month(tmp_path / "out" / "2018" / "03" / "era5_2018_03.nc",
                      tmp_path / "reference" / "2018" / "03" / "era5_2018_03.nc")
    assert len(xr.open_dataset(tmp_path / "out" / "2018" / "03" / "era5_2018_03.nc").time) == 48


def test_two_files_offering_the_same_hour_are_refused_naming_both(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    extra = concatenate([month_dir / "2017010205_sf.grb"], source / "extra" / "one-hour.grib")
    result = extract(source, tmp_path / "out", repo_root=repo_root)
    assert_user_error(result, "duplicate field 2t", "2017-01-02T05:00:00", str(month_dir / "2017010205_sf.grb"),
                      str(extra))
    assert_no_output(tmp_path / "out")


def test_a_file_in_a_month_folder_with_hours_of_another_month_is_refused(tmp_path, tiny_grib_archive, repo_root):
    source, month_dir = copy_month(tiny_grib_archive, tmp_path)
    stray = shutil.copy(tiny_grib_archive / "2017" / "02" / "2017020100_sf.grb", month_dir / "stray.grb")
    assert_user_error(extract(source, tmp_path / "out", repo_root=repo_root), str(stray),
                      "holds fields valid outside 2017-01", "2017-02-01T00:00:00")


#: a coarse global grid (30 degrees) in the canonical output order: lat north->south, lon ascending in [0, 360)
CDS_LAT = np.array([60.0, 30.0, 0.0, -30.0, -60.0])
CDS_LON = np.arange(0.0, 360.0, 30.0)
#: 30 hours from 31 January 2019: one file holding hours of two months
CDS_TIMES = np.datetime64("2019-01-31T00", "ns") + np.arange(30) * np.timedelta64(1, "h")
CDS_LEVELS = np.array([500.0, 850.0])


def packing_scale(values: np.ndarray) -> float:
    """scale_factor of the packed (int16) variant: the value range in 60000 steps (values kept to half a step)."""
    return float(np.ptp(values)) / 60000


CDS_UNITS = {"t2m": "K", "t": "K", "tcc": "(0 - 1)", "msl": "Pa"}


def cds_fields() -> dict:
    """{CDS name: float32 values (time, [level,] lat, lon) in the canonical order}, every value distinct."""
    hours = np.arange(len(CDS_TIMES))[:, None, None]
    lat, lon = CDS_LAT[None, :, None], CDS_LON[None, None, :]
    base = 0.01 * hours + 0.1 * lat + np.cos(np.radians(lon)) + 0.001 * lon
    fields = {"t2m": 280.0 + base, "tcc": 0.5 + 0.01 * base, "msl": 101000.0 + 10.0 * base}
    fields["t"] = np.stack([250.0 + base, 270.0 + base], axis=1)
    return {name: values.astype(np.float32) for name, values in fields.items()}


def write_cds_netcdf(path, time_name, level_name, lat_ascending, lon_180, packed):
    """The fields of :func:`cds_fields` as a CDS netCDF file with the given coordinate conventions."""
    lat_order = np.argsort(CDS_LAT) if lat_ascending else np.arange(len(CDS_LAT))
    file_lon = (CDS_LON + 180.0) % 360.0 - 180.0 if lon_180 else CDS_LON
    lon_order = np.argsort(file_lon)
    variables = {}
    for name, values in cds_fields().items():
        dims = (time_name, level_name, "latitude", "longitude") if values.ndim == 4 else \
            (time_name, "latitude", "longitude")
        variables[name] = (dims, values[..., lat_order, :][..., lon_order],
                           {"units": CDS_UNITS[name], "long_name": f"{name} field", **({"GRIB_shortName": "2t"}
                                                                         if name == "t2m" and not packed else {})})
    coords = {time_name: CDS_TIMES, level_name: (level_name, CDS_LEVELS, {"units": "hPa"}),
              "latitude": CDS_LAT[lat_order], "longitude": file_lon[lon_order], "number": 0}
    if time_name == "valid_time":  # as the CDS writes since 2024: ensemble number and experiment version as coords
        coords["expver"] = (time_name, np.array(["0001"] * len(CDS_TIMES)))
    encoding = {name: {"dtype": "int16", "scale_factor": packing_scale(values), "add_offset": float(values.min() + values.max()) / 2,
                       "_FillValue": np.int16(-32767)} for name, values in cds_fields().items()} if packed else {}
    xr.Dataset(variables, coords=coords).to_netcdf(path, encoding=encoding)


@pytest.mark.parametrize("time_name, level_name, lat_ascending, lon_180, packed", [
    ("valid_time", "pressure_level", False, False, False),  # CDS since 2024: lat descending, lon 0..360
    ("valid_time", "pressure_level", True, True, False),
    ("time", "level", True, True, True),  # earlier CDS files: packed int16
])
def test_cds_netcdf_with_any_coordinate_conventions(tmp_path, time_name, level_name, lat_ascending, lon_180,
                                                    packed):
    from video_prediction_tools.data_extraction.archive import months_of_work
    from video_prediction_tools.data_extraction.extract import extract_month

    (tmp_path / "cds").mkdir()
    write_cds_netcdf(tmp_path / "cds" / "data.nc", time_name, level_name, lat_ascending, lon_180, packed)
    archive, units = months_of_work(tmp_path / "cds")
    assert units == [(2019, 1), (2019, 2)]
    assert archive.variables() == {"2t": [("surface", 0.0)], "msl": [("surface", 0.0)], "t": [
        ("isobaricInhPa", 500.0), ("isobaricInhPa", 850.0)], "tcc": [("surface", 0.0)]}
    mapping = parse_varmapping({"surface": ["2t", "tcc", "msl"], "multi": {"t": {"pl": 85000}}})
    expected = cds_fields()
    tolerance = {name: packing_scale(values) / 2 * 1.001 if packed else 0 for name, values in expected.items()}
    expected["t_850"], tolerance["t_850"] = expected.pop("t")[:, 1], tolerance["t"]
    for (year, month), hours in zip(units, (slice(0, 24), slice(24, 30))):
        extract_month(tmp_path / "cds", tmp_path / "out", year, month, mapping, archive=archive)
        ours = xr.open_dataset(tmp_path / "out" / f"{year}" / f"{month:02d}" / f"era5_{year}_{month:02d}.nc")
        np.testing.assert_array_equal(ours.time.values, CDS_TIMES[hours])
        np.testing.assert_array_equal(ours.lat.values, CDS_LAT)
        np.testing.assert_array_equal(ours.lon.values, CDS_LON)
        for cds_name, name in (("t2m", "2t"), ("tcc", "tcc"), ("msl", "msl"), ("t_850", "t_850")):
            # packed: within half the packing step, plus the float32 rounding of the unpacked value
            np.testing.assert_allclose(ours[name].values, expected[cds_name][hours], rtol=1.2e-7 if packed else 0,
                                       atol=tolerance[cds_name], err_msg=name)


def test_netcdf_with_missing_values_or_an_irregular_grid_is_refused(tmp_path, repo_root):
    source = tmp_path / "cds"
    source.mkdir()
    mapping = write_mapping(tmp_path / "m.json", {"surface": ["2t"]})
    times = CDS_TIMES[:3]
    values = np.full((3, 2, 3), 280.0, dtype=np.float32)
    values[1, 0, 2] = np.nan
    coords = {"valid_time": times, "latitude": [50.0, 49.0], "longitude": [0.0, 1.0, 2.0]}
    xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), values)}, coords=coords).to_netcdf(source / "a.nc")
    assert_user_error(extract(source, tmp_path / "out", year=2019, mapping_path=mapping), "a.nc",
                      "2t (surface 0) at 2019-01-31T01:00:00 has 1 missing or NaN values")
    coords["longitude"] = [0.0, 1.0, 3.0]
    xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), values)}, coords=coords).to_netcdf(source / "a.nc")
    assert_user_error(extract(source, tmp_path / "out", year=2019, mapping_path=mapping), "a.nc",
                      "longitude coordinate is not a regular grid")


@pytest.mark.slow
@pytest.mark.mpi
def test_a_file_of_two_months_gives_identical_output_on_one_and_two_ranks(tmp_path):
    (tmp_path / "cds").mkdir()
    write_cds_netcdf(tmp_path / "cds" / "data.nc", "valid_time", "pressure_level", False, True, False)
    mapping = write_mapping(tmp_path / "m.json", {"surface": ["2t", "tcc"], "multi": {"t": {"pl": 50000}}})
    for ranks in (1, 2):
        result = mpiexec(ranks, MODULE, "--source_dir", tmp_path / "cds", "--target_dir", tmp_path / f"n{ranks}",
                         "--varslist_path", mapping)
        assert result.returncode == 0, result.stderr
    for month in ("01", "02"):
        name = f"2019/{month}/era5_2019_{month}.nc"
        assert (tmp_path / "n1" / name).read_bytes() == (tmp_path / "n2" / name).read_bytes(), name


def test_a_target_inside_the_archive_is_not_read_as_input(tmp_path, repo_root):
    (tmp_path / "cds").mkdir()
    write_cds_netcdf(tmp_path / "cds" / "data.nc", "valid_time", "pressure_level", False, False, False)
    mapping = write_mapping(tmp_path / "m.json", {"surface": ["2t"]})
    for rerun in ("", "--overwrite"):  # the second run would see the first one's netCDF output as CDS input
        result = run_module(MODULE, "--source_dir", tmp_path / "cds", "--target_dir", tmp_path / "cds" / "out",
                            "--varslist_path", mapping, *filter(None, [rerun]))
        assert result.returncode == 0, result.stderr
    assert "2 month(s) written" in result.stderr
