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


def test_example_features_reads_what_tensorflow_parses():
    """The reader finds a month file's layout without TensorFlow: its protobuf parsing gives the values
    TensorFlow's own parser gives (bytes, packed and unpacked int64, floats left as bytes), and refuses garbage."""
    frame = np.random.default_rng(3).standard_normal((8, 12, 3)).astype(np.float32)
    payload = records.hour_example(frame, 2017030123).SerializeToString()
    parsed = tf.train.Example.FromString(payload).features.feature
    features = records.example_features(payload)
    assert sorted(features) == sorted(parsed) == ["images", "valid_time"]
    assert features["images"] == {1: list(parsed["images"].bytes_list.value)} and features["images"][1][0] == \
        frame.tobytes()
    assert features["valid_time"] == {3: list(parsed["valid_time"].int64_list.value)} == {3: [2017030123]}
    other = tf.train.Example(features=tf.train.Features(feature={
        "counts": tf.train.Feature(int64_list=tf.train.Int64List(value=[0, 300, 2 ** 40])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"bc"]))}))
    features = records.example_features(other.SerializeToString())
    assert features == {"counts": {3: [0, 300, 2 ** 40]}, "name": {1: [b"a", b"bc"]}}
    unpacked = bytes([0x0A, 0x0B, 0x0A, 0x09, 0x0A, 0x01, ord("n"), 0x12, 0x04, 0x1A, 0x02, 0x08, 0x07])
    assert tf.train.Example.FromString(unpacked).features.feature["n"].int64_list.value == [7]
    assert records.example_features(unpacked) == {"n": {3: [7]}}
    for garbage in (payload[:-3], b"\xff\xff", payload[:40]):
        with pytest.raises(ValueError):
            records.example_features(garbage)


def test_window_starts_stay_inside_gap_free_blocks():
    blocks = [[2017020100, 5], [2017020108, 3], [2017020200, 2]]      # rows 0-4, 5-7, 8-9 of the month file
    hours = records.block_hours(blocks)
    assert [str(hour) for hour in hours[[0, 4, 5, 7, 8, 9]]] == ["2017-02-01T00", "2017-02-01T04", "2017-02-01T08",
                                                                 "2017-02-01T10", "2017-02-02T00", "2017-02-02T01"]
    assert records.window_starts(hours, 3).tolist() == [0, 1, 2, 5]
    assert records.window_starts(hours, 1).tolist() == list(range(10))
    assert records.window_starts(hours, 6).tolist() == []
    empty = records.window_starts(records.block_hours([]), 3)
    assert empty.dtype == np.int64 and len(empty) == 0
    # labels (e.g. data-split ranges) cut runs too; hours labelled -1 start nothing
    labels = [0, 0, 0, 1, 1, 2, 2, 2, -1, -1]
    assert records.window_starts(hours, 2, labels).tolist() == [0, 1, 3, 5, 6]


def test_varint_values_decode_the_valid_times_of_tensorflows_records():
    times = [2017030123, 2019123100, 1900010100]
    # one int64 feature per example, so the payload ends with the time's 5-byte varint whatever order protobuf
    # writes a map in (an example of several features has no fixed field order)
    payloads = [tf.train.Example(features=tf.train.Features(feature={"valid_time": tf.train.Feature(
        int64_list=tf.train.Int64List(value=[time]))})).SerializeToString() for time in times]
    columns = np.array([list(payload[-5:]) for payload in payloads], np.uint8)
    assert records.varint_values(columns).tolist() == times
