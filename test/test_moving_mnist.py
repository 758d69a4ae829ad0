"""Moving MNIST: conversion of a generated mnist_test_seq.npy and the reader with index-range splits."""
import json
import shutil

import numpy as np
import pytest

from fixtures.common import assert_user_error, run_module
from video_prediction_tools.datasets.moving_mnist import MovingMnist, convert_moving_mnist
from video_prediction_tools.utils.errors import UserError

MODULE = "video_prediction_tools.main_scripts.main_preprocess_data_step2"
SPLIT = {"train": {"index1": [0, 3], "index2": [8, 9]}, "val": {"index1": [4, 5]}, "test": {"index1": [6, 7]}}


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """A standard-layout file: 20 frames x 10 sequences x 64 x 64 uint8, converted through the step-2 CLI."""
    root = tmp_path_factory.mktemp("mnist")
    raw = np.random.default_rng(7).integers(0, 256, size=(20, 10, 64, 64), dtype=np.uint8)
    raw[0, 0, 0, 0], raw[0, 0, 0, 1] = 0, 255
    np.save(root / "mnist_test_seq.npy", raw)
    result = run_module(MODULE, "--dataset", "moving_mnist", "--source_dir", root / "mnist_test_seq.npy",
                        "--dest_dir", root / "tfrecords")
    assert result.returncode == 0, result.stderr
    return root, raw


def collect(dataset, batch_size=3, epoch=0):
    images, starts = [], []
    for batch in dataset.batches(batch_size, epoch=epoch):
        images.append(batch["images"])
        starts.append(batch["t_start"])
    return np.concatenate(images), np.concatenate(starts)


def test_every_group_of_the_split_is_read_and_values_are_scaled(mnist):
    root, raw = mnist
    info = json.loads((root / "tfrecords" / "dataset_info.json").read_text())
    assert info["num_sequences"] == 10 and info["sequence_length"] == 20 and info["frame_shape"] == [64, 64, 1]
    for mode, indices in (("train", [0, 1, 2, 3, 8, 9]), ("val", [4, 5]), ("test", [6, 7])):
        dataset = MovingMnist(root, SPLIT, mode)
        images, starts = collect(dataset)
        assert dataset.num_windows == len(indices)
        assert sorted(starts.tolist()) == indices              # both train groups, unlike the original
        assert images.shape[1:] == (20, 64, 64, 1) and images.dtype == np.float32
        for window, index in zip(images, starts):
            np.testing.assert_allclose(window[..., 0], raw[:, index] / 255.0, rtol=0, atol=1e-7)
        if mode != "train":
            assert starts.tolist() == indices


def test_shorter_sequences_order_and_normalisation(mnist):
    root, raw = mnist
    dataset = MovingMnist(root / "tfrecords", SPLIT, "train", hparams={"sequence_length": 10}, seed=5)
    images, starts = collect(dataset, batch_size=4)
    assert images.shape[1] == 10
    np.testing.assert_allclose(images[0, :, :, :, 0], raw[:10, starts[0]] / 255.0, atol=1e-7)
    assert starts.tolist() == collect(dataset, batch_size=4)[1].tolist()
    orders = {tuple(collect(MovingMnist(root, SPLIT, "train", seed=seed))[1].tolist()) for seed in range(6)}
    assert len(orders) > 1
    assert dataset.variables == ["intensity"] and dataset.frame_shape == (64, 64, 1)
    z = MovingMnist(root, SPLIT, "test", hparams={"normalization": "znorm"})
    values = raw.astype(np.float64)
    expected = (raw[:, 6] - values.mean()) / values.std()
    np.testing.assert_allclose(collect(z)[0][0, ..., 0], expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_bad_inputs(mnist, tmp_path):
    root, _ = mnist
    with pytest.raises(UserError, match="beyond the 10 sequences"):
        MovingMnist(root, {"train": {"index1": [0, 10]}}, "train")
    with pytest.raises(UserError, match="overlaps"):
        MovingMnist(root, {"train": {"index1": [0, 5]}, "val": {"index1": [5, 6]}}, "train")
    with pytest.raises(UserError, match="sequence_length"):
        MovingMnist(root, SPLIT, "train", hparams={"sequence_length": 21})
    np.save(tmp_path / "mnist_test_seq.npy", np.zeros((20, 2, 8, 8), dtype=np.float32))
    assert_user_error(run_module(MODULE, "--dataset", "moving_mnist", "--source_dir", tmp_path), "uint8")
    assert_user_error(run_module(MODULE, "--dataset", "moving_mnist", "--source_dir", tmp_path / "none"),
                      "mnist_test_seq.npy")
    assert not (tmp_path / "tfrecords").exists()
    with pytest.raises(UserError, match="convert"):
        MovingMnist(tmp_path, SPLIT, "train")


def test_rerun_skips_unless_overwrite(mnist, tmp_path):
    root = tmp_path / "mnist"
    shutil.copytree(mnist[0], root)  # a copy: the overwrite below rewrites the converted file
    target = root / "tfrecords" / "moving_mnist.tfrecords"
    stamp = target.stat().st_mtime_ns
    convert_moving_mnist(root, root / "tfrecords")
    assert target.stat().st_mtime_ns == stamp
    convert_moving_mnist(root, root / "tfrecords", overwrite=True)
    assert target.stat().st_mtime_ns != stamp


def test_the_reader_names_its_files_and_checks_its_split_against_the_conversion(mnist):
    root, _ = mnist
    dataset = MovingMnist(root, SPLIT, "train")
    assert dataset.input_files() == [root / "tfrecords" / "moving_mnist.tfrecords"]
    assert dataset.description_files() == [root / "tfrecords" / "dataset_info.json", root / "statistics.json"]
    assert MovingMnist.load_split(SPLIT, root) == {"train": [(0, 3), (8, 9)], "val": [(4, 5)], "test": [(6, 7)]}
    assert MovingMnist.load_split({"train": {"index1": [0, 10]}}) == {"train": [(0, 10)]}   # no data to check
    with pytest.raises(UserError, match="index 10 beyond the 10 sequences"):
        MovingMnist.load_split({"train": {"index1": [0, 10]}}, root)
    with pytest.raises(UserError, match="normalization months 'all'"):
        MovingMnist(root, SPLIT, "train", normalization_months="all")
