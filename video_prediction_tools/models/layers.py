"""Reusable Keras 3 building blocks of the AMBS models (TensorFlow backend).

* :class:`ConvLSTMCell`: one ConvLSTM step, the four gates from the sum of one convolution of ``x`` and one of
  ``h`` (``4 * filters`` output channels each, gate order i, j, f, o as in the original ``BasicConvLSTMCell``,
  equal to its one convolution over ``concat([x, h])``); standard
  gating by default, the original double-sigmoid gating with ``legacy_gates=True``.
* :class:`SpectralNormConv`: a convolution of any rank (1-3) whose kernel is divided by its largest singular value
  (power iteration, Miyato et al. 2018); the gradient flows through the normalisation.
* :class:`PatchDiscriminator3D`: the 3-D conv patch discriminator of the original convLSTM_gan.
* :func:`pad_to_multiple` / :func:`crop_frames`: let encoder-decoder models with ``n`` halvings run on grids whose
  sides are not multiples of ``2**n``.
* :func:`reconstruction_loss`: the losses selected by the ``loss_fun`` hyper-parameter.

Tensors are channel-last: frames ``[B, H, W, C]``, sequences ``[B, T, H, W, C]``.

Example::

    cell = ConvLSTMCell(filters=64, kernel_size=5)
    state = cell.zero_state(frame)                 # (c, h), each [B, H, W, 64]
    h, state = cell(frame, state)                  # h: [B, H, W, 64]
"""
from __future__ import annotations

import keras
import tensorflow as tf

from .registry import HPARAM_CHOICES

#: values accepted by the ``loss_fun`` hyper-parameter
LOSS_FUNCTIONS = HPARAM_CHOICES["loss_fun"]


def output_activation(normalization: str) -> str | None:
    """Activation of a model's last layer so that its range matches the normalised data: ``sigmoid`` for
    min-max normalised data in [0, 1] (as the original models), linear for z-scores."""
    if normalization == "minmax":
        return "sigmoid"
    if normalization == "znorm":
        return None
    raise ValueError(f"normalization {normalization!r}: expected 'minmax' or 'znorm'")


def check_loss_fun(loss_fun: str) -> str:
    """Validate ``loss_fun``. The original's ``"rmse"`` computed the mean squared error; it is rejected rather
    than silently reinterpreted, so an old JSON keeps the loss it was tuned with once renamed to ``"mse"``."""
    if loss_fun == "rmse":
        raise ValueError("loss_fun 'rmse' is not accepted: the original computed the mean squared error under that "
                         "name; write \"mse\" for the same loss")
    if loss_fun not in LOSS_FUNCTIONS:
        raise ValueError(f"loss_fun {loss_fun!r}: expected one of {', '.join(LOSS_FUNCTIONS)}")
    return loss_fun


def reconstruction_loss(loss_fun: str, target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Scalar mean over all elements: squared error (``"mse"``) or binary cross-entropy of probabilities
    clipped to [1e-7, 1 - 1e-7] (``"cross_entropy"``, targets in [0, 1], e.g. Moving MNIST)."""
    if loss_fun == "mse":
        return tf.reduce_mean(tf.square(target - prediction))
    if loss_fun == "cross_entropy":
        probability = tf.clip_by_value(prediction, 1e-7, 1.0 - 1e-7)
        return -tf.reduce_mean(target * tf.math.log(probability) + (1.0 - target) * tf.math.log(1.0 - probability))
    raise ValueError(f"loss_fun {loss_fun!r}: expected one of {', '.join(LOSS_FUNCTIONS)}")


def sigmoid_cross_entropy(logits: tf.Tensor, label: float) -> tf.Tensor:
    """Mean sigmoid cross-entropy of ``logits`` against the constant ``label`` (1 = real, 0 = fake)."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label),
                                                                   logits=logits))


# --- ConvLSTM -----------------------------------------------------------------------------------------------------
class ConvLSTMCell(keras.layers.Layer):
    """One ConvLSTM step with ``filters`` features and a ``kernel_size`` square kernel (SAME padding).

    State ``(c, h)``, each ``[B, H, W, filters]``. With pre-activations ``i, j, f, o`` of the convolution over
    ``concat([x, h])``: ``c' = c·σ(f + forget_bias) + σ(i)·tanh(j)``, ``h' = tanh(c')·σ(o)``. That convolution
    is computed as ``input_gates(x) + recurrent_gates(h)`` (its kernel split along the input channels, the bias
    in ``input_gates``): the same numbers, but oneDNN runs a 64-channel convolution about 12 % faster than a
    67-channel one (fused and split were timed at the GMD shape, see benchmarks/bench_train_step.py).
    ``legacy_gates=True`` first squashes the pre-activations with a sigmoid, as the original cell did
    (forget gate confined to (0.73, 0.88)); use it only to reproduce the GMD paper numbers.
    Parameters: ``k²·(C + filters)·4·filters + 4·filters``.
    """

    def __init__(self, filters: int, kernel_size: int, legacy_gates: bool = False, forget_bias: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.legacy_gates = bool(legacy_gates)
        self.forget_bias = float(forget_bias)
        self.kernel_size = int(kernel_size)
        # zeros here, then one Glorot draw of the fused kernel in build(): the initial weights are those of the
        # fused convolution (same scale, same random stream), not of two separately initialised ones
        self.input_gates = keras.layers.Conv2D(4 * self.filters, kernel_size, padding="same",
                                               kernel_initializer="zeros", name="input_gates")
        self.recurrent_gates = keras.layers.Conv2D(4 * self.filters, kernel_size, padding="same", use_bias=False,
                                                   kernel_initializer="zeros", name="recurrent_gates")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.input_gates.build((None, None, None, channels))
        self.recurrent_gates.build((None, None, None, self.filters))
        fused = keras.initializers.GlorotUniform()(
            (self.kernel_size, self.kernel_size, channels + self.filters, 4 * self.filters))
        self.input_gates.kernel.assign(fused[:, :, :channels])
        self.recurrent_gates.kernel.assign(fused[:, :, channels:])

    def zero_state(self, frame: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Zero ``(c, h)`` matching the batch and grid of ``frame`` ``[B, H, W, C]``."""
        zeros = tf.zeros_like(frame[..., :1]) * tf.zeros((self.filters,), frame.dtype)
        return zeros, zeros

    def call(self, inputs, states=None):
        """``(h', (c', h'))`` from ``inputs`` ``[B, H, W, C]`` and ``states`` ``(c, h)``; ``None`` is the zero
        state, for which the recurrent convolution (zero) is skipped: one of a sequence's recurrent convolutions,
        the costliest op, saved."""
        z = self.input_gates(inputs)
        if states is not None:
            c, h = states
            z = z + self.recurrent_gates(h)
        if self.legacy_gates:
            z = tf.sigmoid(z)
        i, j, f, o = tf.split(z, 4, axis=-1)
        new_c = tf.sigmoid(i) * tf.tanh(j)
        if states is not None:
            new_c = c * tf.sigmoid(f + self.forget_bias) + new_c
        new_h = tf.tanh(new_c) * tf.sigmoid(o)
        return new_h, (new_c, new_h)


# --- spectral normalisation ---------------------------------------------------------------------------------------
class SpectralNormConv(keras.layers.Layer):
    """Convolution of rank 1, 2 or 3 with a spectrally normalised kernel ``W / σ_max(W)``.

    ``σ_max`` is estimated by ``power_iterations`` steps of power iteration on the kernel reshaped to
    ``[k·…·C_in, filters]``; the vector ``u`` is a non-trainable weight updated only when ``training``.
    Unlike ``keras.layers.SpectralNormalization`` (which overwrites the kernel in place), the normalised kernel
    is used in the forward pass and the gradient flows through ``σ``.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "same", rank: int = 3,
                 use_bias: bool = True, power_iterations: int = 1, **kwargs):
        super().__init__(**kwargs)
        if rank not in (1, 2, 3):
            raise ValueError(f"rank {rank}: expected 1, 2 or 3")
        as_tuple = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (int(v),) * rank  # noqa: E731
        self.filters, self.rank = int(filters), rank
        self.kernel_size, self.strides = as_tuple(kernel_size), as_tuple(strides)
        self.padding, self.use_bias, self.power_iterations = padding, use_bias, int(power_iterations)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(*self.kernel_size, int(input_shape[-1]), self.filters),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias") if self.use_bias \
            else None
        self.vector_u = self.add_weight(shape=(1, self.filters), initializer=keras.initializers.RandomNormal(),
                                        trainable=False, name="vector_u")

    def normalized_kernel(self, training: bool = False) -> tf.Tensor:
        weights = tf.reshape(self.kernel, (-1, self.filters))
        u = tf.convert_to_tensor(self.vector_u)
        for _ in range(self.power_iterations):
            v = tf.math.l2_normalize(tf.matmul(u, weights, transpose_b=True))
            u = tf.math.l2_normalize(tf.matmul(v, weights))
        u, v = tf.stop_gradient(u), tf.stop_gradient(v)
        if training:
            self.vector_u.assign(u)
        sigma = tf.squeeze(tf.matmul(tf.matmul(v, weights), u, transpose_b=True))
        return self.kernel / sigma

    def call(self, inputs, training=False):
        outputs = keras.ops.conv(inputs, self.normalized_kernel(training), strides=self.strides,
                                 padding=self.padding)
        return outputs + self.bias if self.use_bias else outputs


# --- discriminators -----------------------------------------------------------------------------------------------
class PatchDiscriminator3D(keras.layers.Layer):
    """The 3-D conv patch discriminator of the original convLSTM_gan: on ``[B, T, H, W, C]`` clips,
    conv3d ``base`` k4 s2 → lrelu 0.2; conv3d ``2·base``, ``4·base``, ``8·base`` k4 s2 → BN → lrelu;
    conv3d 1, kernel (2, 4, 4), s1 → logits ``[B, T/16, H/16, W/16, 1]`` (SAME padding, sizes rounded up):
    one logit per space-time patch. BN uses batch statistics when ``training`` and moving averages otherwise
    (the original always used batch statistics).
    """

    def __init__(self, base_filters: int = 64, **kwargs):
        super().__init__(**kwargs)
        conv = lambda n, k, s: keras.layers.Conv3D(n, k, strides=s, padding="same")  # noqa: E731
        self.convs = [conv(base_filters * m, 4, 2) for m in (1, 2, 4, 8)]
        self.norms = [keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5) for _ in range(3)]
        self.logits = conv(1, (2, 4, 4), 1)

    def call(self, clips, training=False):
        x = tf.nn.leaky_relu(self.convs[0](clips), 0.2)
        for conv, norm in zip(self.convs[1:], self.norms):
            x = tf.nn.leaky_relu(norm(conv(x), training=training), 0.2)
        return self.logits(x)


# --- padding ------------------------------------------------------------------------------------------------------
def pad_to_multiple(frames: tf.Tensor, multiple: int) -> tf.Tensor:
    """Pad the grid axes (-3, -2) of ``frames`` ``[..., H, W, C]`` at the bottom/right edge, by mirroring the
    edge rows/columns (SYMMETRIC), up to the next multiple of ``multiple``. Undo with :func:`crop_frames`."""
    height, width = frames.shape[-3], frames.shape[-2]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return frames
    paddings = [[0, 0]] * (frames.shape.rank - 3) + [[0, pad_h], [0, pad_w], [0, 0]]
    # a mirror cannot be longer than the grid itself: tiny grids are zero-padded instead
    mode = "CONSTANT" if pad_h > height or pad_w > width else "SYMMETRIC"
    return tf.pad(frames, paddings, mode=mode)


def crop_frames(frames: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """The top-left ``height × width`` part of the grid axes (-3, -2) of ``frames``."""
    return frames[..., :height, :width, :]


def unpool2x(x: tf.Tensor) -> tf.Tensor:
    """Zero-filled 2× unpooling of ``[B, H, W, C]`` → ``[B, 2H, 2W, C]``: each value goes to the top-left of its
    2×2 block, the other three are zero (as MCnet's decoder)."""
    channels = x.shape[-1]
    zeros = tf.zeros_like(x)
    # depth_to_space takes channel blocks in the order (row 0 col 0, row 0 col 1, row 1 col 0, row 1 col 1)
    stacked = tf.stack([x, zeros, zeros, zeros], axis=-2)            # [B, H, W, 4, C]
    blocks = tf.reshape(stacked, (-1, x.shape[1], x.shape[2], 4 * channels))
    return tf.nn.depth_to_space(blocks, 2)
