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

Because every record of a month file has the same size and field order, the file is a byte matrix
``[hours, record_bytes]`` (:class:`RecordLayout`, found from the first record by :func:`month_file_layout` with a
protobuf parser of its own, :func:`example_features`: no TensorFlow needed to read a month).

Windows of ``sequence_length`` consecutive hours never cross a gap nor leave their month: :func:`window_starts`
gives the rows where they start in a month's gap-free blocks, the one count of windows that the reader and the
runscript generator share.

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
from dataclasses import dataclass
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


def block_hours(blocks) -> np.ndarray:
    """Valid times (``datetime64[h]``, file order) of the hours of a month's gap-free ``blocks`` ``[[first
    YYYYMMDDHH, hours], ...]`` (as ``dataset_info.json`` records them)."""
    return np.concatenate([np.zeros(0, "datetime64[h]")]
                          + [yyyymmddhh_to_datetime(first) + np.arange(hours) for first, hours in blocks])


def window_starts(hours, sequence_length: int, labels=None) -> np.ndarray:
    """Rows of a month file (int64, ascending) at which a window of ``sequence_length`` consecutive hours starts,
    given the file's valid times ``hours`` (``datetime64[h]``, ascending): a window crosses no gap in time and,
    with ``labels`` (an int per hour, e.g. the data-split range it belongs to), no change of label; an hour
    labelled -1 starts no window. The one count of windows: step 2, the readers and the generator use it."""
    hours = np.asarray(hours, dtype="datetime64[h]")
    labels = np.zeros(len(hours), np.int64) if labels is None else np.asarray(labels, np.int64)
    # a run: consecutive hours of one label; a window must start and end in the same run
    breaks = np.concatenate([[True], (np.diff(hours.astype(np.int64)) != 1) | (np.diff(labels) != 0)])
    run = np.cumsum(breaks)
    starts = np.arange(max(len(hours) - sequence_length + 1, 0), dtype=np.int64)
    return starts[(labels[starts] >= 0) & (run[starts] == run[starts + sequence_length - 1])]


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


# ---------------------------------------------------------------------------------------------------------------
# the protobuf fields of a record, read without TensorFlow, and the byte layout of a month file

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


def varint_values(columns: np.ndarray) -> np.ndarray:
    """int64 values ``[rows]`` of the protobuf varints ``columns`` (uint8 ``[rows, n]``), each spanning all ``n``
    bytes (the valid times of a month file: :attr:`RecordLayout.time_bytes` bytes each)."""
    return ((columns.astype(np.int64) & 0x7F) << (7 * np.arange(columns.shape[1]))).sum(axis=1)


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
