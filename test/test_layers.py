"""Tests of the model building blocks against hand computations in numpy."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from video_prediction_tools.models import layers


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("legacy_gates", [False, True])
def test_convlstm_cell_matches_hand_computation(legacy_gates):
    rng = np.random.default_rng(1)
    batch, height, width, channels, filters = 2, 3, 4, 2, 3
    cell = layers.ConvLSTMCell(filters, kernel_size=1, legacy_gates=legacy_gates)
    x = rng.normal(size=(batch, height, width, channels)).astype("float32")
    c = rng.normal(size=(batch, height, width, filters)).astype("float32")
    h = rng.normal(size=(batch, height, width, filters)).astype("float32")
    cell(x, (c, h))  # build
    kernel = rng.normal(size=(1, 1, channels + filters, 4 * filters)).astype("float32")
    bias = rng.normal(size=(4 * filters,)).astype("float32")
    # the cell's two convolutions are the one over concat([x, h]) split along the input channels
    cell.input_gates.set_weights([kernel[:, :, :channels], bias])
    cell.recurrent_gates.set_weights([kernel[:, :, channels:]])
    new_h, (new_c, state_h) = cell(x, (c, h))

    # a 1x1 convolution is a matrix product over the channels
    z = np.concatenate([x, h], axis=-1) @ kernel[0, 0] + bias
    if legacy_gates:
        z = sigmoid(z)
    i, j, f, o = np.split(z, 4, axis=-1)
    expected_c = c * sigmoid(f + 1.0) + sigmoid(i) * np.tanh(j)
    expected_h = np.tanh(expected_c) * sigmoid(o)
    np.testing.assert_allclose(new_c, expected_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_h, expected_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_h, state_h)


def test_convlstm_cell_without_state_equals_zero_state():
    cell = layers.ConvLSTMCell(4, kernel_size=3)
    frame = tf.random.stateless_normal((2, 5, 6, 3), seed=(3, 4))
    cell(frame, None)  # build
    # non-zero biases, so that every gate contributes
    cell.input_gates.bias.assign(tf.linspace(-1.0, 1.0, 16))
    with_zeros, (c_zeros, _) = cell(frame, cell.zero_state(frame))
    without, (c_without, _) = cell(frame, None)
    np.testing.assert_allclose(without, with_zeros, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c_without, c_zeros, rtol=1e-6, atol=1e-7)


def test_convlstm_cell_zero_state_and_parameter_count():
    cell = layers.ConvLSTMCell(64, kernel_size=5)
    frame = tf.zeros((2, 7, 9, 3))
    c, h = cell.zero_state(frame)
    assert c.shape == h.shape == (2, 7, 9, 64)
    assert float(tf.reduce_sum(tf.abs(c))) == 0.0
    cell(frame, (c, h))
    assert sum(int(np.prod(v.shape)) for v in cell.weights) == 25 * 67 * 256 + 256


@pytest.mark.parametrize("rank, kernel_shape", [(3, (2, 3, 3, 2, 5)), (2, (3, 3, 4, 6))])
def test_spectral_norm_conv_kernel_has_unit_spectral_norm(rank, kernel_shape):
    keras.utils.set_random_seed(0)  # the initial kernel, hence the convergence rate, must not depend on test order
    conv = layers.SpectralNormConv(kernel_shape[-1], kernel_shape[:rank], rank=rank, power_iterations=1)
    inputs = tf.random.stateless_normal((1, *([6] * rank), kernel_shape[-2]), seed=(0, 1))
    conv(inputs)
    # power iteration converges over training calls, as (sigma_2 / sigma_1) ** (2 * calls)
    for _ in range(300):
        conv(inputs, training=True)
    normalized = conv.normalized_kernel().numpy().reshape(-1, kernel_shape[-1])
    raw = conv.kernel.numpy().reshape(-1, kernel_shape[-1])
    assert np.linalg.svd(normalized, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)
    # the output is the plain convolution with the normalised kernel plus the bias
    expected = tf.nn.convolution(inputs, normalized.reshape(kernel_shape), padding="SAME") + conv.bias
    np.testing.assert_allclose(conv(inputs), expected, rtol=1e-4, atol=1e-5)
    sigma = np.linalg.svd(raw, compute_uv=False)[0]
    np.testing.assert_allclose(normalized, raw / sigma, rtol=1e-3)


def test_spectral_norm_gradient_flows_through_sigma():
    conv = layers.SpectralNormConv(3, 3, rank=2)
    inputs = tf.random.stateless_normal((1, 5, 5, 2), seed=(2, 3))
    conv(inputs)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(conv.normalized_kernel())
    gradient = tape.gradient(loss, conv.kernel).numpy()
    # d(sum(W/σ))/dW ≠ 1/σ everywhere once σ depends on W
    assert np.ptp(gradient) > 1e-4


def test_patch_discriminator_output_is_one_logit_per_patch():
    discriminator = layers.PatchDiscriminator3D(base_filters=2)
    logits = discriminator(tf.zeros((2, 12, 56, 92, 3)), training=True)
    assert logits.shape == (2, 1, 4, 6, 1)  # 12x56x92 halved four times (rounded up), as the original


def test_pad_to_multiple_mirrors_edges_and_crop_restores():
    frames = tf.reshape(tf.range(2 * 5 * 6 * 1, dtype=tf.float32), (2, 5, 6, 1))
    padded = layers.pad_to_multiple(frames, 4)
    assert padded.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(padded[:, 5, :6], frames[:, 4])  # first padded row mirrors the last row
    np.testing.assert_array_equal(padded[:, 6, :6], frames[:, 3])
    np.testing.assert_array_equal(padded[:, :5, 6], frames[:, :, 5])
    np.testing.assert_array_equal(layers.crop_frames(padded, 5, 6), frames)
    assert layers.pad_to_multiple(frames, 1) is frames
    tiny = layers.pad_to_multiple(tf.ones((1, 2, 3, 1)), 8)  # mirror longer than the grid → zeros
    assert tiny.shape == (1, 8, 8, 1) and float(tf.reduce_sum(tiny)) == 6.0


def test_unpool2x_places_values_top_left():
    x = tf.constant(np.arange(1, 13, dtype="float32").reshape(1, 2, 3, 2))
    result = layers.unpool2x(x).numpy()
    expected = np.zeros((1, 4, 6, 2), "float32")
    expected[:, ::2, ::2] = x.numpy()
    np.testing.assert_array_equal(result, expected)


def test_reconstruction_losses_match_numpy():
    rng = np.random.default_rng(5)
    target = rng.random((2, 3, 4, 1)).astype("float32")
    prediction = rng.random((2, 3, 4, 1)).astype("float32")
    assert float(layers.reconstruction_loss("mse", target, prediction)) == pytest.approx(
        np.mean((target - prediction) ** 2), rel=1e-6)
    expected_ce = -np.mean(target * np.log(prediction) + (1 - target) * np.log(1 - prediction))
    assert float(layers.reconstruction_loss("cross_entropy", target, prediction)) == pytest.approx(expected_ce,
                                                                                                    rel=1e-5)


def test_loss_fun_rmse_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match='"mse"'):
        layers.check_loss_fun("rmse")
    with pytest.raises(ValueError, match="mse, cross_entropy"):
        layers.check_loss_fun("l1")


def test_output_activation_matches_normalisation():
    assert layers.output_activation("minmax") == "sigmoid"
    assert layers.output_activation("znorm") is None
    with pytest.raises(ValueError, match="znorm"):
        layers.output_activation("other")
