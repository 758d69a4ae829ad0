"""Provenance of every step's units: unchanged inputs and options -> skipped (file untouched); a changed input or
option, or a missing record -> redone with the new content (step 2 refuses when it cannot redo)."""
import hashlib
import json
import os

import numpy as np
import pytest
import xarray as xr
from fixtures.archive import TINY_GRID, TINY_YEAR
from fixtures.preprocessed import make_step1_experiment, write_extracted_archive, write_step1_month

from video_prediction_tools.data_extraction.climatology import compute_climatology
from video_prediction_tools.data_extraction.extract import extract_month, month_output_path
from video_prediction_tools.data_extraction.synthetic import generate_archive
from video_prediction_tools.data_extraction.varmapping import parse_varmapping
from video_prediction_tools.data_preprocess import step2
from video_prediction_tools.data_preprocess.step1 import month_outputs, preprocess_step1
from video_prediction_tools.utils import provenance
from video_prediction_tools.utils.errors import UserError

SURFACE_ONLY = parse_varmapping({"surface": ["2t"], "multi": {}})
WITH_T850 = parse_varmapping({"surface": ["2t"], "multi": {"t": {"pl": 85000}}})
BAND_LAT = np.arange(60.0, 29.9, -3.0)
BAND_LON = np.arange(120) * 3.0


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity(path):
    """What changes when a file is rewritten (atomic writes give a new inode)."""
    info = path.stat()
    return info.st_ino, info.st_mtime_ns


# ---- the mechanism ---------------------------------------------------------------------------------------------
def test_check_names_what_changed_and_reuses_digests_of_untouched_files(tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"abcd")
    record = tmp_path / "out.provenance.json"
    first = provenance.check(record, [source], tmp_path, {"variables": ["2t"]}, outputs=[tmp_path / "out"])
    assert first.first_time and "no provenance record" in first.reason
    assert first.fingerprints["in.bin"]["sha256"] == hashlib.sha256(b"abcd").hexdigest()
    (tmp_path / "out").write_text("done")
    provenance.write(record, "unit", first.fingerprints, {"variables": ("2t",)})
    assert provenance.check(record, [source], tmp_path, {"variables": ["2t"]}, [tmp_path / "out"]).reason is None
    assert "option variables was [\"2t\"], now [\"tcc\"]" in provenance.check(
        record, [source], tmp_path, {"variables": ["tcc"]}).reason
    extra = tmp_path / "more.bin"
    extra.write_bytes(b"x")
    assert provenance.check(record, [source, extra], tmp_path, {"variables": ["2t"]}).reason == \
        "new input file more.bin"
    assert provenance.check(record, [], tmp_path, {"variables": ["2t"]}).reason == "input file in.bin is gone"
    assert provenance.check(record, [], tmp_path, {"variables": ["2t"]}, may_vanish=[source]).reason is None
    # same size and the old mtime put back: the changed ctime makes the digest be recomputed, which tells
    stat = source.stat()
    source.write_bytes(b"abce")
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = provenance.check(record, [source], tmp_path, {"variables": ["2t"]})
    assert changed.reason == "input file in.bin changed"
    assert changed.fingerprints["in.bin"]["sha256"] == hashlib.sha256(b"abce").hexdigest()
    # a record that is not a provenance record is never trusted
    record.write_text("{}")
    assert "unreadable provenance record" in provenance.check(record, [source], tmp_path, {}).reason


# ---- extraction ------------------------------------------------------------------------------------------------
def test_extraction_skips_unchanged_and_redoes_changed_grib_or_mapping(tmp_path):
    grib = tmp_path / "grib"
    generate_archive(grib, [TINY_YEAR], [1], TINY_GRID, seed=0, days=1)
    target = tmp_path / "ExtractedData"
    output = month_output_path(target, TINY_YEAR, 1)
    assert extract_month(grib, target, TINY_YEAR, 1, SURFACE_ONLY)["status"] == "written"
    before = identity(output)
    assert extract_month(grib, target, TINY_YEAR, 1, SURFACE_ONLY)["status"] == "skipped"
    assert identity(output) == before
    # another variable mapping: the month is redone and holds the new variable
    assert extract_month(grib, target, TINY_YEAR, 1, WITH_T850)["status"] == "written"
    assert sorted(xr.open_dataset(output).data_vars) == ["2t", "t_850"]
    # corrected GRIB (another seed, same names): redone, identical to a clean extraction of the new files
    generate_archive(grib, [TINY_YEAR], [1], TINY_GRID, seed=1, days=1)
    assert extract_month(grib, target, TINY_YEAR, 1, WITH_T850)["status"] == "written"
    clean = tmp_path / "clean"
    extract_month(grib, clean, TINY_YEAR, 1, WITH_T850)
    assert digest(output) == digest(month_output_path(clean, TINY_YEAR, 1))
    # output of an older AMBS (no record) is redone, not trusted
    provenance.record_path(output).unlink()
    before = identity(output)
    assert extract_month(grib, target, TINY_YEAR, 1, WITH_T850)["status"] == "written"
    assert identity(output) != before and provenance.record_path(output).is_file()


# ---- climatology -----------------------------------------------------------------------------------------------
def test_climatology_skips_unchanged_and_redoes_changed_input_or_variable(tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1], days=1, lat=BAND_LAT, lon=BAND_LON)
    out = tmp_path / "clim.nc"
    assert compute_climatology(source, [2017], "2t", out) == "written"
    before = identity(out)
    assert compute_climatology(source, [2017], "2t", out) == "skipped"
    assert identity(out) == before
    assert compute_climatology(source, [2017], "tcc", out) == "written"
    assert list(xr.open_dataset(out).data_vars) == ["tcc", "n_samples"]
    month_file = source / "2017" / "01" / "era5_2017_01.nc"
    changed = xr.load_dataset(month_file)
    changed["tcc"] = changed["tcc"] * 0.5
    changed.to_netcdf(month_file)
    assert compute_climatology(source, [2017], "tcc", out) == "written"
    expected = changed["tcc"].values.astype(np.float64)[0::24].mean(axis=0)  # hour 0 of the one day
    np.testing.assert_allclose(xr.open_dataset(out)["tcc"].sel(month=1, hour=0).values, expected, rtol=1e-6)


# ---- step 1 ----------------------------------------------------------------------------------------------------
def run_step1(source, destination):
    return preprocess_step1(source, destination, years=[2017], months=[1, 2], variables=["2t", "tcc"],
                            sw_corner=(42.0, 3.0), nyx=(3, 4))


def test_step1_skips_unchanged_months_and_redoes_a_changed_one(tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1, 2], days=1, lat=BAND_LAT,
                                     lon=BAND_LON)
    expdir = run_step1(source, tmp_path / "PreprocessedData")
    x_jan, stat_jan = month_outputs(expdir, 2017, 1)
    x_feb, stat_feb = month_outputs(expdir, 2017, 2)
    before = {path: identity(path) for path in (x_jan, stat_jan, x_feb, stat_feb)}
    run_step1(source, tmp_path / "PreprocessedData")
    assert {path: identity(path) for path in before} == before
    # corrected January source: January is redone with the new values, February is left alone
    january = source / "2017" / "01" / "era5_2017_01.nc"
    corrected = xr.load_dataset(january)
    corrected["2t"] = corrected["2t"] + np.float32(1.5)
    corrected.to_netcdf(january)
    run_step1(source, tmp_path / "PreprocessedData")
    assert identity(x_jan) != before[x_jan] and identity(x_feb) == before[x_feb]
    clean = run_step1(source, tmp_path / "clean")
    assert digest(x_jan) == digest(month_outputs(clean, 2017, 1)[0])
    assert stat_jan.read_text() == month_outputs(clean, 2017, 1)[1].read_text()
    # a month recorded with other options (here: other variables in the same experiment) is redone
    record = provenance.record_path(x_feb)
    content = json.loads(record.read_text())
    content["options"]["variables"] = ["2t", "2t"]
    record.write_text(json.dumps(content))
    run_step1(source, tmp_path / "PreprocessedData")
    assert identity(x_feb) != before[x_feb]
    assert json.loads(record.read_text())["options"]["variables"] == ["2t", "tcc"]


# ---- step 2 ----------------------------------------------------------------------------------------------------
MONTHS = {(2017, 1): 30, (2017, 2): 20}


def test_step2_rewrites_a_month_that_step1_redid_so_records_and_statistics_agree(tmp_path):
    exp_dir = tmp_path / "EXP"
    raw = make_step1_experiment(exp_dir, MONTHS)
    tfrecords = step2.run_step2(exp_dir)
    january, february = (tfrecords / step2.tfrecord_name(2017, month) for month in (1, 2))
    before = {path: identity(path) for path in (january, february)}
    step2.run_step2(exp_dir)
    assert {path: identity(path) for path in before} == before
    # step 1 rerun on corrected data writes a new X_01.nc and stat_01.json; step 2 without --overwrite redoes it
    data, times = raw[(2017, 1)]
    write_step1_month(exp_dir, 2017, 1, data + 2.0, times)
    step2.run_step2(exp_dir)
    np.testing.assert_array_equal(step2.read_month_records(january, (8, 12, 3))[0], data + 2.0)
    assert identity(february) == before[february]
    assert not (exp_dir / "2017" / "X_01.nc").exists()
    statistics = json.loads((exp_dir / "statistics.json").read_text())
    expected_max = max(float((data + 2.0)[..., 0].max()), float(raw[(2017, 2)][0][..., 0].max()))
    assert statistics["2t"]["max"] == expected_max


def test_step2_refuses_a_month_whose_statistics_changed_after_its_netcdf_was_deleted(tmp_path):
    exp_dir = tmp_path / "EXP"
    make_step1_experiment(exp_dir, MONTHS)
    step2.run_step2(exp_dir)
    stat = exp_dir / "2017" / "stat_02.json"
    stat.write_text(stat.read_text().replace('"count"', '"count" ', 1))
    with pytest.raises(UserError, match=r"2017-02: sequence_Y_2017_M_02.tfrecords is out of date \(input file "
                                        r"2017/stat_02.json changed\).*rerun step 1"):
        step2.run_step2(exp_dir)
