"""The ERA5 reader: windows equal the raw slices after normalisation, counts, gaps, order, normalisation, split;
the dataset registry and the Reader protocol that the trainer opens every dataset through."""
import json
import subprocess

import numpy as np
import pytest

from fixtures.common import PYTHON, REPO_ROOT
from fixtures.datasets import reader_inputs, tiny_moving_mnist  # noqa: F401  (fixtures)
from fixtures.preprocessed import make_step1_experiment
from video_prediction_tools.data_preprocess.records import yyyymmddhh_to_datetime
from video_prediction_tools.data_preprocess.step2 import run_step2
from video_prediction_tools.datasets.datasplit import load_datasplit, month_range
from video_prediction_tools.datasets.era5 import ERA5Dataset, load_hours
from video_prediction_tools.datasets.normalization import Normalization
from video_prediction_tools.datasets.registry import Reader, get_dataset_class
from video_prediction_tools.runscript_generator.checks import evaluated_windows
from video_prediction_tools.utils.errors import UserError

#: the window length of most tests: 24 hours, as in the GMD experiment
DAY = {"sequence_length": 24}


def collect(dataset, batch_size=5, epoch=0):
    """All windows of one pass: (images [N, T, H, W, C], t_start [N], batch sizes)."""
    images, starts, sizes = [], [], []
    for batch in dataset.batches(batch_size, epoch=epoch):
        images.append(batch["images"])
        starts.append(batch["t_start"])
        sizes.append(len(starts[-1]))
    return np.concatenate(images), np.concatenate(starts), sizes


def raw_window(raw, t_start, length):
    """The raw slice of ``length`` hours starting at ``t_start`` (YYYYMMDDHH), from the step-1 values."""
    start = yyyymmddhh_to_datetime(t_start)
    data, times = raw[(int(t_start // 1_000_000), int(t_start // 10_000 % 100))]
    index = int(np.flatnonzero(times == start)[0])
    window_times = times[index:index + length]
    assert len(window_times) == length and (np.diff(window_times.astype(np.int64)) == 1).all()
    return data[index:index + length]


def named_months(split, mode):
    """The months ``(year, month)`` that a month-form split names for ``mode``, chronological."""
    return sorted((int(year), month) for year, months in split.get(mode, {}).items() for month in months)


def hand_minmax(raw, months, variables):
    """min and max per channel over the given months (numpy on the raw values)."""
    stacked = np.concatenate([raw[m][0] for m in months]).astype(np.float64)
    return stacked.min(axis=(0, 1, 2)), stacked.max(axis=(0, 1, 2)), stacked.mean(axis=(0, 1, 2)), \
        stacked.std(axis=(0, 1, 2))


# ---------------------------------------------------------------------------------------------------------------
# on the real pipeline output (step 1 + step 2 fixture)
# ---------------------------------------------------------------------------------------------------------------

def test_every_window_is_the_normalised_raw_slice(tiny_tfrecords):
    tiny = tiny_tfrecords
    train = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams={"sequence_length": 24})
    low, high, _, _ = hand_minmax(tiny.raw, [(2017, 1), (2017, 2)], tiny.variables)
    # normalisation from the training months only (2018 not included), checked by hand
    all_months = json.loads((tiny.exp_dir / "statistics.json").read_text())
    for channel, variable in enumerate(tiny.variables):
        assert train.normalization.stats[variable]["min"] == pytest.approx(low[channel], abs=0)
        assert train.normalization.stats[variable]["max"] == pytest.approx(high[channel], abs=0)
    assert any(all_months[v]["avg"] != train.normalization.stats[v]["avg"] for v in tiny.variables)
    for mode in ("train", "val", "test"):
        dataset = ERA5Dataset(tiny.exp_dir, tiny.datasplit, mode, hparams={"sequence_length": 24})
        assert dataset.normalization == train.normalization
        images, starts, sizes = collect(dataset)
        months = named_months(tiny.datasplit, mode)
        assert dataset.num_windows == len(starts) == len(months) * (72 - 24 + 1)   # N - L + 1 per month
        assert len(set(starts.tolist())) == len(starts)
        assert images.dtype == np.float32 and images.shape[1:] == (24, 8, 12, 3)
        assert sizes[:-1] == [5] * (len(sizes) - 1)
        for window, t_start in zip(images, starts):
            expected = (raw_window(tiny.raw, t_start, 24).astype(np.float64) - low) / (high - low)
            np.testing.assert_allclose(window, expected, rtol=0, atol=2e-6)
        if mode != "train":
            assert (np.diff(starts) > 0).all()           # chronological
            assert starts[0] == int(f"{months[0][0]}{months[0][1]:02d}0100")


def test_attributes_and_input_dir_forms(tiny_tfrecords):
    tiny = tiny_tfrecords
    by_exp = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "val", hparams=DAY)
    by_tfrecords = ERA5Dataset(tiny.tfrecord_dir, tiny.datasplit, "val", hparams=DAY)
    metadata = json.loads((tiny.exp_dir / "metadata.json").read_text())
    for dataset in (by_exp, by_tfrecords):
        assert dataset.variables == tiny.variables
        assert dataset.frame_shape == (8, 12, 3)
        assert dataset.sequence_length == 24
        np.testing.assert_array_equal(dataset.lat, metadata["coordinates"]["lat"])
        np.testing.assert_array_equal(dataset.lon, metadata["coordinates"]["lon"])
    batch = next(iter(by_exp.batches(3, drop_remainder=True)))
    assert batch["t_start"].dtype.name == "int64" and batch["t_start"].shape == (3,)
    assert sum(1 for _ in by_exp.batches(10, drop_remainder=True)) == 49 // 10
    assert sum(1 for _ in by_exp.batches(10, drop_remainder=False)) == -(-49 // 10)


def test_train_order_reproducible_from_seed_and_epoch(tiny_tfrecords):
    tiny = tiny_tfrecords

    def order(seed, epoch):
        dataset = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams={"sequence_length": 12}, seed=seed)
        return collect(dataset, batch_size=7, epoch=epoch)[1].tolist()

    first = order(1, 0)
    assert first == order(1, 0)
    assert first != order(2, 0)
    assert first != order(1, 1)
    assert sorted(first) == sorted(order(2, 0))             # a permutation of all windows, each once
    assert len(first) == 2 * (72 - 12 + 1)
    assert first != sorted(first)


def test_val_shuffled_only_with_shuffle_on_val(tiny_tfrecords):
    tiny = tiny_tfrecords
    plain = collect(ERA5Dataset(tiny.exp_dir, tiny.datasplit, "val", hparams=DAY, seed=3))[1].tolist()
    assert plain == sorted(plain)
    shuffled = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "val", hparams={**DAY, "shuffle_on_val": True}, seed=3)
    once = collect(shuffled)[1].tolist()
    assert once != plain and sorted(once) == plain and once == collect(shuffled)[1].tolist()


def test_znorm_uses_sigma_and_given_normalisation_wins(tiny_tfrecords):
    tiny = tiny_tfrecords
    _, _, mean, sigma = hand_minmax(tiny.raw, [(2017, 1), (2017, 2)], tiny.variables)
    dataset = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "test", hparams={**DAY, "normalization": "znorm"})
    images, starts, _ = collect(dataset, batch_size=16)
    expected = (raw_window(tiny.raw, starts[3], 24).astype(np.float64) - mean) / sigma   # sigma, not sigma**2
    np.testing.assert_allclose(images[3], expected, rtol=0, atol=2e-5)
    # postprocessing passes the normalisation saved with the model: it is used as given
    saved = Normalization.from_dict(json.loads(json.dumps(dataset.normalization.to_dict())))
    other_split = {"train": {"2018": [1]}, "test": {"2018": [2]}}
    again = ERA5Dataset(tiny.exp_dir, other_split, "test", hparams=DAY, normalization=saved)
    np.testing.assert_array_equal(collect(again, batch_size=16)[0], images)


def test_load_hours_reads_raw_values_across_months(tiny_tfrecords):
    tiny = tiny_tfrecords
    hours = load_hours(tiny.exp_dir, np.datetime64("2017-02-01T03"), np.datetime64("2017-02-01T10"))
    assert hours.dims == ("time", "lat", "lon", "channel") and hours.shape == (8, 8, 12, 3)
    np.testing.assert_array_equal(hours.values, tiny.raw[(2017, 2)][0][3:11])
    assert list(hours["channel"].values) == tiny.variables
    assert hours["time"].values[0] == np.datetime64("2017-02-01T03")
    with pytest.raises(UserError, match="2017-01-04T00"):           # the tiny months hold only 3 days
        load_hours(tiny.exp_dir, np.datetime64("2017-01-03T20"), np.datetime64("2017-02-01T02"))


def test_load_hours_spans_a_year_boundary(tmp_path):
    exp_dir = tmp_path / "EXP"
    raw = make_step1_experiment(exp_dir, {(2016, 12): 744, (2017, 1): 30})
    run_step2(exp_dir)
    hours = load_hours(exp_dir, np.datetime64("2016-12-31T20"), np.datetime64("2017-01-01T05"))
    np.testing.assert_array_equal(hours.values, np.concatenate([raw[(2016, 12)][0][-4:], raw[(2017, 1)][0][:6]]))
    assert hours["time"].values[-1] == np.datetime64("2017-01-01T05")


# ---------------------------------------------------------------------------------------------------------------
# gaps, splits of neighbouring months, errors
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gappy(tmp_path_factory):
    """Three contiguous months (Jan complete, Feb with a gap at hours 30-32, Mar 40 h) after step 2."""
    exp_dir = tmp_path_factory.mktemp("gappy") / "EXP"
    raw = make_step1_experiment(exp_dir, {(2017, 1): 744, (2017, 2): 672, (2017, 3): 40},
                                gaps={(2017, 2): [30, 31, 32]})
    run_step2(exp_dir, sequence_length=24)
    return exp_dir, raw


def test_windows_never_cross_a_gap_or_another_split(gappy):
    exp_dir, raw = gappy
    split = {"train": {"2017": [1, 3]}, "val": {"2017": [2]}}
    length = 24
    expected_counts = {"train": (744 - length + 1) + (40 - length + 1),
                       "val": (30 - length + 1) + (672 - 33 - length + 1)}
    for mode in ("train", "val"):
        dataset = ERA5Dataset(exp_dir, split, mode, hparams={"sequence_length": length})
        images, starts, _ = collect(dataset, batch_size=64)
        assert dataset.num_windows == len(starts) == expected_counts[mode]
        # the runscript generator counts the same windows
        assert evaluated_windows(exp_dir / "tfrecords", dataset.ranges, length) == dataset.num_windows
        for window, t_start in zip(images[::37], starts[::37]):
            raw_window(raw, t_start, length)              # asserts the window's hours are consecutive
        first = yyyymmddhh_to_datetime(starts)
        last = first + np.timedelta64(length - 1, "h")
        assert (first.astype("datetime64[M]") == last.astype("datetime64[M]")).all()
        months = {(int(s // 1_000_000), int(s // 10_000 % 100)) for s in starts}
        assert months <= set(named_months(split, mode))


def test_datasplit_errors(gappy):
    exp_dir, _ = gappy
    with pytest.raises(UserError, match="2019-01"):
        ERA5Dataset(exp_dir, {"train": {"2017": [1]}, "test": {"2019": [1]}}, "train", hparams=DAY)
    with pytest.raises(UserError, match="both"):
        load_datasplit({"train": {"2017": [1]}, "val": {"2017": [1]}})
    with pytest.raises(UserError, match="four-digit"):
        load_datasplit({"train": {2017: [1]}})
    with pytest.raises(UserError, match="1..12"):
        load_datasplit({"train": {"2017": [13]}})
    with pytest.raises(UserError, match="unknown mode"):
        load_datasplit({"training": {"2017": [1]}})
    with pytest.raises(UserError, match="no months or hours for mode 'test'"):
        ERA5Dataset(exp_dir, {"train": {"2017": [1]}}, "test", hparams=DAY)
    with pytest.raises(UserError, match="no 'train' months or hours"):
        ERA5Dataset(exp_dir, {"test": {"2017": [1]}}, "test", hparams=DAY)
    with pytest.raises(UserError, match="mode"):
        ERA5Dataset(exp_dir, {"train": {"2017": [1]}}, "validation", hparams=DAY)
    with pytest.raises(UserError, match="no window of 48"):
        ERA5Dataset(exp_dir, {"train": {"2017": [1]}, "test": {"2017": [3]}}, "test", hparams={"sequence_length": 48})
    with pytest.raises(UserError, match="step 2"):
        ERA5Dataset(exp_dir / "2017", {"train": {"2017": [1]}}, "train", hparams=DAY)


def test_window_length_comes_from_the_hparams_only(gappy):
    """The training hyper-parameters own the window length: no fallback, a missing or bad value is named."""
    exp_dir, _ = gappy
    split = {"train": {"2017": [3]}}
    assert ERA5Dataset(exp_dir, split, "train", hparams={"sequence_length": 7}).num_windows == 40 - 7 + 1
    with pytest.raises(UserError, match="hyper-parameter 'sequence_length' missing"):
        ERA5Dataset(exp_dir, split, "train")
    with pytest.raises(UserError, match="hyper-parameter 'sequence_length' missing"):
        ERA5Dataset(exp_dir, split, "train", hparams={"batch_size": 4})
    for bad in (0, 2.5, "24", True):
        with pytest.raises(UserError, match=f"sequence_length {bad!r}: expected a positive integer"):
            ERA5Dataset(exp_dir, split, "train", hparams={"sequence_length": bad})


def test_datasplit_templates_are_valid():
    era5_class, mnist_class = get_dataset_class("era5"), get_dataset_class("moving_mnist")
    assert era5_class.split_template_path().is_file() and mnist_class.split_template_path().is_file()
    era5 = era5_class.load_split(era5_class.split_template_path())
    assert era5["val"] == [month_range(2016, m) for m in range(1, 13)]
    assert era5["test"] == [month_range(2019, m) for m in range(1, 13)]
    assert {first.astype(object).year for first, _ in era5["train"]} == set(range(2007, 2016)) | {2017, 2018}
    mnist = mnist_class.load_split(mnist_class.split_template_path())
    assert mnist["train"] == [(0, 7999)] and mnist["test"] == [(9000, 9999)]


def test_normalization_round_trip_numpy_and_tensorflow():
    import tensorflow as tf

    stats = {"2t": {"count": 4, "min": 250.0, "max": 300.0, "avg": 275.0, "sigma": 10.0},
             "tcc": {"count": 4, "min": 0.0, "max": 1.0, "avg": 0.5, "sigma": 0.25}}
    norm = Normalization("minmax", stats, ["2t", "tcc", "2t"])
    x = np.array([[[250.0, 0.5, 300.0], [275.0, 1.0, 260.0]]], dtype=np.float32)
    np.testing.assert_allclose(norm.normalize(x), [[[0.0, 0.5, 1.0], [0.5, 1.0, 0.2]]], atol=1e-7)
    assert norm.normalize(x).dtype == np.float32
    np.testing.assert_allclose(norm.denormalize(norm.normalize(x)), x, rtol=1e-6)
    np.testing.assert_allclose(norm.normalize(tf.constant(x)).numpy(), norm.normalize(x))
    z = Normalization("znorm", stats, ["2t", "tcc", "2t"])
    np.testing.assert_allclose(z.normalize(x)[0, 0], [-2.5, 0.0, 2.5], atol=1e-6)
    assert Normalization.from_dict(json.loads(json.dumps(z.to_dict()))) == z
    with pytest.raises(UserError, match="msl"):
        Normalization("minmax", stats, ["msl"])
    with pytest.raises(UserError, match="minmax"):
        Normalization("robust", stats, ["2t"])


def test_month_file_layout_rejects_files_not_laid_out_by_step2(gappy, tmp_path):
    import tensorflow as tf

    from video_prediction_tools.data_preprocess.records import month_file_layout
    from video_prediction_tools.datasets.era5 import read_month

    exp_dir, raw = gappy
    source = exp_dir / "tfrecords" / "sequence_Y_2017_M_03.tfrecords"
    layout = month_file_layout(source, (8, 12, 3))
    assert layout.hours == 40 and layout.time_bytes == 5 and source.stat().st_size == 40 * layout.record_bytes
    images, times = read_month(source, layout, (8, 12, 3))
    np.testing.assert_array_equal(images, raw[(2017, 3)][0])
    np.testing.assert_array_equal(yyyymmddhh_to_datetime(times), raw[(2017, 3)][1])

    truncated = tmp_path / "truncated.tfrecords"
    truncated.write_bytes(source.read_bytes()[:-3])
    with pytest.raises(UserError, match="whole number"):
        month_file_layout(truncated, (8, 12, 3))
    other = tmp_path / "other.tfrecords"
    with tf.io.TFRecordWriter(str(other)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))})).SerializeToString())
    with pytest.raises(UserError, match="not a step-2 file"):
        month_file_layout(other, (8, 12, 3))
    # a later record whose field headers differ from the first one's (same size, valid checksums: written by
    # TensorFlow's writer with the key "images" renamed): fails when read
    mixed = tmp_path / "mixed.tfrecords"
    with tf.io.TFRecordWriter(str(mixed)) as writer:
        for index, record in enumerate(tf.data.TFRecordDataset(str(source)).as_numpy_iterator()):
            assert record.count(b"images") == 1
            writer.write(record.replace(b"images", b"imagez") if index == 3 else record)
    assert mixed.stat().st_size == source.stat().st_size
    with pytest.raises(UserError, match="record 3 is laid out unlike"):
        read_month(mixed, layout, (8, 12, 3))


def test_damaged_month_files_are_refused_naming_the_record(gappy):
    """Eight bytes overwritten inside a frame, a flipped bit in a length or in a checksum: the reader refuses the
    file naming it and the record, when the dataset reads it and when load_hours does."""
    from video_prediction_tools.data_preprocess.records import month_file_layout

    exp_dir, _ = gappy
    source = exp_dir / "tfrecords" / "sequence_Y_2017_M_03.tfrecords"
    pristine = source.read_bytes()
    layout = month_file_layout(source, (8, 12, 3))
    # read (and verified) intact first: a file damaged later in the same process is checked again
    collect(ERA5Dataset(exp_dir, {"train": {"2017": [3]}}, "train", hparams={"sequence_length": 8}), batch_size=8)
    record = layout.record_bytes
    damages = {"data": (5 * record + layout.image_offset + 100, 8, 5),
               "length": (7 * record + 2, 1, 7),                              # the length of record 7
               "CRC32C of its data": (39 * record + record - 2, 1, 39),       # the data checksum of the last record
               "first record": (layout.image_offset + 4, 8, 0)}               # found when the layout is read
    try:
        for what, (offset, count, index) in damages.items():
            damaged = bytearray(pristine)
            damaged[offset:offset + count] = bytes(b ^ 0x5A for b in damaged[offset:offset + count])
            source.write_bytes(bytes(damaged))
            with pytest.raises(UserError, match=f"{source.name}: record {index} is damaged"):
                collect(ERA5Dataset(exp_dir, {"train": {"2017": [3]}}, "train", hparams={"sequence_length": 8}),
                        batch_size=8)
            with pytest.raises(UserError, match=f"record {index} is damaged"):
                load_hours(exp_dir, np.datetime64("2017-03-01T00"), np.datetime64("2017-03-01T03"))
    finally:
        source.write_bytes(pristine)


# ---------------------------------------------------------------------------------------------------------------
# the numpy batches: reused buffers, resuming, the tf.data wrapper, interleaved months
# ---------------------------------------------------------------------------------------------------------------

def test_batch_buffers_are_reused_only_when_released(tiny_tfrecords):
    tiny = tiny_tfrecords
    dataset = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "test", hparams={"sequence_length": 24})
    expected_images, expected_starts, _ = collect(dataset, batch_size=4)
    released, held, ids = [], [], []
    for index, batch in enumerate(dataset.batches(4)):
        # each batch is right when it is yielded, whether earlier ones were kept or dropped
        np.testing.assert_array_equal(batch["images"], expected_images[4 * index:4 * index + 4])
        ids.append(id(batch["images"]))
        if index % 3 == 0:
            held.append((index, batch["images"][:, :2]))      # a view keeps its buffer from being reused
        released.append(batch["t_start"])
        del batch
    assert len(set(ids)) < len(ids)                           # buffers were reused ...
    for index, view in held:                                  # ... but never one still referenced
        np.testing.assert_array_equal(view, expected_images[4 * index:4 * index + 4, :2])
    np.testing.assert_array_equal(np.concatenate(released), expected_starts)


def test_skip_resumes_within_the_pass_and_make_dataset_matches(tiny_tfrecords):
    tiny = tiny_tfrecords
    dataset = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams={"sequence_length": 24}, seed=5)
    whole = [(b["images"], b["t_start"]) for b in dataset.batches(6, epoch=2, drop_remainder=True)]
    resumed = [(b["images"], b["t_start"]) for b in dataset.batches(6, epoch=2, drop_remainder=True, skip=5)]
    assert len(whole) == 2 * 49 // 6 and len(resumed) == len(whole) - 5
    for (images, starts), (again, again_starts) in zip(whole[5:], resumed):
        np.testing.assert_array_equal(images, again)
        np.testing.assert_array_equal(starts, again_starts)
    as_tf = list(dataset.make_dataset(6, epoch=2, drop_remainder=True))
    assert len(as_tf) == len(whole)
    for (images, starts), batch in zip(whole, as_tf):
        np.testing.assert_array_equal(batch["images"].numpy(), images)
        np.testing.assert_array_equal(batch["t_start"].numpy(), starts)


def test_train_batches_interleave_the_months_in_memory(tiny_tfrecords):
    tiny = tiny_tfrecords
    dataset = ERA5Dataset(tiny.exp_dir, tiny.datasplit, "train", hparams={"sequence_length": 24}, seed=9)
    months, rows = dataset.pass_order(8)
    assert sorted(zip(months.tolist(), rows.tolist())) == [(m, r) for m in (0, 1) for r in range(49)]
    # two training months in memory, batch 8: chunks of 4 windows taken from each month in turn
    chunks = months[:48].reshape(-1, 4)
    assert (chunks == chunks[:, :1]).all() and (chunks[1:, 0] != chunks[:-1, 0]).all()
    starts = collect(dataset, batch_size=8)[1]
    month_of_window = (starts // 10_000 % 100)[:48].reshape(6, 8)
    assert all(sorted(set(m)) == [1, 2] for m in month_of_window)
    # batch 4: each batch from one month, alternating
    months4 = dataset.pass_order(4)[0][:48].reshape(-1, 4)
    assert (months4 == months4[:, :1]).all() and (months4[1:, 0] != months4[:-1, 0]).all()


def test_read_month_normalises_like_normalization_and_checks_the_blocks(gappy):
    from video_prediction_tools.data_preprocess.records import month_file_layout
    from video_prediction_tools.datasets.era5 import block_times, read_month

    exp_dir, raw = gappy
    source = exp_dir / "tfrecords" / "sequence_Y_2017_M_02.tfrecords"
    dataset = ERA5Dataset(exp_dir, {"train": {"2017": [1, 2]}}, "train", hparams=DAY)
    layout = month_file_layout(source, (8, 12, 3))
    images, _ = read_month(source, layout, (8, 12, 3), dataset.normalization, dataset.valid_times[1])
    np.testing.assert_array_equal(images, dataset.normalization.normalize(raw[(2017, 2)][0]))  # bit for bit
    assert dataset.blocks[1] == [[2017020100, 30], [2017020209, 672 - 33]]
    with pytest.raises(UserError, match="differ from the blocks"):
        read_month(source, layout, (8, 12, 3), valid_times=block_times([[2017020100, 31], [2017020210, 672 - 34]]))


def test_buffer_pool_hands_out_only_unreferenced_arrays():
    from video_prediction_tools.datasets.era5 import _BufferPool

    pool = _BufferPool(keep=2)
    first = pool.get((3, 2))
    second = pool.get((3, 2))
    assert second is not first                        # the first is still held
    first_id = id(first)
    del first
    again = pool.get((3, 2))
    assert id(again) == first_id                      # released, so reused
    view = again[1:]
    del again
    assert pool.get((3, 2)) is not view.base          # a view keeps its buffer
    assert pool.get((4, 2)).shape == (4, 2)           # another shape: a new array


# ---------------------------------------------------------------------------------------------------------------
# the dataset registry and the Reader protocol
# ---------------------------------------------------------------------------------------------------------------

def test_the_source_scan_names_exactly_the_registered_datasets():
    """known_datasets() reads the sources; importing every module of the package registers the same classes, each
    with a documented evaluation; listing imports no dataset module; an unknown name is one clear error."""
    import importlib
    import pkgutil

    from video_prediction_tools import datasets
    from video_prediction_tools.datasets import registry

    for module in pkgutil.iter_modules(datasets.__path__):
        importlib.import_module(f"{datasets.__name__}.{module.name}")
    registered = registry.registered_datasets()
    assert sorted(registered) == registry.known_datasets() == ["era5", "moving_mnist"]
    for name, reader_class in registered.items():
        assert registry.get_dataset_class(name) is reader_class and reader_class.name == name
        assert reader_class.evaluation in registry.EVALUATIONS
    assert (registered["era5"].evaluation, registered["moving_mnist"].evaluation) == ("gridded", "sequences")
    with pytest.raises(UserError, match="unknown dataset 'radar'; known datasets: era5, moving_mnist"):
        registry.get_dataset_class("radar")
    script = ("import sys\n"
              "from video_prediction_tools.datasets.registry import known_datasets\n"
              "print(known_datasets(), sorted(name for name in sys.modules if name.startswith('video_prediction_tools"
              ".datasets.')), 'tensorflow' in sys.modules)\n")
    listing = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.strip() == "['era5', 'moving_mnist'] ['video_prediction_tools.datasets.registry'] False"


def test_the_trainer_opens_every_registered_dataset_through_the_reader_protocol(reader_inputs, tmp_path):
    """For every registered dataset the trainer opens train and val readers of its registered class and
    fingerprints the files they name; the trainer's source uses nothing of a reader outside the Reader protocol."""
    import ast
    import inspect

    from video_prediction_tools.datasets.registry import known_datasets
    from video_prediction_tools.training import trainer

    assert sorted(reader_inputs) == known_datasets()     # a new dataset brings its entry (fixtures/datasets.py)
    for name, inputs in reader_inputs.items():
        split_file, hparams_file = tmp_path / f"{name}_split.json", tmp_path / f"{name}_hparams.json"
        split_file.write_text(json.dumps(inputs.datasplit))
        hparams_file.write_text(json.dumps(inputs.hparams))
        run = trainer.prepare_run(trainer.TrainingOptions(
            input_dir=str(inputs.input_dir), output_dir=str(tmp_path / name), datasplit_dict=str(split_file),
            dataset=name, model="convLSTM", model_hparams_dict=str(hparams_file)))
        splits = trainer.open_splits(run)
        for reader, mode in ((splits.train, "train"), (splits.val, "val")):
            assert type(reader) is get_dataset_class(name) and isinstance(reader, Reader) and reader.mode == mode
            assert reader.num_windows > 0 and all(path.is_file() for path in reader.input_files())
        trainer.record_run(run, splits)
        recorded = json.loads((tmp_path / name / "run_identity.json").read_text())["input_files"]
        assert sorted(recorded) == sorted({path.name for reader in (splits.train, splits.val)
                                           for path in reader.input_files()})
    readers = {"splits.train", "splits.val", "self.train_data", "self.val_data", "train_data", "val_data", "reader",
               "reader_class"}
    used = {node.attr for node in ast.walk(ast.parse(inspect.getsource(trainer)))
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) in readers}
    protocol = {name for name in dir(Reader) if not name.startswith("__")} | set(Reader.__annotations__)
    assert {"batches", "input_files", "num_windows", "normalization"} <= used <= protocol, used - protocol
