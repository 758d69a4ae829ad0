"""The step-2 file contract: names, month keys, time codes, and the TFRecord checksums checked against
TensorFlow's own writer and reader."""
import struct

import numpy as np
import pytest
import tensorflow as tf

from video_prediction_tools.data_preprocess import records
from video_prediction_tools.utils.errors import UserError


def test_names_and_month_keys(tmp_path):
    assert records.tfrecord_name(2017, 1) == "sequence_Y_2017_M_01.tfrecords"
    assert records.parse_tfrecord_name("sequence_Y_2017_M_01.tfrecords") == (2017, 1)
    for other in ("sequence_Y_2017_M_1.tfrecords", "sequence_Y_2017_M_01.tfrecords.tmp", "dataset_info.json"):
        assert records.parse_tfrecord_name(other) is None
    assert records.month_key(2017, 3) == "2017-03" and records.parse_month_key("2017-03") == (2017, 3)
    assert records.tfrecord_months(tmp_path / "absent") == set()
    for name in ("sequence_Y_2017_M_01.tfrecords", "sequence_Y_2018_M_12.tfrecords", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert records.tfrecord_months(tmp_path) == {(2017, 1), (2018, 12)}


def test_time_codes_and_blocks():
    times = np.array(["2016-02-29T23", "2019-12-31T00", "2017-01-01T05"], dtype="datetime64[h]")
    assert records.datetime_to_yyyymmddhh(times).tolist() == [2016022923, 2019123100, 2017010105]
    np.testing.assert_array_equal(records.yyyymmddhh_to_datetime([2016022923, 2019123100, 2017010105]), times)
    hours = np.array(["2017-01-01T00", "2017-01-01T01", "2017-01-01T05", "2017-01-01T06"], dtype="datetime64[h]")
    assert records.contiguous_blocks(hours) == [(0, 2), (2, 2)]
    assert records.month_blocks(records.datetime_to_yyyymmddhh(hours)) == [[2017010100, 2], [2017010105, 2]]


def test_masked_crc_matches_the_published_crc32c_check_value():
    # CRC-32C of "123456789" is 0xE3069283 (the check value of the Castagnoli polynomial); masked by hand
    crc = 0xE3069283
    assert records.masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.fixture
def written_by_tensorflow(tmp_path):
    """Three records of different sizes written by tf.io.TFRecordWriter: (path, payloads)."""
    path = tmp_path / "tf.tfrecords"
    payloads = [b"first record", bytes(range(256)) * 3, records.hour_example(
        np.arange(24, dtype=np.float32).reshape(2, 4, 3), 2017010105).SerializeToString(deterministic=True)]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    return path, payloads


def test_files_of_tensorflows_writer_pass_the_check(written_by_tensorflow):
    path, payloads = written_by_tensorflow
    assert records.check_tfrecord_file(path) == 3
    assert list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()) == payloads


def _offsets(payloads):
    """Byte offset of each record in the file."""
    sizes = [records.RECORD_HEADER_BYTES + len(p) + records.RECORD_FOOTER_BYTES for p in payloads]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()


@pytest.mark.parametrize("where, why", [
    (lambda start, size: start + 1, "CRC32C of its length"),                    # the length
    (lambda start, size: start + 9, "CRC32C of its length"),                    # the length's checksum
    (lambda start, size: start + 12 + size // 2, "CRC32C of its data"),          # the data
    (lambda start, size: start + 12 + size + 3, "CRC32C of its data"),           # the data's checksum
])
def test_a_flipped_byte_is_refused_by_tensorflow_and_by_the_check(written_by_tensorflow, where, why):
    path, payloads = written_by_tensorflow
    content = bytearray(path.read_bytes())
    offset = where(_offsets(payloads)[1], len(payloads[1]))
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))
    with pytest.raises(tf.errors.DataLossError):        # TensorFlow's own reader refuses it too
        list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    with pytest.raises(UserError, match=f"{path.name}: record 1 is damaged \\(the {why} does not match\\)"):
        records.check_tfrecord_file(path)
    # the single-record check used by the reader says the same
    start, size = _offsets(payloads)[1], len(payloads[1])
    header, data = content[start:start + 12], content[start + 12:start + 12 + size]
    assert why in records.record_checksum_error(header, data, content[start + 12 + size:start + 16 + size])


def test_truncated_file_is_refused(written_by_tensorflow):
    path, payloads = written_by_tensorflow
    content = path.read_bytes()
    path.write_bytes(content[:-2])
    with pytest.raises(UserError, match="record 2 is damaged \\(the file ends inside its data\\)"):
        records.check_tfrecord_file(path)
    (length,) = struct.unpack("<Q", content[:8])
    assert length == len(payloads[0])
