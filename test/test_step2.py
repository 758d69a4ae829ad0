"""Preprocessing step 2: TFRecords with each hour once, statistics.json, dataset_info.json, storage, MPI, errors."""
import json

import numpy as np
import pytest
import tensorflow as tf

from fixtures.common import assert_user_error, mpiexec, run_module
from fixtures.preprocessed import make_step1_experiment, synthetic_fields, write_step1_month
from video_prediction_tools.data_preprocess import records, step2
from video_prediction_tools.utils.errors import UserError

MODULE = "video_prediction_tools.main_scripts.main_preprocess_data_step2"
MONTHS = {(2017, 1): 60, (2017, 2): 50, (2017, 3): 40}
GAPS = {(2017, 2): [20, 21, 22]}      # February: hours 0-19 and 23-49 (two blocks)


@pytest.fixture
def experiment(tmp_path):
    exp_dir = tmp_path / "PreprocessedData" / "era5-Y2017-2017M01to03-12x8-4290N0600E-2t_tcc_t_850"
    raw = make_step1_experiment(exp_dir, MONTHS, gaps=GAPS)
    return exp_dir, raw


def hand_stats(values):
    values = np.asarray(values, dtype=np.float64).ravel()
    return values.min(), values.max(), values.mean(), values.std()


def test_step2_stores_each_hour_once_with_valid_times(experiment):
    exp_dir, raw = experiment
    result = run_module(MODULE, "--source_dir", exp_dir, "--sequence_length", 12)
    assert result.returncode == 0, result.stderr
    tfrecord_dir = exp_dir / "tfrecords"
    for (year, month), (data, times) in raw.items():
        path = tfrecord_dir / f"sequence_Y_{year}_M_{month:02d}.tfrecords"
        images, valid = records.read_month_records(path, (8, 12, 3))
        np.testing.assert_array_equal(images, data)            # physical float32 values, bit for bit
        expected = [int(str(t).replace("-", "").replace("T", "")) for t in times]
        assert valid.tolist() == expected                       # YYYYMMDDHH
        assert images.shape[0] == len(times)                    # each hour once
        assert sum(1 for _ in tf.data.TFRecordDataset(str(path))) == len(times)   # one record per hour
        assert not (exp_dir / f"{year}" / f"X_{month:02d}.nc").exists()
        assert (exp_dir / f"{year}" / f"stat_{month:02d}.json").exists()
    info = json.loads((tfrecord_dir / "dataset_info.json").read_text())
    assert "sequence_length" not in info          # the training hyper-parameters own the window length
    assert info["variables"] == ["2t", "tcc", "t_850"]
    assert info["frame_shape"] == [8, 12, 3]
    assert list(info["months"]) == ["2017-01", "2017-02", "2017-03"]
    assert info["months"]["2017-02"]["blocks"] == [[2017020100, 20], [2017020123, 27]]
    assert info["months"]["2017-01"]["file"] == "sequence_Y_2017_M_01.tfrecords"


def test_statistics_json_is_the_merge_of_all_months(experiment):
    exp_dir, raw = experiment
    step2.run_step2(exp_dir)
    stats = json.loads((exp_dir / "statistics.json").read_text())
    everything = np.concatenate([data for data, _ in raw.values()])
    for channel, variable in enumerate(["2t", "tcc", "t_850"]):
        low, high, mean, sigma = hand_stats(everything[..., channel])
        entry = stats[variable]
        assert entry["count"] == everything[..., channel].size
        assert entry["min"] == pytest.approx(low, abs=0) and entry["max"] == pytest.approx(high, abs=0)
        assert entry["avg"] == pytest.approx(mean, rel=1e-12)
        assert entry["sigma"] == pytest.approx(sigma, rel=1e-9)
    assert stats["common_stat"] == {"nhours": 60 + 47 + 40, "months": ["2017-01", "2017-02", "2017-03"]}


def test_storage_within_1_1_of_raw_float32(tiny_tfrecords):
    raw_bytes = sum(data.size * 4 for data, _ in tiny_tfrecords.raw.values())
    on_disk = sum(p.stat().st_size for p in tiny_tfrecords.exp_dir.rglob("*") if p.is_file())
    assert not list(tiny_tfrecords.exp_dir.rglob("X_*.nc"))
    assert on_disk <= 1.1 * raw_bytes, (on_disk, raw_bytes)


def test_keep_netcdf_rerun_skips_and_overwrite(experiment):
    exp_dir, raw = experiment
    step2.run_step2(exp_dir, keep_netcdf=True)
    january = exp_dir / "tfrecords" / "sequence_Y_2017_M_01.tfrecords"
    assert (exp_dir / "2017" / "X_01.nc").exists()
    first_info = (exp_dir / "tfrecords" / "dataset_info.json").read_text()
    # a rerun keeps finished months (same file, untouched) and deletes the netCDF now
    stamp = january.stat().st_mtime_ns
    step2.run_step2(exp_dir)
    assert january.stat().st_mtime_ns == stamp
    assert not (exp_dir / "2017" / "X_01.nc").exists()
    assert (exp_dir / "tfrecords" / "dataset_info.json").read_text() == first_info
    # once the netCDF is gone, a rerun recovers everything from the TFRecords; another sequence_length only
    # changes the check, not the output
    step2.run_step2(exp_dir, sequence_length=6, overwrite=True)
    assert (exp_dir / "tfrecords" / "dataset_info.json").read_text() == first_info
    # with the netCDF back (step 1 rerun) --overwrite rewrites the month with the new values
    data, times = raw[(2017, 1)]
    write_step1_month(exp_dir, 2017, 1, data + 1.0, times)
    step2.run_step2(exp_dir, overwrite=True)
    images = records.read_month_records(january, (8, 12, 3))[0]
    np.testing.assert_array_equal(images, data + 1.0)


@pytest.mark.slow
@pytest.mark.mpi
def test_mpi_one_and_two_ranks_identical(tmp_path):
    outputs = []
    for ranks in (1, 2):
        exp_dir = tmp_path / f"run{ranks}" / "EXP"
        make_step1_experiment(exp_dir, MONTHS, gaps=GAPS)
        result = mpiexec(ranks, MODULE, "--source_dir", exp_dir)
        assert result.returncode == 0, result.stderr
        # logs and provenance records (they hold the inputs' mtimes and inodes) differ between two trees
        files = sorted(p for p in [exp_dir / "statistics.json", *(exp_dir / "tfrecords").iterdir()]
                       if ".log" not in p.name and not p.name.endswith(".provenance.json"))
        outputs.append({str(p.relative_to(exp_dir)): p.read_bytes() for p in files})
    assert list(outputs[0]) == list(outputs[1])
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 5 and "tfrecords/sequence_Y_2017_M_03.tfrecords" in outputs[0]


@pytest.mark.slow
@pytest.mark.mpi
def test_mpi_failure_of_one_month_ends_every_rank_cleanly(experiment):
    exp_dir, raw = experiment
    data, times = raw[(2017, 2)]
    data = data.copy()
    data[5, 3, 4, 1] = np.nan
    write_step1_month(exp_dir, 2017, 2, data, times)
    result = mpiexec(2, MODULE, "--source_dir", exp_dir)
    assert_user_error(result, "2017-02", "X_02.nc", "NaN")
    assert not (exp_dir / "tfrecords" / "sequence_Y_2017_M_02.tfrecords").exists()
    assert not (exp_dir / "tfrecords" / "dataset_info.json").exists()
    assert (exp_dir / "2017" / "X_02.nc").exists()
    assert not list((exp_dir / "tfrecords").glob(".*tmp*"))


def test_bad_inputs_end_cleanly(tmp_path, experiment):
    exp_dir, raw = experiment
    assert_user_error(run_module(MODULE, "--source_dir", tmp_path / "nope"), "nope", "does not exist")
    assert_user_error(run_module(MODULE, "--source_dir", exp_dir, "--sequence_length", "1"), "sequence_length")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run_module(MODULE, "--source_dir", empty), "metadata")
    # channels in another order than metadata.json
    data, times = raw[(2017, 3)]
    write_step1_month(exp_dir, 2017, 3, data, times, variables=["tcc", "2t", "t_850"])
    with pytest.raises(UserError, match="channels"):
        step2.run_step2(exp_dir)
    # a month whose netCDF vanished before conversion
    (exp_dir / "2017" / "X_03.nc").unlink()
    assert_user_error(run_module(MODULE, "--source_dir", exp_dir), "X_03.nc", "rerun step 1")
    # a corrupt netCDF
    (exp_dir / "2017" / "X_03.nc").write_bytes(b"not a netcdf file")
    assert_user_error(run_module(MODULE, "--source_dir", exp_dir), "X_03.nc", "cannot read")


def test_help_and_synthetic_fields():
    result = run_module(MODULE, "--help")
    assert result.returncode == 0 and "--sequence_length" in result.stdout and "--keep_netcdf" in result.stdout
    assert "not recorded" in result.stdout
    hours = np.array(["2017-01-01T00", "2017-01-01T01", "2017-01-01T05"], dtype="datetime64[h]")
    assert synthetic_fields(hours).shape == (3, 8, 12, 3)


def test_sequence_length_longer_than_every_gap_free_span_is_refused(experiment):
    """January holds 60 consecutive hours, February 20 + 27, March 40: 61 hours fit nowhere."""
    exp_dir, _ = experiment
    result = run_module(MODULE, "--source_dir", exp_dir, "--sequence_length", 61)
    assert_user_error(result, "--sequence_length 61", "60 hours", "2017-01")
    assert not (exp_dir / "tfrecords" / "dataset_info.json").exists()
    assert not (exp_dir / "statistics.json").exists()


@pytest.mark.slow
def test_months_without_a_window_are_named_in_a_warning(experiment):
    """41 hours fit into January (60) only: February (20 + 27) and March (40) are named."""
    exp_dir, _ = experiment
    result = run_module(MODULE, "--source_dir", exp_dir, "--sequence_length", 41)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "--sequence_length 41" in line]
    assert len(warnings) == 1 and "2 month(s): 2017-02, 2017-03" in warnings[0]
    # 40 hours fit into March too
    result = run_module(MODULE, "--source_dir", exp_dir, "--sequence_length", 40)
    assert result.returncode == 0 and "2 month(s)" not in result.stdout + result.stderr
    assert "1 month(s): 2017-02" in result.stdout + result.stderr
