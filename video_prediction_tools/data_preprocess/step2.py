"""Preprocessing step 2: monthly netCDF fields → one TFRecord file per month, each hour stored once.

Input (written by step 1) in ``PreprocessedData/<EXPNAME>/``: ``metadata.json`` and, per month,
``<YYYY>/X_<MM>.nc`` (DataArray ``X``, dims ``(time, lat, lon, channel)``, float32, physical units) and
``<YYYY>/stat_<MM>.json``.

Output in ``dest_dir`` (default ``PreprocessedData/<EXPNAME>/tfrecords``):

* ``sequence_Y_<YYYY>_M_<MM>.tfrecords``: one ``tf.train.Example`` per hour, in time order, as
  :mod:`.records` defines it: ``images`` = bytes of the float32 frame ``[lat, lon, channel]`` in C order,
  ``valid_time`` = int64 ``YYYYMMDDHH``. Values are physical (not normalised): normalisation belongs to the reader,
  which takes it from the training months only. Windows are cut at read time, so every hour is on disk once and
  the files do not depend on the window length. One record per hour rather than one per gap-free block:
  ``benchmarks/bench_pipeline.py`` measured writing faster (large protobuf fields are slow to build).
* ``dataset_info.json``: ``{"format", "variables" (channel order), "frame_shape": [H, W, C], "lat", "lon",
  "months": {"YYYY-MM": {"file", "blocks": [[first YYYYMMDDHH, hours], ...], "stats": <stat_<MM>.json>}}}``:
  the reader needs nothing else (the window length comes from the training hyper-parameters).
* ``statistics.json``: merge of all monthly statistics (schema of the stat files) plus
  ``"common_stat": {"nhours": N, "months": ["2017-01", ...]}``, in ``source_dir`` when ``dest_dir`` lies inside it
  (the default), else in ``dest_dir`` (:func:`statistics_path`).

Step 2 writes into ``source_dir`` only what the layout puts there: with ``dest_dir`` outside it and ``keep_netcdf``
the step-1 directory is only read, so a read-only one is accepted (nothing in it is created, changed or opened for
writing).

Once a month's TFRecord file is complete, its ``X_<MM>.nc`` is deleted (unless ``keep_netcdf``) so that
``PreprocessedData`` holds each hour once (about the raw float32 volume). ``stat_<MM>.json`` files stay: they
list the months that exist. Next to each TFRecord file, ``sequence_Y_<YYYY>_M_<MM>.provenance.json`` records the
fingerprints of the ``X_<MM>.nc`` and ``stat_<MM>.json`` it was made from and the variables and frame size (see
:mod:`..utils.provenance`). A rerun keeps a month's TFRecord only while these are unchanged: a month whose netCDF
or statistics changed (step 1 rerun on corrected data) is rewritten, so records and statistics.json always agree;
if its netCDF is already deleted, the rerun refuses naming the month. With ``overwrite`` the months whose netCDF
is still there are rewritten.

``sequence_length`` (the original's ``--sequence_length``) does not fix the training window length (that is the
hyper-parameter ``sequence_length`` of the training run); step 2 checks that windows of that many consecutive hours
exist: none in any month is an error, months without any are named in a warning.

Example::

    from video_prediction_tools.data_preprocess.step2 import run_step2
    run_step2("PreprocessedData/era5-Y2017-2017M01to03-12x8-4500N0600E-2t_tcc_t_850", sequence_length=24)
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import provenance
from ..utils.conventions import DEFAULT_SEQUENCE_LENGTH
from ..utils.errors import UserError
from ..utils.io import atomic_path, check_writable_directory, read_json, remove_stale_temporaries, write_json
from ..utils.log import progress, setup_logging
from ..utils.parallel import on_root, rank, run_units, size
from .metadata import METADATA_FILE, read_metadata
from .records import (DATASET_INFO, RECORD_FORMAT, block_hours, datetime_to_yyyymmddhh, hour_example, month_blocks,
                      month_key, read_month_records, tfrecord_name, window_starts)
from .statistics import merge_stats

log = logging.getLogger("ambs")

_STAT_FILE = re.compile(r"^stat_(\d{2})\.json$")


# ---------------------------------------------------------------------------------------------------------------
# reading step 1 output

@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @property
    def key(self) -> str:
        return month_key(self.year, self.month)


def discover_months(source_dir: Path) -> list[Month]:
    """Months that step 1 finished (``<YYYY>/stat_<MM>.json``), in chronological order."""
    months = []
    for year_dir in sorted(p for p in source_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d{4}", p.name)):
        for stat in year_dir.iterdir():
            match = _STAT_FILE.match(stat.name)
            if match:
                months.append(Month(int(year_dir.name), int(match.group(1))))
    return sorted(months, key=lambda m: (m.year, m.month))


def read_month_netcdf(path: Path, month: "Month", variables: list[str], frame_size: tuple[int, int]):
    """Read ``X_<MM>.nc`` → (float32 array ``[time, lat, lon, channel]``, ``datetime64[h]`` times), checked."""
    import xarray as xr

    try:
        with xr.open_dataset(path) as dataset:
            if "X" not in dataset:
                raise UserError(f"{path}: no variable 'X' (expected the step-1 DataArray X(time, lat, lon, channel))")
            array = dataset["X"]
            if array.dims != ("time", "lat", "lon", "channel"):
                raise UserError(f"{path}: X has dims {array.dims}, expected ('time', 'lat', 'lon', 'channel')")
            data = np.ascontiguousarray(array.values, dtype=np.float32)
            times = array["time"].values
            channels = [str(c) for c in array["channel"].values]
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read netCDF file ({err})") from None
    if channels != variables:
        raise UserError(f"{path}: channels {channels} differ from the metadata.json variables {variables}")
    if data.shape[1:3] != frame_size:
        raise UserError(f"{path}: frame {data.shape[1:3]} (lat, lon) differs from metadata.json frame_size "
                        f"{frame_size}")
    if data.shape[0] == 0:
        raise UserError(f"{path}: no time steps")
    if not np.isfinite(data).all():
        raise UserError(f"{path}: contains NaN or infinite values")
    times = np.asarray(times, dtype="datetime64[ns]")
    if (times != times.astype("datetime64[h]")).any():
        raise UserError(f"{path}: valid times must be whole hours")
    times = times.astype("datetime64[h]")
    if (np.diff(times.astype(np.int64)) <= 0).any():
        raise UserError(f"{path}: times are not strictly increasing")
    outside = times.astype("datetime64[M]") != np.datetime64(f"{month.year:04d}-{month.month:02d}", "M")
    if outside.any():
        raise UserError(f"{path}: time {times[outside][0]} lies outside {month.key}")
    return data, times


# ---------------------------------------------------------------------------------------------------------------
# writing

def write_month_tfrecord(path: Path, data: np.ndarray, times: np.ndarray) -> list[list[int]]:
    """Write one month ``[hours, H, W, C]`` atomically, one record per hour; return its gap-free blocks."""
    import tensorflow as tf

    valid_time = datetime_to_yyyymmddhh(times)
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for frame, time in zip(data, valid_time):
                writer.write(hour_example(frame, time).SerializeToString(deterministic=True))
    return month_blocks(valid_time)


@dataclass
class Step2Job:
    source_dir: Path
    dest_dir: Path
    variables: list[str]
    frame_size: tuple[int, int]
    overwrite: bool
    keep_netcdf: bool

    def process(self, month: Month) -> dict:
        """Convert one month (or reuse its TFRecord); return its entry of dataset_info.json ``months``."""
        year_dir = self.source_dir / f"{month.year:04d}"
        netcdf = year_dir / f"X_{month.month:02d}.nc"
        stat_path = year_dir / f"stat_{month.month:02d}.json"
        stats = read_json(stat_path, what="monthly statistics")
        target = self.dest_dir / tfrecord_name(month.year, month.month)
        # the record lists X_<MM>.nc and stat_<MM>.json; once X_<MM>.nc is deleted the statistics must still match
        record = provenance.record_path(target)
        options = {"format": RECORD_FORMAT, "variables": self.variables, "frame_size": list(self.frame_size)}
        check = provenance.check(record, [path for path in (netcdf, stat_path) if path.exists()],
                                 base=self.source_dir, options=options, outputs=[target], may_vanish=[netcdf])
        if not netcdf.exists():
            if not target.exists():
                raise UserError(f"{netcdf} is missing and {target} does not exist: rerun step 1 for {month.key}")
            if check.reason is not None:
                raise UserError(f"{month.key}: {target.name} is out of date ({check.reason}) and {netcdf} is gone: "
                                f"rerun step 1 with --overwrite for {month.key}")
            log.info("%s: %s is up to date, kept", month.key, target.name)
            blocks = month_blocks(read_month_records(target, (*self.frame_size, len(self.variables)))[1])
        elif check.skip(f"{month.key} ({target.name})", self.overwrite):
            blocks = month_blocks(read_month_records(target, (*self.frame_size, len(self.variables)))[1])
        else:
            provenance.invalidate(record)
            data, times = read_month_netcdf(netcdf, month, self.variables, self.frame_size)
            blocks = write_month_tfrecord(target, data, times)
            provenance.write(record, month.key, check.fingerprints, options)
            log.info("%s: wrote %s (%d hours in %d block(s))", month.key, target.name, len(times), len(blocks))
        if netcdf.exists() and not self.keep_netcdf:
            netcdf.unlink()
            log.info("%s: removed %s (its hours are in %s)", month.key, netcdf.name, target.name)
        return {"file": target.name, "blocks": blocks, "stats": stats}


def check_windows_fit(sequence_length: int, months: list[Month], entries: list[dict]) -> None:
    """Windows of ``sequence_length`` consecutive hours must fit into some month (a window never crosses a gap nor
    leaves its month): none anywhere is a UserError; months without any are named in a warning."""
    longest = [max(hours for _, hours in entry["blocks"]) for entry in entries]
    without = [month.key for month, entry in zip(months, entries)
               if not len(window_starts(block_hours(entry["blocks"]), sequence_length))]
    if len(without) == len(months):
        best = int(np.argmax(longest))
        raise UserError(f"--sequence_length {sequence_length}: no month holds that many consecutive hours (the "
                        f"longest gap-free span is {longest[best]} hours, in {months[best].key}); no window of "
                        f"that length could be trained on")
    if without:
        log.warning("--sequence_length %d: no window of that length fits into %d month(s): %s", sequence_length,
                    len(without), ", ".join(without))


def default_dest_dir(source_dir: Path) -> Path:
    return source_dir / "tfrecords"


def statistics_path(source_dir: Path, dest_dir: Path) -> Path:
    """Where ``statistics.json`` goes: the step-1 directory when the TFRecords go under it, else beside the
    TFRecords (a step-1 directory that is only read must not need write permission)."""
    inside = dest_dir.resolve().is_relative_to(source_dir.resolve())
    return (source_dir if inside else dest_dir) / "statistics.json"


def run_step2(source_dir, dest_dir=None, sequence_length: int = DEFAULT_SEQUENCE_LENGTH, overwrite: bool = False,
              keep_netcdf: bool = False) -> Path:
    """Run step 2 on ``PreprocessedData/<EXPNAME>`` (one process or MPI over months); return ``dest_dir``.
    ``sequence_length``: hours of the windows that must fit into the data (checked, not recorded)."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise UserError(f"--source_dir {source_dir}: directory does not exist")
    if sequence_length < 2:
        raise UserError(f"--sequence_length {sequence_length}: expected an integer >= 2")
    metadata_path = source_dir / METADATA_FILE
    metadata = read_metadata(source_dir)
    variables = metadata["variable_list"]
    try:
        frame_size = (int(metadata["frame_size"]["ny"]), int(metadata["frame_size"]["nx"]))
        lat, lon = list(metadata["coordinates"]["lat"]), list(metadata["coordinates"]["lon"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{metadata_path}: expected 'frame_size' {{nx, ny}} and 'coordinates' {{lat, lon}}") from None
    months = discover_months(source_dir)
    if not months:
        raise UserError(f"--source_dir {source_dir}: no <YYYY>/stat_<MM>.json found (run step 1 first)")
    dest_dir = Path(dest_dir) if dest_dir else default_dest_dir(source_dir)
    statistics_file = statistics_path(source_dir, dest_dir)
    if statistics_file.parent == source_dir or not keep_netcdf:
        # source_dir receives statistics.json or loses the converted netCDF files
        check_writable_directory(source_dir, "--source_dir")
    check_writable_directory(dest_dir, "--dest_dir")

    def prepare_dest_dir():
        dest_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(dest_dir)

    on_root(prepare_dest_dir)
    setup_logging(dest_dir / "preprocess_step2.log")
    log.info("step 2: %d month(s) from %s to %s", len(months), source_dir, dest_dir)

    job = Step2Job(source_dir, dest_dir, variables, frame_size, overwrite, keep_netcdf)
    bar = progress(None, desc="step 2 months", total=len(range(rank(), len(months), size())), unit="month")

    def process_and_count(month: Month) -> dict:
        entry = job.process(month)
        bar.update(1)
        return entry

    entries = run_units(months, process_and_count, label=lambda m: m.key)
    bar.close()

    def write_summaries():
        check_windows_fit(sequence_length, months, entries)
        merged = merge_stats([entry["stats"] for entry in entries])
        merged["common_stat"] = {"nhours": int(sum(hours for e in entries for _, hours in e["blocks"])),
                                 "months": [m.key for m in months]}
        write_json(statistics_file, merged)
        write_json(dest_dir / DATASET_INFO, {
            "format": RECORD_FORMAT, "variables": variables,
            "frame_shape": [frame_size[0], frame_size[1], len(variables)], "lat": lat, "lon": lon,
            "months": {m.key: entry for m, entry in zip(months, entries)}})

    on_root(write_summaries)
    log.info("step 2 done: %s", dest_dir / DATASET_INFO)
    return dest_dir
