"""Building blocks of SAVP (Lee et al. 2018, "Stochastic Adversarial Video Prediction"), as used by AMBS.

Everything here works on batch-major tensors: a frame is ``[B, H, W, C]``, a clip ``[B, T, H, W, C]``.
The model that assembles these blocks (unrolling, losses, optimisation phases) is ``models/savp.py``;
the behaviour follows the original AMBS SAVP code (``networks.py``, ``ops.py``, ``rnn_ops.py``).

* :class:`InstanceNorm`, :class:`NormConvLSTMCell`: instance normalisation and the normalised conv-LSTM cell.
* :class:`PosteriorEncoder`: q(z_t | x_t, x_t+1) from a pair of frames.
* :class:`FrameGenerator`: one step of the SAVP cell (conv-LSTM encoder/decoder with skips, CDNA transformation,
  extra candidate images, softmax masks).
* :class:`VideoDiscriminator`: the spectral-norm 3-D CNN "video_sn" discriminator.
* Losses (:func:`gan_loss`, :func:`cosine_distance`, :func:`kl_divergence`) and the step-driven schedules.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

#: kernels pass through relu(k - shift) + shift so that they stay positive before normalisation
_RELU_SHIFT = 1e-12


def _weights() -> keras.initializers.Initializer:
    """The original's initialiser for conv and dense weights: truncated N(0, 0.02)."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def conv2d(filters: int, kernel_size: int, strides: int = 1, padding: str = "same",
           use_bias: bool = True) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                               kernel_initializer=_weights())


def dense(units: int) -> keras.layers.Dense:
    return keras.layers.Dense(units, kernel_initializer=_weights())


def tile_concat(features: tf.Tensor, z: tf.Tensor | None) -> tf.Tensor:
    """Append the latent ``z`` ``[B, nz]``, tiled over the grid, to ``features`` ``[B, h, w, ch]``."""
    if z is None:
        return features
    tiled = tf.tile(z[:, None, None, :], [1, features.shape[1], features.shape[2], 1])
    return tf.concat([features, tiled], axis=-1)


class InstanceNorm(keras.layers.Layer):
    """Normalise each sample and channel over the grid (axes 1, 2), then scale and shift (learned γ, β)."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x):
        mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + self.epsilon) * self.gamma + self.beta


class NormConvLSTMCell(keras.layers.Layer):
    """Conv-LSTM cell with instance norm on the 4F gate pre-activations and on the new cell state.

    ``step(x, (c, h))`` → ``(h', (c', h'))`` with ``c, h`` ``[B, h, w, filters]``; 5×5 kernel, no conv bias,
    forget bias 1 (standard gates: each pre-activation goes through one nonlinearity only).
    """

    def __init__(self, filters: int, kernel_size: int = 5, forget_bias: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.forget_bias = forget_bias
        self.conv = conv2d(4 * filters, kernel_size, use_bias=False)
        self.gate_norm = InstanceNorm()
        self.cell_norm = InstanceNorm()
        self.built = True

    def step(self, inputs, state):
        cell, hidden = state
        gates = self.gate_norm(self.conv(tf.concat([inputs, hidden], axis=-1)))
        i, j, f, o = tf.split(gates, 4, axis=-1)
        cell = cell * tf.sigmoid(f + self.forget_bias) + tf.sigmoid(i) * tf.tanh(j)
        cell = self.cell_norm(cell)
        hidden = tf.tanh(cell) * tf.sigmoid(o)
        return hidden, (cell, hidden)


class _Level(keras.layers.Layer):
    """One encoder level (conv k×k + 2×2 average pool) or decoder level (×2 bilinear up-sampling + conv 3×3),
    each followed by instance norm, relu and, if ``use_rnn``, a conv-LSTM. ``z`` is tiled into every input."""

    def __init__(self, filters: int, kernel_size: int, use_rnn: bool, upsample: bool, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.upsample = upsample
        self.conv = conv2d(filters, kernel_size)
        self.norm = InstanceNorm()
        self.rnn = NormConvLSTMCell(filters) if use_rnn else None
        self.built = True

    def step(self, h, z, state):
        h = tile_concat(h, z)
        if self.upsample:
            h = self.conv(tf.image.resize(h, [2 * h.shape[1], 2 * h.shape[2]], method="bilinear"))
        else:
            h = tf.nn.avg_pool2d(self.conv(h), ksize=2, strides=2, padding="VALID")
        h = tf.nn.relu(self.norm(h))
        if self.rnn is not None:
            h, state = self.rnn.step(tile_concat(h, z), state)
        return h, state


def layer_plan(min_size: int, ngf: int) -> tuple[list[tuple[int, bool]], list[tuple[int, bool]]]:
    """Encoder and decoder levels ``[(channels, has conv-LSTM), ...]`` for a grid whose smaller side is ``min_size``.

    As the original (≥256: 5 levels, ≥128: 4, ≥64: 3, ≥32: 2), except that grids below 32 points also get the
    2-level plan (the original refused them).
    """
    if min_size >= 256:
        return ([(ngf, False), (ngf * 2, False), (ngf * 4, True), (ngf * 8, True), (ngf * 8, True)],
                [(ngf * 8, True), (ngf * 4, True), (ngf * 2, False), (ngf, False), (ngf, False)])
    if min_size >= 128:
        return ([(ngf, False), (ngf * 2, True), (ngf * 4, True), (ngf * 8, True)],
                [(ngf * 8, True), (ngf * 4, True), (ngf * 2, False), (ngf, False)])
    if min_size >= 64:
        return ([(ngf, True), (ngf * 2, True), (ngf * 4, True)],
                [(ngf * 2, True), (ngf, True), (ngf, False)])
    return [(ngf, True), (ngf * 2, True)], [(ngf, True), (ngf, False)]


def identity_kernel(size: int) -> tf.Tensor:
    """A ``size``×``size`` kernel that is 1 at the centre (size odd)."""
    kernel = [[0.0] * size for _ in range(size)]
    kernel[size // 2][size // 2] = 1.0
    return tf.constant(kernel, tf.float32)


def apply_cdna(image: tf.Tensor, kernels: tf.Tensor) -> list[tf.Tensor]:
    """Convolve ``image`` ``[B, H, W, C]`` with per-sample kernels ``[B, k, k, K]`` (the same kernel for every
    channel, symmetric padding, cross-correlation as tf.nn.depthwise_conv2d) → K images ``[B, H, W, C]``.

    One depth-wise convolution does it: the batch is moved into the channels, so that every (sample, channel)
    gets the K kernels of its sample.
    """
    size, count = kernels.shape[1], kernels.shape[3]
    radius = size // 2
    height, width, channels = image.shape[1], image.shape[2], image.shape[3]
    padded = tf.pad(image, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    stacked = tf.reshape(tf.transpose(padded, [1, 2, 0, 3]), [1, height + 2 * radius, width + 2 * radius, -1])
    filters = tf.tile(tf.transpose(kernels, [1, 2, 0, 3])[:, :, :, None, :], [1, 1, 1, channels, 1])
    filters = tf.reshape(filters, [size, size, -1, count])
    transformed = tf.nn.depthwise_conv2d(stacked, filters, strides=[1, 1, 1, 1], padding="VALID")
    transformed = tf.reshape(transformed, [height, width, -1, channels, count])
    return tf.unstack(tf.transpose(transformed, [2, 0, 1, 3, 4]), axis=-1)


class FrameGenerator(keras.layers.Layer):
    """One step of the SAVP cell at one grid size.

    ``step(image, first_image, z, state)`` → ``(gen_image, state)``: ``image`` ``[B, H, W, C]`` is the current
    input frame (truth or the previous prediction), ``first_image`` the first frame of the sequence, ``z``
    ``[B, nz]`` the (recurrent) latent or None. Frames whose sides are not multiples of 2^levels are padded
    (edge-symmetric) inside the step and the prediction is cropped back to ``H × W``.
    """

    def __init__(self, frame_shape, ngf: int, num_transformed_images: int = 4, cdna_kernel_size: int = 5,
                 prev_image_background: bool = True, first_image_background: bool = True,
                 generate_scratch_image: bool = True, dependent_mask: bool = True, **kwargs):
        super().__init__(**kwargs)
        height, width, channels = frame_shape
        encoder_plan, decoder_plan = layer_plan(min(height, width), ngf)
        self.encoder_plan, self.decoder_plan = encoder_plan, decoder_plan
        factor = 2 ** len(encoder_plan)
        self.frame_shape = (height, width, channels)
        self.padded_shape = (math.ceil(height / factor) * factor, math.ceil(width / factor) * factor)
        self.encoder_levels = [_Level(ch, 5 if i == 0 else 3, rnn, upsample=False, name=f"encoder_{i}")
                               for i, (ch, rnn) in enumerate(encoder_plan)]
        self.decoder_levels = [_Level(ch, 3, rnn, upsample=True, name=f"decoder_{i}")
                               for i, (ch, rnn) in enumerate(decoder_plan)]
        self.num_transformed_images = num_transformed_images
        self.cdna_kernel_size = cdna_kernel_size
        self.prev_image_background = prev_image_background
        self.first_image_background = first_image_background
        self.dependent_mask = dependent_mask
        if num_transformed_images:
            self.cdna_dense = dense(cdna_kernel_size * cdna_kernel_size * num_transformed_images)
        if generate_scratch_image:
            self.scratch_hidden = conv2d(ngf, 3)
            self.scratch_norm = InstanceNorm()
            self.scratch_out = conv2d(channels, 3)
        else:
            self.scratch_hidden = None
        num_masks = (num_transformed_images + int(prev_image_background) + int(first_image_background)
                     + int(generate_scratch_image))
        if num_masks == 0:
            raise ValueError("SAVP needs at least one candidate image (transformed, previous, first or scratch)")
        self.num_masks = num_masks
        self.mask_hidden = conv2d(ngf, 3)
        self.mask_norm = InstanceNorm()
        self.mask_out = conv2d(num_masks, 3)
        self.built = True

    def _level_grid(self, level: int) -> tuple[int, int]:
        """Grid of the output of encoder level ``level`` (decoder level i sits at encoder level n-2-i)."""
        factor = 2 ** (level + 1)
        return self.padded_shape[0] // factor, self.padded_shape[1] // factor

    def initial_state(self, batch_size):
        """Zero conv-LSTM states, one ``(c, h)`` per level that has a conv-LSTM (encoder then decoder)."""
        levels = len(self.encoder_levels)
        state = []
        for i, level in enumerate(self.encoder_levels + self.decoder_levels):
            if level.rnn is None:
                continue
            grid = self._level_grid(i) if i < levels else self._level_grid(2 * levels - 2 - i)
            zeros = tf.zeros([batch_size, grid[0], grid[1], level.filters])
            state.append((zeros, zeros))
        return state

    def _pad(self, image):
        height, width = self.frame_shape[:2]
        pad_h, pad_w = self.padded_shape[0] - height, self.padded_shape[1] - width
        if not pad_h and not pad_w:
            return image
        paddings = [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]]
        return tf.pad(image, paddings, mode="SYMMETRIC")

    def _crop(self, image):
        height, width = self.frame_shape[:2]
        top = (self.padded_shape[0] - height) // 2
        left = (self.padded_shape[1] - width) // 2
        return image[:, top:top + height, left:left + width]

    def step(self, image, first_image, z, state):
        image, first_image = self._pad(image), self._pad(first_image)
        states = list(state)
        new_state = []

        def run_level(level, h):
            if level.rnn is None:
                return level.step(h, z, None)[0]
            h, level_state = level.step(h, z, states.pop(0))
            new_state.append(level_state)
            return h

        h = tf.concat([image, first_image], axis=-1)
        skips = []
        for level in self.encoder_levels:
            h = run_level(level, h)
            skips.append(h)
        smallest = h
        for i, level in enumerate(self.decoder_levels):
            if i > 0:
                h = tf.concat([h, skips[len(skips) - 1 - i]], axis=-1)
            h = run_level(level, h)

        candidates = []
        if self.num_transformed_images:
            size = self.cdna_kernel_size
            flat = tf.reshape(smallest, [-1, math.prod(smallest.shape[1:])])
            kernels = tf.reshape(self.cdna_dense(flat), [-1, size, size, self.num_transformed_images])
            kernels = kernels + identity_kernel(size)[None, :, :, None]
            kernels = tf.nn.relu(kernels - _RELU_SHIFT) + _RELU_SHIFT
            kernels = kernels / tf.reduce_sum(kernels, axis=[1, 2], keepdims=True)
            candidates += apply_cdna(image, kernels)
        if self.prev_image_background:
            candidates.append(image)
        if self.first_image_background:
            candidates.append(first_image)
        if self.scratch_hidden is not None:
            scratch = tf.nn.relu(self.scratch_norm(self.scratch_hidden(tile_concat(h, z))))
            candidates.append(tf.sigmoid(self.scratch_out(tile_concat(scratch, z))))

        mask_features = tf.nn.relu(self.mask_norm(self.mask_hidden(tile_concat(h, z))))
        if self.dependent_mask:
            mask_features = tf.concat([mask_features] + candidates, axis=-1)
        masks = tf.nn.softmax(self.mask_out(tile_concat(mask_features, z)), axis=-1)
        gen_image = tf.add_n([masks[..., k:k + 1] * candidate for k, candidate in enumerate(candidates)])
        return self._crop(gen_image), new_state


class PosteriorEncoder(keras.layers.Layer):
    """q(z | x_t, x_t+1): ``n_layers`` × [pad 1, conv 4×4 stride 2, (instance norm from the 2nd), lrelu 0.2],
    global average pool, then dense layers for μ and log σ² (clipped to ±10).

    ``encode(pairs)`` with ``pairs`` ``[N, H, W, 2C]`` → ``(mu, log_sigma_sq)``, each ``[N, nz]``.
    """

    def __init__(self, nef: int, nz: int, n_layers: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.convs = [conv2d(nef * 2 ** i, 4, strides=2, padding="valid") for i in range(n_layers)]
        self.norms = [InstanceNorm() for _ in range(n_layers - 1)]
        self.mu = dense(nz)
        self.log_sigma_sq = dense(nz)
        self.built = True

    def encode(self, pairs):
        h = pairs
        for i, conv in enumerate(self.convs):
            h = conv(tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]]))
            if i > 0:
                h = self.norms[i - 1](h)
            h = tf.nn.leaky_relu(h, 0.2)
        pooled = tf.reduce_mean(h, axis=[1, 2])
        return self.mu(pooled), tf.clip_by_value(self.log_sigma_sq(pooled), -10.0, 10.0)


class SpectralNorm(keras.layers.Layer):
    """A conv3d (kernel ``[k, k, k, cin, cout]``, pad 1 then VALID) or dense layer whose weight is divided by its
    largest singular value, estimated by one power iteration per call. The power-iteration vector ``u`` is a
    non-trainable variable, updated only when ``update=True`` (the discriminator's own optimisation phase), so
    that the generator phase leaves the discriminator untouched."""

    def __init__(self, units: int, kernel_size: int | None = None, strides=(1, 1, 1), **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_size = kernel_size
        self.strides = (1, *strides, 1)

    def build(self, input_shape):
        if self.kernel_size is None:
            shape = (input_shape[-1], self.units)
        else:
            shape = (self.kernel_size,) * 3 + (input_shape[-1], self.units)
        self.kernel = self.add_weight(shape=shape, initializer=_weights(), name="kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.u = self.add_weight(shape=(1, self.units), initializer=keras.initializers.RandomNormal(),
                                 trainable=False, aggregation="mean", name="u")

    def call(self, x, update=False):
        matrix = tf.reshape(self.kernel, [-1, self.units])
        v = tf.math.l2_normalize(tf.matmul(self.u, matrix, transpose_b=True))
        u = tf.math.l2_normalize(tf.matmul(v, matrix))
        u, v = tf.stop_gradient(u), tf.stop_gradient(v)
        sigma = tf.reduce_sum(tf.matmul(v, matrix) * u)
        if update:
            self.u.assign(u)
        kernel = self.kernel / sigma
        if self.kernel_size is None:
            return tf.matmul(x, kernel) + self.bias
        x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])
        return tf.nn.conv3d(x, kernel, strides=self.strides, padding="VALID") + self.bias


#: (kernel, stride (time, lat, lon), channels as a multiple of ndf) of the video_sn discriminator
_VIDEO_SN_LAYERS = ((3, (1, 1, 1), 1), (4, (1, 2, 2), 2), (3, (1, 1, 1), 2), (4, (1, 2, 2), 4),
                    (3, (1, 1, 1), 4), (4, (2, 2, 2), 8), (3, (1, 1, 1), 8))

#: the shortest clip the video discriminator accepts (each 4-wide kernel shortens time by one, the stride halves)
MIN_CLIP_LENGTH = 4


class VideoDiscriminator(keras.layers.Layer):
    """"video_sn" discriminator: 7 spectral-norm 3-D convs (lrelu 0.1) and a spectral-norm dense → one logit.

    ``judge(clip, update)`` with ``clip`` ``[B, L, H, W, C]`` → ``(logits [B, 1], features)`` where features are
    the activations of every conv layer (for the feature cosine-distance losses).
    """

    def __init__(self, ndf: int, **kwargs):
        super().__init__(**kwargs)
        self.convs = [SpectralNorm(ndf * mult, kernel, stride) for kernel, stride, mult in _VIDEO_SN_LAYERS]
        self.logit = SpectralNorm(1)
        self.built = True

    def judge(self, clip, update=False):
        features = []
        h = clip
        for conv in self.convs:
            h = tf.nn.leaky_relu(conv(h, update=update), 0.1)
            features.append(h)
        flat = tf.reshape(h, [-1, math.prod(h.shape[1:])])
        return self.logit(flat, update=update), features


# --- losses ------------------------------------------------------------------------------------------------------
def gan_loss(logits: tf.Tensor, label: float, loss_type: str) -> tf.Tensor:
    """GAN loss of ``logits`` against a constant ``label`` (1 real, 0 fake): LSGAN mean squared error,
    GAN sigmoid cross-entropy, SNGAN softplus (hinge-free) form."""
    if loss_type == "LSGAN":
        return tf.reduce_mean(tf.square(logits - label))
    if loss_type == "GAN":
        labels = tf.fill(tf.shape(logits), float(label))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
    if loss_type == "SNGAN":
        return tf.reduce_mean(tf.nn.softplus(-logits if label == 1 else logits))
    raise ValueError(f"gan_loss_type {loss_type!r}: expected LSGAN, GAN or SNGAN")


def cosine_distance(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``0.5 · mean(Σ_channels (â − b̂)²)`` with â, b̂ normalised to unit length over the last axis."""
    a, b = tf.math.l2_normalize(a, axis=-1), tf.math.l2_normalize(b, axis=-1)
    return tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(a - b), axis=-1))


def kl_divergence(mu: tf.Tensor, log_sigma_sq: tf.Tensor) -> tf.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over the latent axis (last), averaged over all others."""
    return tf.reduce_mean(-0.5 * tf.reduce_sum(1.0 + log_sigma_sq - tf.square(mu) - tf.exp(log_sigma_sq), axis=-1))


# --- schedules (``step`` is the global training step, any numeric tensor) ----------------------------------------
def learning_rate(step, lr: float, end_lr: float, decay_steps, lr_boundaries) -> tf.Tensor:
    """Piecewise-constant ``lr·0.1^k`` if any of ``lr_boundaries`` is non-zero (k = boundaries passed); else, if
    ``decay_steps`` (d0, d1) is set, constant ``lr`` until d0, linear to ``end_lr`` at d1, ``end_lr`` after."""
    step = tf.cast(step, tf.float32)
    if any(lr_boundaries):
        passed = tf.add_n([tf.cast(step >= boundary, tf.float32) for boundary in lr_boundaries])
        return lr * tf.pow(0.1, passed)
    start, end = (float(s) for s in decay_steps)
    if not start and not end:
        return tf.constant(lr, tf.float32)
    if end == start:
        fraction = tf.cast(step >= start, tf.float32)
    else:
        fraction = tf.clip_by_value((step - start) / (end - start), 0.0, 1.0)
    return lr * (1.0 - fraction) + end_lr * fraction


def kl_weight(step, weight: float, anneal: str, k: float, anneal_steps) -> tf.Tensor:
    """Annealed KL weight: 'none' constant; 'sigmoid' ``weight / (1 + k·exp(-step/k))``; 'linear'
    ``weight · clip((step - s0)/(s1 - s0), 0, 1)``."""
    step = tf.cast(step, tf.float32)
    if anneal == "none" or not weight:
        return tf.constant(weight, tf.float32)
    if anneal == "sigmoid":
        return weight / (1.0 + k * tf.exp(-step / k))
    if anneal == "linear":
        start, end = (float(s) for s in anneal_steps)
        return weight * tf.clip_by_value((step - start) / (end - start), 0.0, 1.0)
    raise ValueError(f"kl_anneal {anneal!r}: expected none, sigmoid or linear")


def ground_truth_probability(step, schedule: str, k: float, steps) -> tf.Tensor:
    """Scheduled sampling: probability of feeding the true frame at a forecast step. 'inverse_sigmoid'
    ``k / (k + exp((step - s0)/k))`` (1 before s0); 'linear' ``1 - clip((step - s0)/(s1 - s0), 0, 1)``;
    'none' 0 (always the model's own prediction). Values below 0.001 count as 0."""
    step = tf.cast(step, tf.float32)
    start, end = (float(s) for s in steps)
    if schedule == "none":
        return tf.constant(0.0, tf.float32)
    if schedule == "inverse_sigmoid":
        exponent = tf.minimum((step - start) / k, 80.0)  # exp(80) is still finite in float32
        probability = tf.where(step < start, 1.0, k / (k + tf.exp(exponent)))
    elif schedule == "linear":
        probability = 1.0 - tf.clip_by_value((step - start) / (end - start), 0.0, 1.0)
    else:
        raise ValueError(f"schedule_sampling {schedule!r}: expected none, inverse_sigmoid or linear")
    return tf.where(probability < 0.001, 0.0, probability)
