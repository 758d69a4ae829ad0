"""ERA5 reader: windows of ``sequence_length`` consecutive hours cut at read time from the step-2 TFRecords.

Windows (stride 1 h) never cross a gap in time and never leave their month: a month (or a gap-free block of it)
of N hours gives N − L + 1 windows, even when the next month belongs to the same split (months are not joined,
so a month's window count does not depend on its neighbours and the order of months can be shuffled freely).

Order of one pass (``batches(batch_size, epoch)``, also listed by ``pass_order``):

* val/test: chronological (month by month, windows by start time); val is shuffled like train if the hparam
  ``shuffle_on_val`` is true;
* train: months in a random order, :data:`MONTHS_IN_MEMORY` months in memory at a time and their windows
  interleaved (a batch takes ``max(MIN_CHUNK, batch_size / MONTHS_IN_MEMORY)`` windows from each: batch 32 mixes
  4 months, batch 4 comes from one month, the next batch from the next month), each month's windows in a random
  order; all of it derived from ``(seed, epoch)``, so the same seed and epoch give the same order.

Each month file is read once per pass (:func:`read_month`: memory-mapped and viewed as a byte matrix of
equal-sized records, the CRC32C checksums of its records verified the first time the process reads them,
normalised in one pass into a ``[hours, H, W, C]`` array) in background threads, in parts
of :data:`READ_PART_HOURS` hours (windows are cut from the first part while the next ones are read) and
:data:`MONTHS_READ_AHEAD` months ahead of the windows being cut; a batch is gathered from it with one ``np.take``
into a reused buffer. The reader is plain numpy (the training loop hands the batches to ``tf.distribute``
itself): a ``tf.data`` pipeline costs more per batch than the whole copy of a batch of 4 windows
(benchmarks/README.md). ``make_dataset`` wraps the same batches as a ``tf.data.Dataset`` for code built on it.

Normalisation: from the statistics of the TRAINING months of the data split only (merged exactly), method from
the hparam ``normalization`` (``minmax`` default, or ``znorm``), unless a :class:`Normalization` is passed
(postprocessing passes the one saved with the model). ``normalization_months="all"`` takes the statistics of every
preprocessed month instead (val and test included), as the original AMBS did for its published models.

Example::

    from video_prediction_tools.datasets.era5 import ERA5Dataset, load_hours
    ds = ERA5Dataset("PreprocessedData/<EXPNAME>", "data_split.json", "train",
                     hparams={"sequence_length": 24, "normalization": "minmax"}, seed=1234)
    for batch in ds.batches(batch_size=4, epoch=0):
        batch["images"]    # numpy float32 [4, 24, H, W, C], normalised
        batch["t_start"]   # numpy int64 [4], YYYYMMDDHH of frame 0
    hours = load_hours("PreprocessedData/<EXPNAME>", np.datetime64("2017-01-31T12"), np.datetime64("2017-02-01T11"))
"""
from __future__ import annotations

import functools
import os
import struct
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data_preprocess.statistics import merge_stats
from ..data_preprocess.records import (DATASET_INFO, RECORD_FOOTER_BYTES, RECORD_FORMAT, RECORD_HEADER_BYTES, damaged,
                                      datetime_to_yyyymmddhh, month_key, parse_month_key, record_checksum_error,
                                      yyyymmddhh_to_datetime)
from ..utils.errors import UserError
from ..utils.io import read_json
from .datasplit import MODES, load_datasplit, split_months
from .normalization import Normalization

#: months whose windows are interleaved in a training pass (memory: this many month tensors)
MONTHS_IN_MEMORY = 4
#: fewest consecutive windows of a batch taken from one month in a training pass
MIN_CHUNK = 4
#: month files read ahead of the windows being cut (memory: this many more months), and reading threads
MONTHS_READ_AHEAD = 2
#: hours of a month read as one part (the parts of a month are read in parallel; cutting starts after the first)
READ_PART_HOURS = 96


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


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """The protobuf varint at ``position`` of ``data`` and the position after it (ValueError if cut off)."""
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def _message_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` of each field of a serialised protobuf message, in order: varints as ``int``,
    length-delimited and fixed-size fields as ``bytes`` (ValueError if malformed)."""
    fields, position = [], 0
    while position < len(data):
        key, position = _read_varint(data, position)
        wire_type = key & 7
        if wire_type == 0:
            value, position = _read_varint(data, position)
        elif wire_type in (1, 2, 5):
            size, position = (8, position) if wire_type == 1 else (4, position) if wire_type == 5 \
                else _read_varint(data, position)
            if position + size > len(data):
                raise ValueError("truncated field")
            value, position = data[position:position + size], position + size
        else:
            raise ValueError(f"wire type {wire_type}")
        fields.append((key >> 3, value))
    return fields


def _length_delimited(data: bytes, number: int) -> list[bytes]:
    """The length-delimited values (sub-messages, bytes, packed lists) of field ``number`` of a message."""
    return [value for field, value in _message_fields(data) if field == number and isinstance(value, bytes)]


def _list_values(kind: int, values: bytes) -> list:
    """The values of a ``BytesList`` (kind 1: bytes), ``FloatList`` (2: raw bytes) or ``Int64List`` (3: ints,
    packed or not)."""
    if kind != 3:
        return _length_delimited(values, 1)
    items = []
    for field, value in _message_fields(values):
        if field == 1 and isinstance(value, int):
            items.append(value)
        elif field == 1:  # packed: varints one after the other
            position = 0
            while position < len(value):
                number, position = _read_varint(value, position)
                items.append(number)
    return items


def example_features(payload: bytes) -> dict[str, dict[int, list]]:
    """The features of a serialised ``tf.train.Example`` without TensorFlow: name → {kind: values}, kind 1 =
    ``bytes_list`` (bytes), 3 = ``int64_list`` (ints, packed or not); ValueError if malformed."""
    features = {}
    for features_message in _length_delimited(payload, 1):  # Example.features
        for entry in _length_delimited(features_message, 1):  # Features.feature: its map entries
            name = b"".join(_length_delimited(entry, 1)).decode()
            kinds = features.setdefault(name, {})
            for feature in _length_delimited(entry, 2):
                for kind, values in _message_fields(feature):
                    if isinstance(values, bytes):
                        kinds.setdefault(kind, []).extend(_list_values(kind, values))
    return features


def month_file_layout(path: Path, frame_shape) -> RecordLayout:
    """Find the byte layout of a month file from its first record (its protobuf fields read by
    :func:`example_features`, no TensorFlow); the reader checks that every other record has the same field headers
    (:func:`read_month`). UserError if the file is not laid out as step 2 writes it."""
    def unexpected(why):
        return UserError(f"{path}: {why}; not a step-2 file of format {RECORD_FORMAT} (rerun step 2 with --overwrite)")

    frame_bytes = int(np.prod(frame_shape)) * 4
    with open(path, "rb") as file:
        header = file.read(RECORD_HEADER_BYTES)
        if len(header) < RECORD_HEADER_BYTES:
            raise unexpected("no complete record")
        why = record_checksum_error(header)      # before trusting the length
        if why:
            raise damaged(path, 0, why)
        (length,) = struct.unpack("<Q", header[:8])
        payload = file.read(length)
        footer = file.read(RECORD_FOOTER_BYTES)
    if len(footer) < RECORD_FOOTER_BYTES:
        raise unexpected("no complete record")
    why = record_checksum_error(header, payload, footer)
    if why:
        raise damaged(path, 0, why)
    try:
        features = example_features(payload)
        image = features["images"][1][0]
        valid_time = features["valid_time"][3][0]
    except (ValueError, UnicodeDecodeError, KeyError, IndexError):
        raise unexpected("first record is not an hour example (images bytes + valid_time int64)") from None
    if len(image) != frame_bytes:
        raise unexpected(f"first frame has {len(image)} bytes, expected {frame_bytes} for a frame {tuple(frame_shape)}")
    time_varint = _varint(valid_time)
    image_offset = payload.find(image)
    time_offset = length - len(time_varint)
    record_bytes = RECORD_HEADER_BYTES + length + RECORD_FOOTER_BYTES
    if not (0 <= image_offset and image_offset + frame_bytes <= time_offset and payload.endswith(time_varint)):
        raise unexpected("unexpected field order in the first record")
    size = path.stat().st_size
    if size % record_bytes:
        raise unexpected(f"{size} bytes is not a whole number of {record_bytes}-byte records")
    return RecordLayout(size // record_bytes, record_bytes, RECORD_HEADER_BYTES + image_offset,
                        RECORD_HEADER_BYTES + time_offset, len(time_varint))


#: rows of month files whose checksums this process has verified: (path, size, mtime in ns, first row, end row)
_VERIFIED: set[tuple[str, int, int, int, int]] = set()
_VERIFIED_LOCK = threading.Lock()


def _verify_checksums(path, records: np.ndarray, first: int, record_bytes: int) -> None:
    """Check the CRC32C checksums of rows ``records`` (the rows from ``first`` on of a month file mapped as
    ``[hours, record_bytes]``); UserError naming the file and the record for a damaged one. Done once per process
    for the same rows of the same file (same size and modification time): a training run reads every month once
    per epoch, and checking a GMD-shaped month (744 records, 46 MB) takes 13 ms, more than reading it (9 ms;
    benchmarks/README.md); a file rewritten since has another size or modification time and is checked again."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, first, first + len(records))
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    data_end = record_bytes - RECORD_FOOTER_BYTES
    for index, record in enumerate(records):
        why = record_checksum_error(record[:RECORD_HEADER_BYTES], record[RECORD_HEADER_BYTES:data_end],
                                    record[data_end:])
        if why:
            raise damaged(path, first + index, why)
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)


def read_month(path, layout: RecordLayout, frame_shape, normalization: Normalization | None = None,
               valid_times: np.ndarray | None = None, out: np.ndarray | None = None,
               hours: tuple[int, int] | None = None):
    """Frames and valid times of a step-2 month file: (float32 ``[hours, H, W, C]``, int64 YYYYMMDDHH ``[hours]``).

    The file is memory-mapped as a byte matrix ``[hours, record_bytes]`` whose column slices are the frames and
    the times (no per-record parsing; the file size, every record's checksums (CRC32C of its length and of its
    data, once per process: :func:`_verify_checksums`; a damaged record is a UserError naming the file and the
    record) and its field headers are checked). With ``normalization`` the frames come normalised, computed in one
    pass from the mapped file (no intermediate copy). With ``valid_times`` (YYYYMMDDHH of every row of the file, as
    :func:`block_times` derives them from the blocks of ``dataset_info.json``) the times are checked against
    them. ``out``: a float32 array ``[hours, H, W, C]`` to write the frames into (returned) instead of a new one.
    ``hours``: read only the rows ``[first, end)`` (into the same rows of ``out``; the times returned are those
    rows'). UserError for a file laid out otherwise."""
    first, end = hours if hours is not None else (0, layout.hours)
    frame_bytes = int(np.prod(frame_shape)) * 4
    image_end = layout.image_offset + frame_bytes
    try:
        mapped = np.memmap(path, dtype=np.uint8, mode="r", shape=(layout.hours, layout.record_bytes))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot be read as {layout.hours} records ({err}); rerun step 2") from None
    records = mapped[first:end]
    _verify_checksums(path, records, first, layout.record_bytes)
    headers = np.concatenate([records[:, :layout.image_offset], records[:, image_end:layout.time_offset]], axis=1)
    first_headers = np.concatenate([mapped[0, :layout.image_offset], mapped[0, image_end:layout.time_offset]])
    unlike = np.flatnonzero((headers != first_headers).any(axis=1))
    if unlike.size:
        raise UserError(f"{path}: record {first + unlike[0]} is laid out unlike the first one; not a step-2 file of "
                        f"format {RECORD_FORMAT} (rerun step 2 with --overwrite)")
    frames = records[:, layout.image_offset:image_end].view("<f4")     # [hours, H*W*C], rows unaligned
    if out is None:
        out = np.empty((layout.hours, *frame_shape), np.float32)
    images = out[first:end].reshape(frames.shape)
    if normalization is None:
        np.copyto(images, frames)
    else:
        # per-element rows of offset and scale: numpy's inner loop then runs over whole frames, not over C values
        pixels = frame_bytes // 4 // frame_shape[-1]
        offset, scale = (np.tile(np.asarray(v, np.float32), pixels)
                         for v in (normalization.offset, normalization.scale))
        np.subtract(frames, offset, out=images)
        np.divide(images, scale, out=images)
    varint = records[:, layout.time_offset:layout.time_offset + layout.time_bytes].astype(np.int64)
    times = ((varint & 0x7F) << (7 * np.arange(layout.time_bytes))).sum(axis=1)
    del mapped, records, frames
    if valid_times is not None and not np.array_equal(times, valid_times[first:end]):
        raise UserError(f"{path}: valid times differ from the blocks listed in {DATASET_INFO} (rerun step 2)")
    return out, times


def block_times(blocks) -> np.ndarray:
    """Valid times YYYYMMDDHH (int64, file order) of the hours of gap-free ``blocks`` ``[[first, hours], ...]``."""
    return datetime_to_yyyymmddhh(np.concatenate(
        [yyyymmddhh_to_datetime(first) + np.arange(hours) for first, hours in blocks]))


def _item_references(items: list, index: int) -> int:
    return sys.getrefcount(items[index])


# what _item_references says of an item that only its list holds (measured: interpreters differ in how many
# temporary references the call itself adds)
_UNSHARED = _item_references([object()], 0)


class _BufferPool:
    """float32 arrays handed out again once nobody holds them (nor a view of them) any more. A fresh array costs
    fresh pages every time (a month of the GMD shape is 46 MB, a batch of 32 windows 47 MB: glibc maps both anew
    for every allocation, 20-30 % of the time of reading a month or cutting a batch); a reused one is warm.
    A buffer still referenced anywhere is never handed out; thread-safe (a pass may run in another thread, as
    under ``make_dataset``)."""

    def __init__(self, keep: int):
        self._keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            for index in range(len(self._arrays)):
                if self._arrays[index].shape == shape and _item_references(self._arrays, index) == _UNSHARED:
                    return self._arrays[index]
            array = np.empty(shape, np.float32)
            if len(self._arrays) < self._keep:
                self._arrays.append(array)
            return array


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
    for key in ("variables", "frame_shape", "lat", "lon", "months"):
        if key not in info:
            raise UserError(f"{tfrecord_dir / DATASET_INFO}: key '{key}' missing (rerun step 2)")
    return info


def _available_months(info: dict) -> set[tuple[int, int]]:
    return {parse_month_key(key) for key in info["months"]}


class ERA5Dataset:
    """Windows of one data-split mode of a step-2 output; see the module docstring."""

    def __init__(self, input_dir, datasplit, mode: str, hparams: dict | None = None, seed: int = 1234,
                 normalization: Normalization | None = None, normalization_months: str = "train"):
        if mode not in MODES:
            raise UserError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        self.tfrecord_dir = resolve_tfrecord_dir(input_dir)
        info = read_dataset_info(self.tfrecord_dir)
        self.mode = mode
        self.seed = int(seed)
        self.datasplit = load_datasplit(datasplit, available=_available_months(info))
        hparams = dict(hparams or {})
        if "sequence_length" not in hparams:
            raise UserError("hyper-parameter 'sequence_length' missing: the reader needs the window length in hours "
                            "(the training hyper-parameters set it)")
        length = hparams["sequence_length"]
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise UserError(f"sequence_length {length!r}: expected a positive integer (hours per window)")
        self.sequence_length = int(length)
        self.shuffle_on_val = bool(hparams.get("shuffle_on_val", False))
        #: default of batches' batch_size
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
        #: gap-free runs ``[[first YYYYMMDDHH, hours], ...]`` of each month, in file order
        self.blocks = [entry["blocks"] for entry in entries]
        #: rows of each month file at which a window starts (it ends ``sequence_length - 1`` hours later, no gap)
        self.window_starts = [self._gap_free_starts(blocks) for blocks in self.blocks]
        self.windows_per_month = [len(starts) for starts in self.window_starts]
        #: valid times YYYYMMDDHH of the rows of each month file (checked against the file when it is read)
        self.valid_times = [block_times(blocks) for blocks in self.blocks]
        self.num_windows = int(sum(self.windows_per_month))
        if self.num_windows == 0:
            raise UserError(f"no window of {self.sequence_length} consecutive hours fits in the '{mode}' months "
                            f"{', '.join(month_key(*m) for m in self.months)}")
        if normalization is None:
            stats = merge_stats([info["months"][key]["stats"] for key in self._statistics_months(info,
                                                                                                 normalization_months)])
            normalization = Normalization(hparams.get("normalization", "minmax"), stats, self.variables)
        elif normalization.variables != self.variables:
            raise UserError(f"the normalisation is for variables {normalization.variables}, the data has "
                            f"{self.variables}")
        self.normalization = normalization
        # reused arrays of month frames and of batches (across passes: the epochs of a training run); memory: up to
        # MONTHS_IN_MEMORY + MONTHS_READ_AHEAD + 1 months (322 MB for 31-day months of the GMD shape)
        self._month_buffers = _BufferPool(keep=MONTHS_IN_MEMORY + MONTHS_READ_AHEAD + 1)
        self._batch_buffers = _BufferPool(keep=4)

    def _statistics_months(self, info: dict, normalization_months: str) -> list[str]:
        """Month keys whose statistics make the normalisation: the train split's, or (``"all"``) every month of
        the step-2 output."""
        if normalization_months == "all":
            return sorted(info["months"])
        if normalization_months != "train":
            raise UserError(f"normalization months {normalization_months!r}: expected train or all")
        train_months = split_months(self.datasplit, "train")
        if not train_months:
            raise UserError("the data split has no 'train' months to compute the normalisation from")
        return [month_key(*m) for m in train_months]

    def _gap_free_starts(self, blocks) -> np.ndarray:
        starts, first_row = [np.zeros(0, np.int64)], 0
        for _, hours in blocks:
            starts.append(first_row + np.arange(max(0, hours - self.sequence_length + 1), dtype=np.int64))
            first_row += hours
        return np.concatenate(starts)

    @property
    def shuffled(self) -> bool:
        return self.mode == "train" or (self.mode == "val" and self.shuffle_on_val)

    def _check_batch_size(self, batch_size: int | None) -> int:
        batch_size = self.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size}: expected a positive integer")
        return batch_size

    def pass_order(self, batch_size: int | None = None, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Every window of one pass in the order :meth:`batches` yields them: (position of its month in
        ``self.files`` ``[N]``, its first row in that file ``[N]``). See the module docstring for the order."""
        batch_size = self._check_batch_size(batch_size)
        if not self.shuffled:
            months = np.repeat(np.arange(len(self.files)), [len(s) for s in self.window_starts])
            return months, np.concatenate(self.window_starts)
        rng = np.random.default_rng([self.seed % 2**32, int(epoch), MODES.index(self.mode)])
        pending = [(int(m), rng.permutation(self.window_starts[m])) for m in rng.permutation(len(self.files))]
        pending = [month for month in pending if len(month[1])][::-1]
        # chunks of the months in memory taken in turn (a month that runs out gives its turn to the next month);
        # a chunk has batch_size / MONTHS_IN_MEMORY windows but at least MIN_CHUNK, so batch 4 comes from one month
        cycle = min(MONTHS_IN_MEMORY, len(pending))
        chunk = min(batch_size, max(MIN_CHUNK, batch_size // cycle))
        in_memory = [pending.pop() for _ in range(cycle)]
        months, starts = [], []
        while any(month is not None for month in in_memory):
            for turn, month in enumerate(in_memory):
                if month is None:
                    continue
                position, month_starts = month
                starts.append(month_starts[:chunk])
                months.append(np.full(len(starts[-1]), position))
                if len(month_starts) > chunk:
                    in_memory[turn] = (position, month_starts[chunk:])
                else:
                    in_memory[turn] = pending.pop() if pending else None
        return np.concatenate(months), np.concatenate(starts)

    def batches(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False, skip: int = 0):
        """One pass over the split, from batch ``skip`` on (resuming within an epoch), as numpy batches
        ``{"images": float32 [B, T, H, W, C] normalised, "t_start": int64 [B] YYYYMMDDHH of frame 0}``.

        Months are read in background threads, :data:`MONTHS_READ_AHEAD` ahead of the windows being cut, and
        released after their last window. An ``images`` array is reused for a later batch once the caller holds
        no reference to it (or to a view of it); keep the batch (or copy it) to keep its values."""
        batch_size = self._check_batch_size(batch_size)
        months, starts = self.pass_order(batch_size, epoch)
        batch_count = len(starts) // batch_size if drop_remainder else -(-len(starts) // batch_size)
        months = months[skip * batch_size:batch_count * batch_size]
        starts = starts[skip * batch_size:batch_count * batch_size]
        if not len(starts):
            return
        # the pass as segments (consecutive windows of one month within one batch), the months in the order they
        # are first needed, how many of them must have been submitted by each batch, and when each is released
        batch_firsts = np.arange(0, len(starts), batch_size)
        cuts = np.union1d(batch_firsts, np.flatnonzero(np.diff(months)) + 1)
        segments = list(zip(cuts.tolist(), [*cuts[1:].tolist(), len(starts)], months[cuts].tolist()))
        segments_of_batch = np.searchsorted(cuts, [*batch_firsts, len(starts)]).tolist()
        needed = months[np.sort(np.unique(months, return_index=True)[1])].tolist()
        rank = np.empty(len(self.files), np.int64)
        rank[needed] = np.arange(len(needed))
        batch_ends = np.minimum(batch_firsts + batch_size, len(starts))
        submit_by = np.minimum(np.maximum.accumulate(rank[months])[batch_ends - 1] + 1 + MONTHS_READ_AHEAD,
                            len(needed)).tolist()
        last_window = np.zeros(len(self.files), np.int64)
        np.maximum.at(last_window, months, np.arange(len(months)))
        released_after = {}
        for month in needed:
            released_after.setdefault(int(last_window[month]) // batch_size, []).append(month)
        length, frame_shape = self.sequence_length, self.frame_shape
        frame_offsets = np.arange(length)
        max_hours = max(layout.hours for layout in self.layouts)
        with ThreadPoolExecutor(MONTHS_READ_AHEAD, thread_name_prefix="ambs-reader") as pool:
            reads, submitted = {}, 0

            def submit(month: int) -> None:
                """Read a month in parts of READ_PART_HOURS hours (in parallel; windows of the first part can be cut
                while the next ones are read): its frames and [(end row, future)] of the parts."""
                layout = self.layouts[month]
                # one buffer shape for months of every length, so that any released buffer fits the next month
                frames = self._month_buffers.get((max_hours, *frame_shape))[:layout.hours]
                edges = [*range(0, layout.hours, READ_PART_HOURS), layout.hours]
                reads[month] = frames, [(end, pool.submit(read_month, self.files[month], layout, frame_shape,
                                                          self.normalization, self.valid_times[month], frames,
                                                          (begin, end)))
                                        for begin, end in zip(edges[:-1], edges[1:])]

            for batch, (first, end) in enumerate(zip(batch_firsts.tolist(), batch_ends.tolist())):
                while submitted < submit_by[batch]:
                    submit(needed[submitted])
                    submitted += 1
                images = self._batch_buffers.get((end - first, length, *frame_shape))
                rows = images.reshape(-1, *frame_shape)
                t_start = np.empty(end - first, np.int64)
                for begin, stop, month in segments[segments_of_batch[batch]:segments_of_batch[batch + 1]]:
                    month_frames, parts = reads[month]
                    window_starts = starts[begin:stop]
                    rows_needed = int(window_starts.max()) + length
                    for part_end, part in parts:                     # wait for the parts holding the windows
                        part.result()
                        if part_end >= rows_needed:
                            break
                    # mode "clip": with "raise" numpy would write through a temporary buffer
                    np.take(month_frames, (window_starts[:, None] + frame_offsets).ravel(), axis=0,
                            out=rows[(begin - first) * length:(stop - first) * length], mode="clip")
                    t_start[begin - first:stop - first] = self.valid_times[month][window_starts]
                for month in released_after.get(batch, ()):
                    del reads[month]
                del rows, month_frames, parts
                yield {"images": images, "t_start": t_start}
                del images

    def make_dataset(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False):
        """:meth:`batches` as a ``tf.data.Dataset`` (tensors of the same batches), for code built on tf.data.
        Slower (``from_generator``: about 2 ms per batch, benchmarks/bench_pipeline.py); AMBS itself uses
        :meth:`batches`."""
        import tensorflow as tf

        batch_size = self._check_batch_size(batch_size)
        signature = {"images": tf.TensorSpec((None, self.sequence_length, *self.frame_shape), tf.float32),
                     "t_start": tf.TensorSpec((None,), tf.int64)}
        return tf.data.Dataset.from_generator(
            lambda: self.batches(batch_size, epoch, drop_remainder),
            output_signature=signature).prefetch(2)

    def __repr__(self) -> str:
        return (f"ERA5Dataset({str(self.tfrecord_dir)!r}, mode={self.mode!r}, months={len(self.months)}, "
                f"num_windows={self.num_windows}, sequence_length={self.sequence_length})")


@functools.lru_cache(maxsize=3)
def _month_hours(path: str, modified: float, frame_shape: tuple[int, ...]):
    """Hours of a month file (cached: persistence reads the same months for many forecasts)."""
    return read_month(path, month_file_layout(Path(path), frame_shape), frame_shape)


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
