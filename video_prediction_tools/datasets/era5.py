"""ERA5 reader: windows of ``sequence_length`` consecutive hours cut at read time from the step-2 TFRecords.

Windows (stride 1 h) never cross a gap in time and never leave their month: a month (or a gap-free block of it)
of N hours gives N − L + 1 windows, even when the next month belongs to the same split (months are not joined,
so a month's window count does not depend on its neighbours and the order of months can be shuffled freely).

Order of one pass (``make_dataset(batch_size, epoch)``):

* val/test: chronological (month by month, windows by start time); val is shuffled like train if the hparam
  ``shuffle_on_val`` is true;
* train: months in a random order, :data:`MONTHS_IN_MEMORY` months read at a time and their windows interleaved
  (a batch takes ``max(MIN_CHUNK, batch_size / MONTHS_IN_MEMORY)`` windows from each: batch 32 mixes 4 months,
  batch 4 comes from one month, the next batch from the next month), each month's windows in a random order; all
  of it derived from ``(seed, epoch)``, so the same seed and epoch give the same order.

Each month file is read once per pass into one tensor ``[hours, H, W, C]`` (the whole file in one read, viewed
as a byte matrix of equal-sized records: :func:`read_month_tensors`), normalised once, with
:data:`MONTHS_READ_AHEAD` months read in parallel and ahead; windows are gathered from it a chunk at a time
(``tf.gather`` with an index matrix) and the chunks interleaved and re-batched (``tf.data``, prefetch).

Normalisation: from the statistics of the TRAINING months of the data split only (merged exactly), method from
the hparam ``normalization`` (``minmax`` default, or ``znorm``), unless a :class:`Normalization` is passed
(postprocessing passes the one saved with the model).

Example::

    from video_prediction_tools.datasets.era5 import ERA5Dataset, load_hours
    ds = ERA5Dataset("PreprocessedData/<EXPNAME>", "data_split.json", "train",
                     hparams={"sequence_length": 24, "normalization": "minmax"}, seed=1234)
    for batch in ds.make_dataset(batch_size=4, epoch=0):
        batch["images"]    # float32 [4, 24, H, W, C], normalised
        batch["t_start"]   # int64 [4], YYYYMMDDHH of frame 0
    hours = load_hours("PreprocessedData/<EXPNAME>", np.datetime64("2017-01-31T12"), np.datetime64("2017-02-01T11"))
"""
from __future__ import annotations

import functools
import struct
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from ..data_preprocess.statistics import merge_stats
from ..data_preprocess.step2 import DATASET_INFO, RECORD_FORMAT, month_key, yyyymmddhh_to_datetime
from ..utils.errors import UserError
from ..utils.io import read_json
from .datasplit import MODES, load_datasplit, split_months
from .normalization import Normalization

#: months whose windows are interleaved in a training pass (memory: this many month tensors)
MONTHS_IN_MEMORY = 4
#: fewest consecutive windows of a batch taken from one month in a training pass
MIN_CHUNK = 4
#: month files read in parallel and ahead of the windows being cut (memory: this many more month tensors)
MONTHS_READ_AHEAD = 2

# TFRecord framing of one record: little-endian uint64 length, uint32 masked CRC of the length, the data, uint32
# masked CRC of the data
_RECORD_HEADER_BYTES = 12
_RECORD_FOOTER_BYTES = 4


@dataclass(frozen=True)
class RecordLayout:
    """Byte layout of a step-2 month file, whose records (one ``tf.train.Example`` per hour) all have the same size
    and field order (deterministic serialisation of the same features; the valid time's varint has 5 bytes for
    every year 0027-3435), so that the whole file is one ``[hours, record_bytes]`` byte matrix."""
    hours: int
    #: bytes of one record, framing included
    record_bytes: int
    #: first byte of the float32 frame ``[H, W, C]`` within a record (the frame has H*W*C*4 bytes)
    image_offset: int
    #: first byte of the valid time (protobuf varint, the record's last field) within a record, and its length
    time_offset: int
    time_bytes: int


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def month_file_layout(path: Path, frame_shape) -> RecordLayout:
    """Find the byte layout of a month file from its first record (parsed with protobuf); the reader checks that
    every other record has the same field headers (:func:`read_month_tensors`). UserError if the file is not
    laid out as step 2 writes it."""
    from google.protobuf.message import DecodeError
    import tensorflow as tf

    def unexpected(why):
        return UserError(f"{path}: {why}; not a step-2 file of format {RECORD_FORMAT} (rerun step 2 with --overwrite)")

    frame_bytes = int(np.prod(frame_shape)) * 4
    with open(path, "rb") as file:
        header = file.read(_RECORD_HEADER_BYTES)
        if len(header) < _RECORD_HEADER_BYTES:
            raise unexpected("no complete record")
        (length,) = struct.unpack("<Q", header[:8])
        payload = file.read(length)
    try:
        feature = tf.train.Example.FromString(payload).features.feature
        image = feature["images"].bytes_list.value[0]
        valid_time = feature["valid_time"].int64_list.value[0]
    except (DecodeError, IndexError):
        raise unexpected("first record is not an hour example (images bytes + valid_time int64)") from None
    if len(image) != frame_bytes:
        raise unexpected(f"first frame has {len(image)} bytes, expected {frame_bytes} for a frame {tuple(frame_shape)}")
    time_varint = _varint(valid_time)
    image_offset = payload.find(image)
    time_offset = length - len(time_varint)
    record_bytes = _RECORD_HEADER_BYTES + length + _RECORD_FOOTER_BYTES
    if not (0 <= image_offset and image_offset + frame_bytes <= time_offset and payload.endswith(time_varint)):
        raise unexpected("unexpected field order in the first record")
    size = path.stat().st_size
    if size % record_bytes:
        raise unexpected(f"{size} bytes is not a whole number of {record_bytes}-byte records")
    return RecordLayout(size // record_bytes, record_bytes, _RECORD_HEADER_BYTES + image_offset,
                        _RECORD_HEADER_BYTES + time_offset, len(time_varint))


def read_month_tensors(path, layout, frame_shape):
    """Tensors of a month file: (float32 ``[hours, H, W, C]`` physical values, int64 YYYYMMDDHH ``[hours]``).

    ``layout``: int64 tensor of :class:`RecordLayout` fields. The file is read in one piece and viewed as a byte
    matrix ``[hours, record_bytes]`` of which the frames and times are column slices: about 4x faster than
    ``TFRecordDataset`` + ``parse_example`` (benchmarks/bench_pipeline.py), most of whose time goes into the
    per-record data checksums, which this path does not verify (the file size and every record's framing and field
    headers are checked: a truncated or differently laid out file fails)."""
    import tensorflow as tf

    hours, record_bytes, image_offset, time_offset, time_bytes = tf.unstack(layout)
    image_end = image_offset + int(np.prod(frame_shape)) * 4
    records = tf.reshape(tf.io.decode_raw(tf.io.read_file(path), tf.uint8), tf.stack([hours, record_bytes]))
    headers = tf.concat([records[:, :image_offset], records[:, image_end:time_offset]], axis=1)
    check = tf.debugging.Assert(tf.reduce_all(headers == headers[:1]),
                                ["records laid out unlike the first one (rerun step 2) in", path])
    with tf.control_dependencies([check]):
        frame_bytes = tf.reshape(records[:, image_offset:image_end], (-1, *frame_shape, 4))
    images = tf.bitcast(frame_bytes, tf.float32)
    varint = tf.cast(records[:, time_offset:time_offset + time_bytes], tf.int64)
    times = tf.reduce_sum(tf.bitwise.left_shift(varint & 0x7F, 7 * tf.range(time_bytes)), axis=1)
    return images, times


def resolve_tfrecord_dir(input_dir) -> Path:
    """``PreprocessedData/<EXPNAME>`` or its ``tfrecords/`` → the directory holding ``dataset_info.json``."""
    input_dir = Path(input_dir)
    for candidate in (input_dir, input_dir / "tfrecords"):
        if (candidate / DATASET_INFO).is_file():
            return candidate
    raise UserError(f"input_dir {input_dir}: no {DATASET_INFO} there or in its tfrecords/ (run preprocessing "
                    f"step 2 first)")


def read_dataset_info(tfrecord_dir: Path) -> dict:
    info = read_json(tfrecord_dir / DATASET_INFO, what="step-2 dataset description")
    for key in ("sequence_length", "variables", "frame_shape", "lat", "lon", "months"):
        if key not in info:
            raise UserError(f"{tfrecord_dir / DATASET_INFO}: key '{key}' missing (rerun step 2)")
    return info


def _available_months(info: dict) -> set[tuple[int, int]]:
    return {(int(key[:4]), int(key[5:7])) for key in info["months"]}


class ERA5Dataset:
    """Windows of one data-split mode of a step-2 output; see the module docstring."""

    def __init__(self, input_dir, datasplit, mode: str, hparams: dict | None = None, seed: int = 1234,
                 normalization: Normalization | None = None):
        if mode not in MODES:
            raise UserError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        self.tfrecord_dir = resolve_tfrecord_dir(input_dir)
        info = read_dataset_info(self.tfrecord_dir)
        self.mode = mode
        self.seed = int(seed)
        self.datasplit = load_datasplit(datasplit, available=_available_months(info))
        hparams = dict(hparams or {})
        self.sequence_length = int(hparams.get("sequence_length", info["sequence_length"]))
        if self.sequence_length < 1:
            raise UserError(f"sequence_length {self.sequence_length}: expected a positive integer")
        self.shuffle_on_val = bool(hparams.get("shuffle_on_val", False))
        #: default of make_dataset's batch_size
        self.batch_size = int(hparams.get("batch_size", 4))
        self.variables = list(info["variables"])
        self.lat = np.asarray(info["lat"], dtype=np.float64)
        self.lon = np.asarray(info["lon"], dtype=np.float64)
        self.frame_shape = tuple(int(n) for n in info["frame_shape"])
        self.months = split_months(self.datasplit, mode)
        if not self.months:
            raise UserError(f"the data split has no months for mode '{mode}'")
        entries = [info["months"][month_key(*m)] for m in self.months]
        self.files = [str(self.tfrecord_dir / entry["file"]) for entry in entries]
        missing = [f for f in self.files if not Path(f).is_file()]
        if missing:
            raise UserError(f"TFRecord file {missing[0]} listed in {DATASET_INFO} is missing (rerun step 2)")
        self.layouts = [month_file_layout(Path(f), self.frame_shape) for f in self.files]
        for path, layout, entry in zip(self.files, self.layouts, entries):
            if layout.hours != sum(hours for _, hours in entry["blocks"]):
                raise UserError(f"{path} holds {layout.hours} hours, {DATASET_INFO} lists "
                                f"{sum(hours for _, hours in entry['blocks'])} (rerun step 2)")
        self.windows_per_month = [sum(max(0, hours - self.sequence_length + 1) for _, hours in entry["blocks"])
                                  for entry in entries]
        self.num_windows = int(sum(self.windows_per_month))
        if self.num_windows == 0:
            raise UserError(f"no window of {self.sequence_length} consecutive hours fits in the '{mode}' months "
                            f"{', '.join(month_key(*m) for m in self.months)}")
        if normalization is None:
            train_months = split_months(self.datasplit, "train")
            if not train_months:
                raise UserError("the data split has no 'train' months to compute the normalisation from")
            stats = merge_stats([info["months"][month_key(*m)]["stats"] for m in train_months])
            normalization = Normalization(hparams.get("normalization", "minmax"), stats, self.variables)
        elif normalization.variables != self.variables:
            raise UserError(f"the normalisation is for variables {normalization.variables}, the data has "
                            f"{self.variables}")
        self.normalization = normalization

    @property
    def shuffled(self) -> bool:
        return self.mode == "train" or (self.mode == "val" and self.shuffle_on_val)

    def _month_chunks(self, images, times, month_seed, chunk: int):
        """Dataset of the window starts of one month (``images`` normalised ``[hours, H, W, C]``, ``times``
        YYYYMMDDHH ``[hours]`` in time order) in chunks ``((images, times), starts [<=chunk])``; the month tensors
        ride along by reference, so that ONE ``map`` after the interleave gathers the windows (a ``map`` inside
        this per-month dataset would have its function set up anew for every month)."""
        import tensorflow as tf

        length = self.sequence_length
        # hour of the month (all hours of a file lie in one month): a window starting at s has no gap exactly
        # when its last hour is length - 1 hours after its first
        hour_of_month = (times // 100 % 100 - 1) * 24 + times % 100
        count = tf.maximum(tf.shape(times, out_type=tf.int64)[0] - length + 1, 0)
        starts = tf.range(count)
        gap_free = tf.gather(hour_of_month, starts + length - 1) - tf.gather(hour_of_month, starts) == length - 1
        starts = tf.boolean_mask(starts, gap_free)
        if self.shuffled:
            starts = tf.random.experimental.stateless_shuffle(starts, seed=tf.stack([month_seed, count]))
        return tf.data.Dataset.zip(tf.data.Dataset.from_tensors((images, times)).repeat(),
                                   tf.data.Dataset.from_tensor_slices(starts).batch(chunk))

    def make_dataset(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False):
        """One pass over the split: ``{"images": float32 [B, T, H, W, C], "t_start": int64 [B]}`` batches."""
        import tensorflow as tf

        batch_size = self.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size}: expected a positive integer")
        order = np.arange(len(self.files))
        month_seeds = np.zeros(len(self.files), dtype=np.int64)
        cycle, chunk = 1, batch_size
        if self.shuffled:
            rng = np.random.default_rng([self.seed % 2**32, int(epoch), MODES.index(self.mode)])
            order = rng.permutation(len(self.files))
            month_seeds = rng.integers(0, 2**31 - 1, size=len(self.files))
            # a batch mixes windows of up to MONTHS_IN_MEMORY months, each contributing a chunk of batch_size / months
            # windows, but at least MIN_CHUNK (per-chunk costs dominate below that: measured 2x slower at chunk 1)
            cycle = min(MONTHS_IN_MEMORY, len(self.files))
            chunk = min(batch_size, max(MIN_CHUNK, batch_size // cycle))
        offset = tf.constant(self.normalization.offset, tf.float32)
        scale = tf.constant(self.normalization.scale, tf.float32)

        @tf.autograph.experimental.do_not_convert
        def read_normalised(path, layout, month_seed):
            images, times = read_month_tensors(path, layout, self.frame_shape)
            return (images - offset) / scale, times, month_seed

        months = tf.data.Dataset.from_tensor_slices(
            ([self.files[i] for i in order], np.array([astuple(self.layouts[i]) for i in order], dtype=np.int64),
             month_seeds))
        # months are read (and the next ones read ahead) in parallel with cutting the windows of the current ones
        months = months.map(read_normalised, num_parallel_calls=MONTHS_READ_AHEAD, deterministic=True
                            ).prefetch(MONTHS_READ_AHEAD)
        chunks = months.interleave(
            tf.autograph.experimental.do_not_convert(
                lambda images, times, seed: self._month_chunks(images, times, seed, chunk)),
            cycle_length=cycle, block_length=1)
        frame_offsets = tf.range(self.sequence_length, dtype=tf.int64)

        @tf.autograph.experimental.do_not_convert
        def windows(month, starts):
            images, times = month
            return {"images": tf.gather(images, starts[:, None] + frame_offsets), "t_start": tf.gather(times, starts)}

        chunks = chunks.map(windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return chunks.rebatch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

    def __repr__(self) -> str:
        return (f"ERA5Dataset({str(self.tfrecord_dir)!r}, mode={self.mode!r}, months={len(self.months)}, "
                f"num_windows={self.num_windows}, sequence_length={self.sequence_length})")


@functools.lru_cache(maxsize=3)
def _month_hours(path: str, modified: float, frame_shape: tuple[int, ...]):
    """Hours of a month file as numpy (cached: persistence reads the same months for many forecasts)."""
    import tensorflow as tf

    layout = month_file_layout(Path(path), frame_shape)
    images, times = read_month_tensors(path, tf.constant(astuple(layout), tf.int64), frame_shape)
    return images.numpy(), times.numpy()


def load_hours(input_dir, start, end):
    """Raw physical values of the hours in ``[start, end]`` (``numpy.datetime64``, inclusive), read from the
    step-2 TFRecords; spans months and years. Returns ``xarray.DataArray`` ``(time, lat, lon, channel)`` float32.
    A missing hour → UserError naming it."""
    import xarray as xr

    tfrecord_dir = resolve_tfrecord_dir(input_dir)
    info = read_dataset_info(tfrecord_dir)
    start, end = np.datetime64(start, "h"), np.datetime64(end, "h")
    if end < start:
        raise UserError(f"load_hours: end {end} is before start {start}")
    wanted = np.arange(start, end + np.timedelta64(1, "h"), dtype="datetime64[h]")
    frames = np.empty((len(wanted), *info["frame_shape"]), dtype=np.float32)
    found = np.zeros(len(wanted), dtype=bool)
    first_month = start.astype("datetime64[M]")
    for month in np.arange(first_month, end.astype("datetime64[M]") + 1):
        key = str(month)
        if key not in info["months"]:
            continue
        path = tfrecord_dir / info["months"][key]["file"]
        if not path.is_file():
            raise UserError(f"TFRecord file {path} listed in {DATASET_INFO} is missing (rerun step 2)")
        images, valid_time = _month_hours(str(path), path.stat().st_mtime, tuple(info["frame_shape"]))
        positions = (yyyymmddhh_to_datetime(valid_time) - start).astype(np.int64)
        inside = (positions >= 0) & (positions < len(wanted))
        frames[positions[inside]] = images[inside]
        found[positions[inside]] = True
    if not found.all():
        missing = wanted[~found]
        raise UserError(f"load_hours: {len(missing)} hour(s) between {start} and {end} are not in {tfrecord_dir} "
                        f"(first missing: {missing[0]})")
    return xr.DataArray(frames, dims=("time", "lat", "lon", "channel"),
                        coords={"time": wanted.astype("datetime64[ns]"), "lat": info["lat"], "lon": info["lon"],
                                "channel": info["variables"]}, name="X")
