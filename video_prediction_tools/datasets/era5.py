"""ERA5 reader (the dataset ``era5`` of the registry): windows of ``sequence_length`` consecutive hours cut at read
time from the step-2 TFRecords.

The data split names whole months or inclusive hour ranges (:mod:`.datasplit`); both are read as hour ranges, and
the months of a mode are the month files holding any of its hours. Windows (stride 1 h) never cross a gap in time,
never leave their range (so never mix hours of two modes) and never leave their month: a month (or a gap-free block
of it, or the part of it inside one range) of N hours gives N − L + 1 windows, even when the next month belongs to
the same split (months are not joined, so a month's window count does not depend on its neighbours and the order
of months can be shuffled freely).

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

Normalisation: from the statistics of the TRAINING hours of the data split only (merged exactly), method from
the hparam ``normalization`` (``minmax`` default, or ``znorm``), unless a :class:`Normalization` is passed
(postprocessing passes the one saved with the model). A month wholly in training contributes step 1's statistics of
the month; a month that training ranges cut contributes the statistics of exactly its training hours, computed from
the step-2 frames of those hours (:func:`training_statistics`). ``normalization_months="all"`` takes the statistics
of every preprocessed month instead (val and test included), as the original AMBS did for its published models.

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
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data_preprocess.records import (DATASET_INFO, RECORD_FOOTER_BYTES, RECORD_FORMAT, RECORD_HEADER_BYTES,
                                      RecordLayout, block_hours, damaged, datetime_to_yyyymmddhh, month_file_layout,
                                      month_key, parse_month_key, record_checksum_error, varint_values,
                                      yyyymmddhh_to_datetime)
from ..data_preprocess.statistics import channel_stats, merge_stats
from ..data_preprocess.step2 import run_step2
from ..utils.conventions import DEFAULT_SEQUENCE_LENGTH
from ..utils.errors import UserError
from ..utils.io import read_json
from .datasplit import HourRange, MODES, check_mode, load_datasplit, month_range, range_index, window_rows
from .normalization import Normalization
from .registry import Reader, register_dataset

#: months whose windows are interleaved in a training pass (memory: this many month tensors)
MONTHS_IN_MEMORY = 4
#: fewest consecutive windows of a batch taken from one month in a training pass
MIN_CHUNK = 4
#: month files read ahead of the windows being cut (memory: this many more months), and reading threads
MONTHS_READ_AHEAD = 2
#: hours of a month read as one part (the parts of a month are read in parallel; cutting starts after the first)
READ_PART_HOURS = 96


#: rows of month files whose checksums this process has verified: (path, size, mtime in ns, first row, end row)
_VERIFIED: set[tuple[str, int, int, int, int]] = set()
_VERIFIED_LOCK = threading.Lock()


def _verify_checksums(path, records: np.ndarray, first: int, record_bytes: int) -> None:
    """Check the CRC32C checksums of rows ``records`` (the rows from ``first`` on of a month file mapped as
    ``[hours, record_bytes]``); UserError naming the file and the record for a damaged one. Done once per process
    for the same rows of the same file (same size and modification time): a training run reads every month once
    per epoch, and checking a month costs more than reading it (benchmarks/README.md); a file rewritten since has
    another size or modification time and is checked again."""
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
    times = varint_values(records[:, layout.time_offset:layout.time_offset + layout.time_bytes])
    del mapped, records, frames
    if valid_times is not None and not np.array_equal(times, valid_times[first:end]):
        raise UserError(f"{path}: valid times differ from the blocks listed in {DATASET_INFO} (rerun step 2)")
    return out, times


def block_times(blocks) -> np.ndarray:
    """Valid times YYYYMMDDHH (int64, file order) of the hours of gap-free ``blocks`` ``[[first, hours], ...]``."""
    return datetime_to_yyyymmddhh(block_hours(blocks))


def _item_references(items: list, index: int) -> int:
    return sys.getrefcount(items[index])


# what _item_references says of an item that only its list holds (measured: interpreters differ in how many
# temporary references the call itself adds)
_UNSHARED = _item_references([object()], 0)


class _BufferPool:
    """float32 arrays handed out again once nobody holds them (nor a view of them) any more. A fresh array costs
    fresh pages every time (a month of the GMD shape is 46 MB, a batch of 32 windows 47 MB: glibc maps both anew
    for every allocation, a sizeable part of reading a month or cutting a batch); a reused one is warm.
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


def available_hours(info: dict) -> np.ndarray:
    """Every hour (``datetime64[h]``, sorted) that the step-2 output described by ``info`` (its
    ``dataset_info.json``) holds."""
    return np.sort(np.concatenate([np.zeros(0, "datetime64[h]")] + [
        (block_hours(entry["blocks"])) for entry in info["months"].values()]))


def months_in(info: dict, ranges: list[HourRange]) -> list[str]:
    """Keys ``YYYY-MM`` (chronological) of the step-2 months holding any hour of ``ranges``."""
    keys = []
    for key in sorted(info["months"]):
        first, last = month_range(*parse_month_key(key))
        if any(start <= last and first <= end for start, end in ranges) and (
                range_index((block_hours(info["months"][key]["blocks"])), ranges) >= 0).any():
            keys.append(key)
    return keys


def training_statistics(tfrecord_dir: Path, info: dict, ranges: list[HourRange]) -> dict[str, dict]:
    """Statistics (merged exactly, per variable) of the hours in ``ranges`` of the step-2 output: step 1's
    statistics of each month wholly inside them, the statistics of the frames of exactly those hours for a month
    they cut."""
    parts = []
    frame_shape = tuple(int(n) for n in info["frame_shape"])
    for key in months_in(info, ranges):
        entry = info["months"][key]
        inside = range_index((block_hours(entry["blocks"])), ranges) >= 0
        if inside.all():
            parts.append(entry["stats"])
            continue
        rows = np.flatnonzero(inside)
        path = tfrecord_dir / entry["file"]
        frames, _ = read_month(path, month_file_layout(path, frame_shape), frame_shape,
                               hours=(int(rows[0]), int(rows[-1]) + 1))
        parts.append(channel_stats(frames[rows], info["variables"]))
    return merge_stats(parts)


@dataclass(frozen=True)
class _PassPlan:
    """How one pass is cut from its months (``months[k]``: position in the reader's files of the pass's window
    k): its batches, their segments (consecutive windows of one month within one batch), the months in the order
    they are first needed, how many of them must have been submitted for reading by each batch
    (:data:`MONTHS_READ_AHEAD` ahead) and after which batch each is released."""
    #: first and end window of each batch
    batch_firsts: list[int]
    batch_ends: list[int]
    #: ``(first window, end window, month)`` of each segment, and the first segment of each batch (plus the end)
    segments: list[tuple[int, int, int]]
    segments_of_batch: list[int]
    needed: list[int]
    submit_by: list[int]
    released_after: dict[int, list[int]]

    @classmethod
    def make(cls, months: np.ndarray, batch_size: int, month_count: int) -> "_PassPlan":
        windows = len(months)
        batch_firsts = np.arange(0, windows, batch_size)
        cuts = np.union1d(batch_firsts, np.flatnonzero(np.diff(months)) + 1)
        segments = list(zip(cuts.tolist(), [*cuts[1:].tolist(), windows], months[cuts].tolist()))
        segments_of_batch = np.searchsorted(cuts, [*batch_firsts, windows]).tolist()
        needed = months[np.sort(np.unique(months, return_index=True)[1])].tolist()
        rank = np.empty(month_count, np.int64)
        rank[needed] = np.arange(len(needed))
        batch_ends = np.minimum(batch_firsts + batch_size, windows)
        submit_by = np.minimum(np.maximum.accumulate(rank[months])[batch_ends - 1] + 1 + MONTHS_READ_AHEAD,
                               len(needed)).tolist()
        last_window = np.zeros(month_count, np.int64)
        np.maximum.at(last_window, months, np.arange(windows))
        released_after: dict[int, list[int]] = {}
        for month in needed:
            released_after.setdefault(int(last_window[month]) // batch_size, []).append(month)
        return cls(batch_firsts.tolist(), batch_ends.tolist(), segments, segments_of_batch, needed, submit_by,
                   released_after)

    def batch_segments(self, batch: int) -> list[tuple[int, int, int]]:
        return self.segments[self.segments_of_batch[batch]:self.segments_of_batch[batch + 1]]


def _window_length(hparams: dict) -> int:
    """The window length in hours: the hyper-parameter ``sequence_length`` (required, a positive integer)."""
    if "sequence_length" not in hparams:
        raise UserError("hyper-parameter 'sequence_length' missing: the reader needs the window length in hours "
                        "(the training hyper-parameters set it)")
    length = hparams["sequence_length"]
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise UserError(f"sequence_length {length!r}: expected a positive integer (hours per window)")
    return int(length)


@register_dataset("era5")
class ERA5Dataset(Reader):
    """Windows of one data-split mode of a step-2 output; see the module docstring."""

    evaluation = "gridded"
    split_template = "data_split/era5/datasplit_template.json"

    def __init__(self, input_dir, datasplit, mode: str, hparams: dict | None = None, seed: int = 1234,
                 normalization: Normalization | None = None, normalization_months: str = "train"):
        check_mode(mode)
        self.tfrecord_dir = resolve_tfrecord_dir(input_dir)
        info = read_dataset_info(self.tfrecord_dir)
        self.mode = mode
        self.seed = int(seed)
        self.datasplit = self.load_split(datasplit, self.tfrecord_dir)
        hparams = dict(hparams or {})
        self.sequence_length = _window_length(hparams)
        self.shuffle_on_val = bool(hparams.get("shuffle_on_val", False))
        #: default of batches' batch_size
        self.batch_size = int(hparams.get("batch_size", 4))
        self.variables = list(info["variables"])
        self.lat = np.asarray(info["lat"], dtype=np.float64)
        self.lon = np.asarray(info["lon"], dtype=np.float64)
        self.frame_shape = tuple(int(n) for n in info["frame_shape"])
        #: the mode's inclusive hour ranges (a month of the month form is the range of its hours)
        self.ranges = self.datasplit.get(mode, [])
        if not self.ranges:
            raise UserError(f"the data split names no months or hours for mode '{mode}'")
        #: months ``(year, month)`` holding hours of the mode, chronological
        self.months = [parse_month_key(key) for key in months_in(info, self.ranges)]
        self._open_months([info["months"][month_key(*m)] for m in self.months])
        if normalization is None:
            normalization = Normalization(hparams.get("normalization", "minmax"),
                                          self._statistics(info, normalization_months), self.variables)
        elif normalization.variables != self.variables:
            raise UserError(f"the normalisation is for variables {normalization.variables}, the data has "
                            f"{self.variables}")
        self.normalization = normalization
        # reused arrays of month frames and of batches (across passes: the epochs of a training run); memory: up to
        # MONTHS_IN_MEMORY + MONTHS_READ_AHEAD + 1 months (322 MB for 31-day months of the GMD shape)
        self._month_buffers = _BufferPool(keep=MONTHS_IN_MEMORY + MONTHS_READ_AHEAD + 1)
        self._batch_buffers = _BufferPool(keep=4)

    def _open_months(self, entries: list[dict]) -> None:
        """Check the month files of the mode (their ``dataset_info.json`` entries, in chronological order) and find
        their windows."""
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
        #: rows of each month file at which a window starts (it ends ``sequence_length - 1`` hours later, with no
        #: gap and inside one of the mode's ranges)
        self.window_starts = [window_rows(block_hours(blocks), self.ranges, self.sequence_length)
                              for blocks in self.blocks]
        self.windows_per_month = [len(starts) for starts in self.window_starts]
        #: valid times YYYYMMDDHH of the rows of each month file (checked against the file when it is read)
        self.valid_times = [block_times(blocks) for blocks in self.blocks]
        self.num_windows = int(sum(self.windows_per_month))
        if self.num_windows == 0:
            raise UserError(f"no window of {self.sequence_length} consecutive hours fits in the '{self.mode}' months "
                            f"{', '.join(month_key(*m) for m in self.months)}")

    @classmethod
    def load_split(cls, datasplit, input_dir=None, available=None) -> dict[str, list[HourRange]]:
        """Inclusive hour ranges per mode, from either form of the split (:func:`.datasplit.load_datasplit`); with
        ``input_dir`` (``PreprocessedData/<EXPNAME>`` or its ``tfrecords/``) every month named must have been
        written by step 2 and every hour of a range must be in its output. ``available``: the hours
        (``datetime64[h]``) to check against instead, where step 2 has not run yet (the runscript generator's
        chain mode)."""
        if input_dir is not None:
            available = available_hours(read_dataset_info(resolve_tfrecord_dir(input_dir)))
        return load_datasplit(datasplit, available=available)

    @classmethod
    def convert(cls, source, dest_dir=None, *, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                overwrite: bool = False, keep_netcdf: bool = False) -> Path:
        """Step 2 on ``PreprocessedData/<EXPNAME>`` (:func:`..data_preprocess.step2.run_step2`)."""
        return run_step2(source, dest_dir, sequence_length=sequence_length, overwrite=overwrite,
                         keep_netcdf=keep_netcdf)

    def input_files(self) -> list[Path]:
        return [Path(path) for path in self.files]

    def description_files(self) -> list[Path]:
        return [self.tfrecord_dir / DATASET_INFO, self.tfrecord_dir.parent / "statistics.json"]

    def _statistics(self, info: dict, normalization_months: str) -> dict[str, dict]:
        """The statistics that make the normalisation: of the train split's hours, or (``"all"``) of every month
        of the step-2 output."""
        if normalization_months == "all":
            return merge_stats([info["months"][key]["stats"] for key in sorted(info["months"])])
        if normalization_months != "train":
            raise UserError(f"normalization months {normalization_months!r}: expected train or all")
        if not self.datasplit.get("train"):
            raise UserError("the data split names no 'train' months or hours to compute the normalisation from")
        return training_statistics(self.tfrecord_dir, info, self.datasplit["train"])

    def pass_order(self, batch_size: int | None = None, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Every window of one pass in the order :meth:`batches` yields them: (position of its month in
        ``self.files`` ``[N]``, its first row in that file ``[N]``). See the module docstring for the order."""
        batch_size = self.resolve_batch_size(batch_size)
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
        released after their last window (:class:`_PassPlan`). An ``images`` array is reused for a later batch once
        the caller holds no reference to it (or to a view of it); keep the batch (or copy it) to keep its values."""
        batch_size = self.resolve_batch_size(batch_size)
        months, starts = self.pass_order(batch_size, epoch)
        batch_count = len(starts) // batch_size if drop_remainder else -(-len(starts) // batch_size)
        months = months[skip * batch_size:batch_count * batch_size]
        starts = starts[skip * batch_size:batch_count * batch_size]
        if not len(starts):
            return
        plan = _PassPlan.make(months, batch_size, len(self.files))
        with ThreadPoolExecutor(MONTHS_READ_AHEAD, thread_name_prefix="ambs-reader") as pool:
            reads, submitted = {}, 0
            for batch, (first, end) in enumerate(zip(plan.batch_firsts, plan.batch_ends)):
                while submitted < plan.submit_by[batch]:
                    reads[plan.needed[submitted]] = self._read_in_parts(pool, plan.needed[submitted])
                    submitted += 1
                images = self._batch_buffers.get((end - first, self.sequence_length, *self.frame_shape))
                t_start = self._cut_windows(images, first, plan.batch_segments(batch), starts, reads)
                for month in plan.released_after.get(batch, ()):
                    del reads[month]
                yield {"images": images, "t_start": t_start}
                del images

    def _read_in_parts(self, pool: ThreadPoolExecutor, month: int):
        """Submit the reading of month ``month`` (position in :attr:`files`) in parts of :data:`READ_PART_HOURS`
        hours (read in parallel; windows of the first part can be cut while the next ones are read): its frames
        ``[hours, H, W, C]`` and ``[(end row, future)]`` of the parts."""
        layout = self.layouts[month]
        # one buffer shape for months of every length, so that any released buffer fits the next month
        max_hours = max(other.hours for other in self.layouts)
        frames = self._month_buffers.get((max_hours, *self.frame_shape))[:layout.hours]
        # only the rows of the mode's windows (a range may take a few days of the month)
        starts = self.window_starts[month]
        first, end = int(starts[0]), int(starts[-1]) + self.sequence_length
        edges = [*range(first, end, READ_PART_HOURS), end]
        return frames, [(end, pool.submit(read_month, self.files[month], layout, self.frame_shape, self.normalization,
                                          self.valid_times[month], frames, (begin, end)))
                        for begin, end in zip(edges[:-1], edges[1:])]

    def _cut_windows(self, images: np.ndarray, first: int, segments, starts: np.ndarray, reads: dict) -> np.ndarray:
        """Copy the windows of one batch into ``images`` ``[B, T, H, W, C]`` (the pass's windows ``first`` to
        ``first + B``, as ``segments`` of :class:`_PassPlan`, cut from the months being read in ``reads``); return
        their ``t_start`` int64 ``[B]``."""
        length = self.sequence_length
        rows = images.reshape(-1, *self.frame_shape)
        t_start = np.empty(len(images), np.int64)
        for begin, stop, month in segments:
            month_frames, parts = reads[month]
            firsts = starts[begin:stop]
            rows_needed = int(firsts.max()) + length
            for part_end, part in parts:                     # wait for the parts holding the windows
                part.result()
                if part_end >= rows_needed:
                    break
            # mode "clip": with "raise" numpy would write through a temporary buffer
            np.take(month_frames, (firsts[:, None] + np.arange(length)).ravel(), axis=0,
                    out=rows[(begin - first) * length:(stop - first) * length], mode="clip")
            t_start[begin - first:stop - first] = self.valid_times[month][firsts]
        return t_start

    def make_dataset(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False):
        """:meth:`batches` as a ``tf.data.Dataset`` (tensors of the same batches), for code built on tf.data.
        Slower (``from_generator`` adds a cost per batch, benchmarks/bench_pipeline.py); AMBS itself uses
        :meth:`batches`."""
        import tensorflow as tf

        batch_size = self.resolve_batch_size(batch_size)
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
