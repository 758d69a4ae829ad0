"""Date-range data splits of ERA5: parsing and every refusal, windows inside one range (never straddling two modes),
training statistics from exactly the training hours, the month form read into the same ranges with unchanged
windows and statistics, and (slow, on the real March 2019 file) the whole chain with a split by dates."""
import json

import numpy as np
import pytest
import xarray as xr
from fixtures.archive import REAL_ERA5_T2M, shared_data
from fixtures.common import REPO_ROOT, run_module
from fixtures.preprocessed import make_step1_experiment

from video_prediction_tools.data_preprocess.records import yyyymmddhh_to_datetime
from video_prediction_tools.data_preprocess.step2 import run_step2
from video_prediction_tools.datasets.datasplit import (hours_of_months, load_datasplit, month_range,
                                                       propose_date_split, window_rows)
from video_prediction_tools.datasets.era5 import ERA5Dataset
from video_prediction_tools.runscript_generator.checks import evaluated_windows
from video_prediction_tools.utils.errors import UserError

H = np.timedelta64(1, "h")
DAY = {"sequence_length": 24}
#: the issue's split of March 2019
MARCH_2019 = {"train": [["2019-03-01T00", "2019-03-21T23"]], "val": [["2019-03-22T00", "2019-03-25T23"]],
              "test": [["2019-03-26T00", "2019-03-31T23"]]}


def hour(text):
    return np.datetime64(text, "h")


@pytest.fixture(scope="module")
def months(tmp_path_factory):
    """January 2017 complete, February with a gap at hours 30-32, March 40 h; after step 2."""
    exp_dir = tmp_path_factory.mktemp("dates") / "EXP"
    raw = make_step1_experiment(exp_dir, {(2017, 1): 744, (2017, 2): 672, (2017, 3): 40},
                                gaps={(2017, 2): [30, 31, 32]})
    run_step2(exp_dir, sequence_length=24)
    return exp_dir, raw


def raw_hours(raw, first, last):
    """Step-1 values ``[hours, lat, lon, channel]`` of the hours in ``[first, last]`` (float64)."""
    data = np.concatenate([raw[m][0] for m in sorted(raw)])
    times = np.concatenate([raw[m][1] for m in sorted(raw)])
    return data[(times >= hour(first)) & (times <= hour(last))].astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# parsing and refusals

def test_both_forms_read_as_hour_ranges():
    split = load_datasplit({"train": {"2019": [1, 2]}, "val": [["2019-03-01T06", "2019-03-02T05"]],
                            "test": [["2019-03-20T00", "2019-03-31T23"], ["2019-03-05T00", "2019-03-05T23"]]})
    assert split["train"] == [month_range(2019, 1), month_range(2019, 2)]
    assert month_range(2019, 2) == (hour("2019-02-01T00"), hour("2019-02-28T23"))
    assert split["val"] == [(hour("2019-03-01T06"), hour("2019-03-02T05"))]
    assert split["test"] == [(hour("2019-03-05T00"), hour("2019-03-05T23")),      # chronological
                             (hour("2019-03-20T00"), hour("2019-03-31T23"))]
    assert load_datasplit(MARCH_2019, available=hours_of_months({(2019, 3)}))["test"] == [
        (hour("2019-03-26T00"), hour("2019-03-31T23"))]


@pytest.mark.parametrize("split, message", [
    ({"train": [["2019-03-01", "2019-03-21T23"]]},
     "'train' hour '2019-03-01' is not a date and hour YYYY-MM-DDTHH (e.g. 2019-03-01T00)"),
    ({"train": [["2019-02-29T00", "2019-03-21T23"]]}, "'train' hour '2019-02-29T00' is not a date and hour"),
    ({"train": [["2019-03-01T24", "2019-03-21T23"]]}, "'train' hour '2019-03-01T24' is not a date and hour"),
    ({"train": [[2019030100, 2019032123]]}, "'train' hour 2019030100 is not a date and hour"),
    ({"train": [["2019-03-01T00"]]}, "'train' range ['2019-03-01T00']: expected [first hour, last hour]"),
    ({"train": ["2019-03-01T00", "2019-03-21T23"]}, "'train' range '2019-03-01T00': expected [first hour, last"),
    ({"train": []}, "'train' lists no hour range"),
    ({"train": "2019-03"}, "'train' must map years to month lists, e.g. {\"2017\": [1, 2]}, or list inclusive hour"),
    ({"val": [["2019-03-25T23", "2019-03-22T00"]]}, "'val' range [2019-03-25T23, 2019-03-22T00] ends before it"),
    ({"train": [["2019-03-01T00", "2019-03-21T23"]], "val": [["2019-03-21T12", "2019-03-25T23"]]},
     "[2019-03-01T00, 2019-03-21T23] of 'train' and [2019-03-21T12, 2019-03-25T23] of 'val' overlap (hours "
     "2019-03-21T12 to 2019-03-21T23 are in both)"),
    ({"train": [["2019-03-01T00", "2019-03-10T00"], ["2019-03-10T00", "2019-03-21T23"]]},
     "[2019-03-01T00, 2019-03-10T00] of 'train' and [2019-03-10T00, 2019-03-21T23] of 'train' overlap (hours "
     "2019-03-10T00 to 2019-03-10T00 are in both)"),
    ({"train": {"2019": [3]}, "test": [["2019-03-26T00", "2019-03-31T23"]]},
     "2019-03 of 'train' and [2019-03-26T00, 2019-03-31T23] of 'test' overlap"),
    ({"train": {"2019": [3, 3]}}, "2019-03 of 'train' and 2019-03 of 'train' overlap"),
    ({"training": [["2019-03-01T00", "2019-03-21T23"]]}, "unknown mode(s) training"),
])
def test_every_refusal_is_one_line_naming_the_value(split, message):
    with pytest.raises(UserError) as caught:
        load_datasplit(split)
    assert str(caught.value).startswith("data split: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_ranges_naming_hours_without_data_are_refused_with_the_hours(months, tmp_path):
    exp_dir, _ = months
    split_file = tmp_path / "split.json"
    # February lacks hours 30-32 (2017-02-02T06..08); March holds 40 hours (up to 2017-03-02T15)
    split_file.write_text(json.dumps({"train": [["2017-02-01T00", "2017-02-03T23"]],
                                      "test": [["2017-03-02T00", "2017-03-05T23"]]}))
    with pytest.raises(UserError) as caught:
        ERA5Dataset.load_split(split_file, exp_dir)
    assert str(caught.value) == (f"data split {split_file}: 'train' range [2017-02-01T00, 2017-02-03T23] names 3 "
                                 f"hour(s) without data (first 2017-02-02T06, last 2017-02-02T08; available: 3 "
                                 f"month(s) from 2017-01 to 2017-03)")
    split_file.write_text(json.dumps({"test": [["2017-03-02T00", "2017-03-05T23"]]}))
    with pytest.raises(UserError, match=r"'test' range \[2017-03-02T00, 2017-03-05T23\] names 80 hour\(s\) without "
                                        r"data \(first 2017-03-02T16, last 2017-03-05T23;"):
        ERA5Dataset.load_split(split_file, exp_dir)
    # a named month needs some data, not every hour (February's gap is fine in the month form)
    assert ERA5Dataset.load_split({"train": {"2017": [2]}}, exp_dir)["train"] == [month_range(2017, 2)]
    with pytest.raises(UserError, match="'train' names 2017-04, which step 2 did not write"):
        ERA5Dataset.load_split({"train": {"2017": [4]}}, exp_dir)


# ---------------------------------------------------------------------------------------------------------------
# windows

def test_window_rows_by_hand():
    """Hours 0..9 and 12..15 of a day (a gap at 10-11); train 00-05, val 06-13 (across the gap), window 3 h."""
    day = hour("2019-03-01T00")
    hours = day + np.r_[np.arange(10), np.arange(12, 16)] * H
    train, val = [(day, day + 5 * H)], [(day + 6 * H, day + 13 * H)]
    assert window_rows(hours, train, 3).tolist() == [0, 1, 2, 3]           # starts 00..03, ends by 05
    assert window_rows(hours, val, 3).tolist() == [6, 7]                   # 06-08, 07-09; none over the gap
    assert window_rows(hours, [*train, *val], 3).tolist() == [0, 1, 2, 3, 6, 7]   # nor over a range boundary
    assert window_rows(hours, [(day, day + 15 * H)], 3).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
    assert window_rows(hours, val, 20).tolist() == [] and window_rows(hours[:0], val, 3).tolist() == []


def test_windows_never_straddle_two_modes(months):
    """Adjacent ranges of train and val inside January, and val ranges on both sides of February's gap: each window
    lies in one range, its hours consecutive; the counts are those of the ranges."""
    exp_dir, raw = months
    split = {"train": [["2017-01-01T00", "2017-01-10T11"], ["2017-01-20T00", "2017-01-31T23"]],
             "val": [["2017-01-10T12", "2017-01-19T23"], ["2017-02-01T00", "2017-02-02T05"],
                     ["2017-02-02T09", "2017-02-05T23"]],
             "test": [["2017-03-01T00", "2017-03-02T15"]]}
    length = 24
    expected = {"train": (228 - 23) + (288 - 23), "val": (228 - 23) + (30 - 23) + (120 - 33 - 23),
                "test": 40 - 23}
    ranges = load_datasplit(split)
    for mode in ("train", "val", "test"):
        dataset = ERA5Dataset(exp_dir, split, mode, hparams={"sequence_length": length}, seed=3)
        starts = np.concatenate([batch["t_start"].copy() for batch in dataset.batches(64)])
        assert dataset.num_windows == len(starts) == expected[mode]
        # the runscript generator counts the same windows (its block-length check of postprocessing)
        assert evaluated_windows(exp_dir / "tfrecords", ranges[mode], length) == expected[mode]
        first = yyyymmddhh_to_datetime(starts)
        last = first + (length - 1) * H
        inside = [(first >= a) & (last <= b) for a, b in ranges[mode]]
        assert (np.sum(inside, axis=0) == 1).all()                      # wholly inside exactly one range
        other = [r for m in ranges if m != mode for r in ranges[m]]
        assert not any(((first <= b) & (last >= a)).any() for a, b in other)   # no hour of another mode
        for t_start in starts[::17]:                                     # consecutive hours of the data
            window = raw_hours(raw, str(yyyymmddhh_to_datetime(t_start)),
                               str(yyyymmddhh_to_datetime(t_start) + (length - 1) * H))
            assert len(window) == length


def test_month_form_keeps_its_windows_and_statistics(months):
    """A month is the range of its hours: the month form and the equal ranges give the same windows, the same
    normalisation (step 1's month statistics, merged) and the same batches."""
    exp_dir, _ = months
    by_months = {"train": {"2017": [1, 3]}, "val": {"2017": [2]}}
    by_ranges = {"train": [["2017-01-01T00", "2017-01-31T23"], ["2017-03-01T00", "2017-03-02T15"]],
                 "val": [["2017-02-01T00", "2017-02-02T05"], ["2017-02-02T09", "2017-02-28T23"]]}
    for mode in ("train", "val"):
        month_form = ERA5Dataset(exp_dir, by_months, mode, hparams=DAY, seed=5)
        range_form = ERA5Dataset(exp_dir, by_ranges, mode, hparams=DAY, seed=5)
        assert month_form.num_windows == range_form.num_windows == {"train": 721 + 17, "val": 7 + 616}[mode]
        assert month_form.normalization == range_form.normalization
        assert month_form.months == range_form.months
        for a, b in zip(month_form.window_starts, range_form.window_starts):
            np.testing.assert_array_equal(a, b)
        for one, other in zip(month_form.batches(16), range_form.batches(16)):
            np.testing.assert_array_equal(one["t_start"], other["t_start"])
            np.testing.assert_array_equal(one["images"], other["images"])
    statistics = json.loads((exp_dir / "tfrecords" / "dataset_info.json").read_text())["months"]
    merged = ERA5Dataset(exp_dir, by_months, "train", hparams=DAY).normalization.stats
    assert merged["2t"]["min"] == min(statistics[key]["stats"]["2t"]["min"] for key in ("2017-01", "2017-03"))


@pytest.mark.parametrize("method", ["minmax", "znorm"])
def test_statistics_come_from_exactly_the_training_hours(months, method):
    """Training ranges that cut January and February: the normalisation's min, max, mean and standard deviation
    equal numpy's over exactly the training hours of the step-1 values (none of val, test or the rest of the
    months), for every channel."""
    exp_dir, raw = months
    split = {"train": [["2017-01-05T07", "2017-01-12T19"], ["2017-01-30T00", "2017-02-02T05"]],
             "val": [["2017-01-20T00", "2017-01-25T23"]], "test": [["2017-03-01T00", "2017-03-02T15"]]}
    dataset = ERA5Dataset(exp_dir, split, "val", hparams={**DAY, "normalization": method})
    values = np.concatenate([raw_hours(raw, "2017-01-05T07", "2017-01-12T19"),
                             raw_hours(raw, "2017-01-30T00", "2017-02-02T05")])
    assert len(values) == 181 + 78
    for channel, variable in enumerate(dataset.variables):
        stats, field = dataset.normalization.stats[variable], values[..., channel]
        assert stats["min"] == field.min() and stats["max"] == field.max()
        assert stats["avg"] == pytest.approx(field.mean(), rel=1e-12)
        assert stats["sigma"] == pytest.approx(field.std(), rel=1e-9)
    whole_months = ERA5Dataset(exp_dir, {"train": {"2017": [1, 2]}}, "train", hparams=DAY).normalization
    assert whole_months.stats["2t"]["avg"] != dataset.normalization.stats["2t"]["avg"]


def test_proposed_date_split_is_accepted_by_the_reader(months):
    exp_dir, _ = months
    hours = hours_of_months({(2017, 1)})
    proposal = propose_date_split(hours)
    assert proposal == {"train": [["2017-01-01T00", "2017-01-21T23"]], "val": [["2017-01-22T00", "2017-01-26T23"]],
                        "test": [["2017-01-27T00", "2017-01-31T23"]]}
    assert ERA5Dataset(exp_dir, proposal, "test", hparams=DAY).num_windows == 5 * 24 - 23
    with pytest.raises(UserError, match="the data holds 2 day"):
        propose_date_split(hours[:48])


# ---------------------------------------------------------------------------------------------------------------
# the real March 2019 file (slow)

#: a tiny convLSTM: one epoch of 7 steps (481 training windows in batches of 64)
TINY_CONVLSTM = {"batch_size": 64, "lr": 0.002, "max_epochs": 1, "num_features": 4, "filter_size": 3,
                 "normalization": "znorm", "shuffle_on_val": False}


def run_step(module: str, *args) -> None:
    result = run_module(f"video_prediction_tools.main_scripts.{module}", *args)
    assert result.returncode == 0, f"{module}: {result.stdout[-3000:]}{result.stderr[-3000:]}"


@pytest.mark.slow
def test_the_whole_chain_on_the_real_file_with_a_split_by_dates(tmp_path):
    """One month of real ERA5 split by dates (train 1-21, val 22-25, test 26-31 March): extraction of the one
    GRIB file, step 1 (32 x 48 at 50N 10W), step 2, a tiny convLSTM and postprocessing exit 0; postprocessing
    forecasts exactly the test windows (inside 26-31 March); persistence of the first forecasts takes the analyses
    of 25 March (validation hours: input data, not forecasts)."""
    source = tmp_path / "download"
    source.mkdir()
    (source / "march.grib").symlink_to(shared_data(REAL_ERA5_T2M))
    split_file, hparams_file = tmp_path / "split.json", tmp_path / "hparams.json"
    split_file.write_text(json.dumps(MARCH_2019))
    hparams_file.write_text(json.dumps(TINY_CONVLSTM))
    run_step("main_data_extraction", "--source_dir", source, "--target_dir", tmp_path / "ExtractedData",
             "--varslist_path", REPO_ROOT / "templates" / "data_extraction" / "era5_varmapping_2t_template.json")
    run_step("main_preprocess_data_step1", "--source_dir", tmp_path / "ExtractedData", "--destination_dir",
             tmp_path / "PreprocessedData", "--years", "2019", "--months", "3", "--vars", "2t",
             "--sw_corner", "50", "-10", "--nyx", "32", "48")
    experiment = next((tmp_path / "PreprocessedData").iterdir())
    run_step("main_preprocess_data_step2", "--source_dir", experiment, "--sequence_length", "24")
    run_dir, results = tmp_path / "Models" / "run", tmp_path / "Results" / "run"
    run_step("main_train_models", "--input_dir", experiment, "--output_dir", run_dir, "--datasplit_dict", split_file,
             "--dataset", "era5", "--model", "convLSTM", "--model_hparams_dict", hparams_file, "--seed", "1234")
    assert json.loads((run_dir / "data_split.json").read_text()) == MARCH_2019
    run_step("main_visualize_postprocess", "--checkpoint", run_dir, "--results_dir", results, "--mode", "test",
             "--batch_size", "32", "--block_length", "12", "--nboots", "100")
    windows = 6 * 24 - 23
    init_times = np.datetime64("2019-03-26T11") + np.arange(windows) * H
    assert sorted(path.name[9:19] for path in results.glob("vfp_date_*_sample_ind_*.nc")) == [
        f"{time.astype(object):%Y%m%d%H}" for time in init_times]
    with xr.open_dataset(results / "evaluation_metrics.nc") as evaluation:
        np.testing.assert_array_equal(evaluation["init_time"].values.astype("datetime64[h]"), init_times)
        persistence = evaluation["2t_persistence_mse"].values                # [init_time, fcst_hour]
        assert np.isfinite(persistence).all() and np.isfinite(evaluation["2t_convLSTM_mse"].values).all()
    # persistence at every lead by hand from the GRIB values read independently (cfgrib): the first forecasts'
    # previous day is validation data
    coordinates = json.loads((experiment / "metadata.json").read_text())["coordinates"]
    with xr.open_dataset(shared_data(REAL_ERA5_T2M), engine="cfgrib", backend_kwargs={"indexpath": ""}) as grib:
        t2m = grib["t2m"].assign_coords(longitude=grib["longitude"] % 360)
        t2m = t2m.sel(latitude=coordinates["lat"], longitude=coordinates["lon"]).load()
    valid = (init_times[:, None] + np.arange(1, 13) * H).ravel()             # [init_time x fcst_hour]
    difference = t2m.sel(time=valid).values.astype(np.float64) - t2m.sel(time=valid - 24 * H).values
    expected = np.mean(difference ** 2, axis=(1, 2)).reshape(windows, 12)
    np.testing.assert_allclose(persistence, expected, rtol=1e-5)
