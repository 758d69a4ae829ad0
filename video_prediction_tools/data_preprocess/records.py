"""The step-2 file contract: record format, file names, month keys, time codes and record checksums.

Step 2 writes, per month, ``sequence_Y_<YYYY>_M_<MM>.tfrecords`` (:func:`tfrecord_name`) holding one
``tf.train.Example`` per hour in time order (:func:`hour_example`): ``images`` = bytes of the float32 frame
``[lat, lon, channel]`` in C order, ``valid_time`` = int64 ``YYYYMMDDHH`` (:func:`datetime_to_yyyymmddhh`), values
physical (not normalised). Next to the month files, ``dataset_info.json`` (:data:`DATASET_INFO`) describes them;
months are keyed ``"YYYY-MM"`` (:func:`month_key`).

A TFRecord file is a sequence of records framed as: little-endian uint64 length, uint32 masked CRC32C of those 8
bytes, the data, uint32 masked CRC32C of the data (the masking rotates the CRC right by 15 bits and adds
0xa282ead8, modulo 2**32). :func:`record_checksum_error` checks one record's two checksums with the maintained
``google-crc32c`` package, so that a damaged file is refused instead of feeding wrong numbers to training.

Everything that reads or names these files (step 2, the reader ``datasets/era5.py``, postprocessing, the runscript
generator) takes the names and formats from here.

Example::

    from video_prediction_tools.data_preprocess import records
    records.tfrecord_name(2017, 1)                                  # 'sequence_Y_2017_M_01.tfrecords'
    records.parse_tfrecord_name("sequence_Y_2017_M_01.tfrecords")   # (2017, 1)
    records.datetime_to_yyyymmddhh(np.datetime64("2017-01-31T12"))  # array(2017013112)
    records.check_tfrecord_file("PreprocessedData/<EXPNAME>/tfrecords/sequence_Y_2017_M_01.tfrecords")
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import google_crc32c
import numpy as np

from ..utils.errors import UserError

#: ``format`` of dataset_info.json: one record per hour
RECORD_FORMAT = "ambs-hourly-1"
#: step 2's description of its output, next to the month files
DATASET_INFO = "dataset_info.json"
#: most hours a month file can hold (31 days)
MAX_HOURS_PER_MONTH = 744
TFRECORD_PATTERN = re.compile(r"^sequence_Y_(\d{4})_M_(\d{2})\.tfrecords$")

#: bytes before a record's data (uint64 length, uint32 masked CRC of the length) and after it (masked CRC of the data)
RECORD_HEADER_BYTES = 12
RECORD_FOOTER_BYTES = 4
_CRC_MASK_DELTA = 0xA282EAD8


def tfrecord_name(year: int, month: int) -> str:
    return f"sequence_Y_{year:04d}_M_{month:02d}.tfrecords"


def parse_tfrecord_name(name: str) -> tuple[int, int] | None:
    """``(year, month)`` of a step-2 month file name, None for any other name."""
    match = TFRECORD_PATTERN.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def tfrecord_months(tfrecord_dir: Path) -> set[tuple[int, int]]:
    """``(year, month)`` of the step-2 month files present in ``tfrecord_dir`` (empty if it does not exist)."""
    tfrecord_dir = Path(tfrecord_dir)
    if not tfrecord_dir.is_dir():
        return set()
    return {month for month in map(parse_tfrecord_name, (p.name for p in tfrecord_dir.iterdir())) if month}


def month_key(year: int, month: int) -> str:
    """``"YYYY-MM"``: the key of a month in dataset_info.json and statistics.json."""
    return f"{year:04d}-{month:02d}"


def parse_month_key(key: str) -> tuple[int, int]:
    return int(key[:4]), int(key[5:7])


# ---------------------------------------------------------------------------------------------------------------
# time codes: numpy datetime64 <-> integer YYYYMMDDHH

def datetime_to_yyyymmddhh(times) -> np.ndarray:
    """``datetime64`` array → int64 array ``YYYYMMDDHH`` (valid times on whole hours)."""
    times = np.asarray(times, dtype="datetime64[h]")
    years = times.astype("datetime64[Y]").astype(np.int64) + 1970
    months = times.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (times - times.astype("datetime64[M]")).astype("timedelta64[D]").astype(np.int64) + 1
    hours = (times - times.astype("datetime64[D]")).astype(np.int64)
    return (years * 1_000_000 + months * 10_000 + days * 100 + hours).astype(np.int64)


def yyyymmddhh_to_datetime(values) -> np.ndarray:
    """int ``YYYYMMDDHH`` array → ``datetime64[h]`` array."""
    values = np.asarray(values, dtype=np.int64)
    text = [f"{v // 1_000_000:04d}-{v // 10_000 % 100:02d}-{v // 100 % 100:02d}T{v % 100:02d}" for v in values.ravel()]
    return np.array(text, dtype="datetime64[h]").reshape(values.shape)


def contiguous_blocks(times: np.ndarray) -> list[tuple[int, int]]:
    """Split hourly ``datetime64`` times into runs without gaps: list of ``(first index, number of hours)``."""
    hours = np.asarray(times, dtype="datetime64[h]").astype(np.int64)
    breaks = np.flatnonzero(np.diff(hours) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(hours)]])
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


def month_blocks(valid_time: np.ndarray) -> list[list[int]]:
    """Gap-free runs of hours ``[[first YYYYMMDDHH, hours], ...]`` of a month's valid times (dataset_info.json)."""
    return [[int(valid_time[first]), hours]
            for first, hours in contiguous_blocks(yyyymmddhh_to_datetime(valid_time))]


# ---------------------------------------------------------------------------------------------------------------
# records

def record_features() -> dict:
    """The TFRecord feature spec of one hour (TensorFlow imported lazily: it is slow to import)."""
    import tensorflow as tf

    return {"images": tf.io.FixedLenFeature([], tf.string), "valid_time": tf.io.FixedLenFeature([], tf.int64)}


def hour_example(frame: np.ndarray, valid_time: int):
    """One ``tf.train.Example``: a float32 frame ``[H, W, C]`` as bytes and its valid time ``YYYYMMDDHH``."""
    import tensorflow as tf

    frame = np.ascontiguousarray(frame, dtype=np.float32)
    return tf.train.Example(features=tf.train.Features(feature={
        "images": tf.train.Feature(bytes_list=tf.train.BytesList(value=[frame.tobytes()])),
        "valid_time": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(valid_time)])),
    }))


def masked_crc32c(data) -> int:
    """The TFRecord checksum of ``data`` (bytes-like): CRC32C rotated right by 15 bits plus 0xa282ead8."""
    # google_crc32c takes bytes and numpy arrays, not memoryviews or bytearrays: view any of them as an array
    crc = google_crc32c.value(np.frombuffer(data, np.uint8))
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def record_checksum_error(header, data=None, footer=None) -> str | None:
    """What is wrong with one framed record (``header``: its 12 bytes before the data, ``data``, ``footer``: the
    4 bytes after), or None when its checksums hold; without ``data`` only the length's checksum is checked.
    Arguments are bytes-like (bytes, memoryview or uint8 numpy rows)."""
    if masked_crc32c(header[:8]) != struct.unpack("<I", bytes(header[8:12]))[0]:
        return "the CRC32C of its length does not match"
    if data is not None and masked_crc32c(data) != struct.unpack("<I", bytes(footer))[0]:
        return "the CRC32C of its data does not match"
    return None


def damaged(path, index: int, why: str) -> UserError:
    """The error for a record that fails its checks (the file is damaged, its numbers cannot be trusted)."""
    return UserError(f"{path}: record {index} is damaged ({why}); regenerate the file (rerun preprocessing of "
                     f"this month with --overwrite)")


def check_tfrecord_file(path) -> int:
    """Walk every record of a TFRecord file and check its framing and both checksums; return the number of
    records. :class:`UserError` naming the file and the record index for the first damaged record."""
    path = Path(path)
    try:
        content = memoryview(path.read_bytes())
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    offset, index = 0, 0
    while offset < len(content):
        header = content[offset:offset + RECORD_HEADER_BYTES]
        if len(header) < RECORD_HEADER_BYTES:
            raise damaged(path, index, "the file ends inside its header")
        why = record_checksum_error(header)
        if why:
            raise damaged(path, index, why)
        (length,) = struct.unpack("<Q", header[:8])
        data_end = offset + RECORD_HEADER_BYTES + length
        if data_end + RECORD_FOOTER_BYTES > len(content):
            raise damaged(path, index, "the file ends inside its data")
        why = record_checksum_error(header, content[offset + RECORD_HEADER_BYTES:data_end],
                                    content[data_end:data_end + RECORD_FOOTER_BYTES])
        if why:
            raise damaged(path, index, why)
        offset, index = data_end + RECORD_FOOTER_BYTES, index + 1
    return index


def read_month_records(path: Path, frame_shape) -> tuple[np.ndarray, np.ndarray]:
    """A month file read with TensorFlow's own parser (which checks the checksums too) → (float32
    ``[hours, H, W, C]``, int64 YYYYMMDDHH ``[hours]``)."""
    import tensorflow as tf

    features = record_features()
    images, valid_time = [], []
    try:
        for batch in tf.data.TFRecordDataset(str(path)).batch(MAX_HOURS_PER_MONTH):
            parsed = tf.io.parse_example(batch, features)
            images.append(tf.io.decode_raw(parsed["images"], tf.float32).numpy().reshape(-1, *frame_shape))
            valid_time.append(parsed["valid_time"].numpy())
    except tf.errors.OpError as err:
        raise UserError(f"{path}: cannot read TFRecord file ({err.message})") from None
    if not images:
        raise UserError(f"{path}: no records (rerun step 2 with --overwrite)")
    return np.concatenate(images), np.concatenate(valid_time)
