"""Building blocks of the recurrence-free SimVP family (SimVP, SimVPv2 with gSTA, TAU), in Keras 3.

The family forecasts every future frame in one pass: a per-frame spatial encoder, a translator over the encoded
context frames stacked along the channel axis, and a per-frame decoder.

* :class:`ConvBlock`: 3 x 3 convolution (stride 1 or 2, or sub-pixel 2x upsampling by depth-to-space) ->
  GroupNorm(2 groups) -> SiLU. Parameters: ``9·c_in·m·c_out + m·c_out + 2·c_out`` with ``m = 4`` when upsampling
  and 1 otherwise.
* :class:`SpatialEncoder` / :class:`SpatialDecoder`: ``N_S`` blocks each; the encoder halves the grid on every
  second block (blocks 2, 4, ...), the decoder mirrors it and adds the first encoder block's output before its last
  block (the skip connection).
* :class:`GatedSpatioTemporalBlock` (gSTA, SimVPv2) and :class:`TemporalAttentionBlock` (TAU): a metaformer
  block ``x + drop_path(γ1·attention(BN(x)))``, then ``x + drop_path(γ2·mlp(BN(x)))``; the attention uses a large
  kernel decomposed into a depthwise 5 x 5, a depthwise 7 x 7 with dilation 3 and a 1 x 1 convolution.
* :class:`MetaTranslator`: ``N_T`` such blocks, the first at the stacked input width, the last followed by a
  1 x 1 reduction to the output width; :class:`InceptionTranslator`: the U-shaped Inception translator of SimVP v1.
* :func:`differential_divergence`: TAU's regulariser on the softmax of frame differences.

Tensors are channel-last: frames ``[B, H, W, C]``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

#: width multiplier of the MLP inside the gSTA and TAU blocks
MLP_RATIO = 8
#: initial value of the layer-scale factors γ (small, so each block starts close to the identity)
LAYER_SCALE_INIT = 1e-2
#: kernel sizes of the parallel grouped convolutions of an Inception block (SimVP v1) and their group count
INCEPTION_KERNELS = (3, 5, 7, 11)
INCEPTION_GROUPS = 8


class ConvBlock(keras.layers.Layer):
    """3 x 3 convolution -> GroupNorm(2) -> SiLU; ``stride`` 2 halves the grid, ``upsample`` doubles it (the
    convolution makes ``4·filters`` channels, rearranged by depth-to-space)."""

    def __init__(self, filters: int, stride: int = 1, upsample: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.upsample = bool(upsample)
        self.conv = keras.layers.Conv2D(filters * (4 if upsample else 1), 3, strides=stride, padding="same")
        self.norm = keras.layers.GroupNormalization(groups=2)

    def call(self, x):
        x = self.conv(x)
        if self.upsample:
            x = tf.nn.depth_to_space(x, 2)
        return tf.nn.silu(self.norm(x))


def encoder_strides(num_blocks: int) -> list[int]:
    """Stride of each encoder block: 2 on every second block (1, 2, 1, 2, ...)."""
    return [2 if i % 2 else 1 for i in range(num_blocks)]


class SpatialEncoder(keras.layers.Layer):
    """``N_S`` :class:`ConvBlock` of ``filters`` channels applied to single frames ``[B, H, W, C]``; returns the
    latent ``[B, H/2^(N_S//2), W/2^(N_S//2), filters]`` and the first block's output (the skip)."""

    def __init__(self, filters: int, num_blocks: int, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [ConvBlock(filters, stride=s) for s in encoder_strides(num_blocks)]

    def call(self, x):
        skip = x = self.blocks[0](x)
        for block in self.blocks[1:]:
            x = block(x)
        return x, skip


class SpatialDecoder(keras.layers.Layer):
    """Mirror of :class:`SpatialEncoder`: ``N_S`` :class:`ConvBlock` (upsampling where the encoder halved), the skip
    added before the last block, then a 1 x 1 readout to ``channels`` with ``activation``."""

    def __init__(self, filters: int, num_blocks: int, channels: int, activation: str | None, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [ConvBlock(filters, upsample=s == 2) for s in reversed(encoder_strides(num_blocks))]
        self.readout = keras.layers.Conv2D(channels, 1, activation=activation)

    def call(self, latent, skip):
        x = latent
        for block in self.blocks[:-1]:
            x = block(x)
        return self.readout(self.blocks[-1](x + skip))


class DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zero a residual branch for a whole sample with probability ``rate`` and
    scale the kept ones by ``1 / (1 - rate)``; identity at inference."""

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = tf.floor(keep + tf.random.uniform([tf.shape(x)[0], 1, 1, 1], dtype=x.dtype))
        return x * mask / keep


class LargeKernelAttention(keras.layers.Layer):
    """Large-kernel attention of ``dim`` channels: depthwise 5 x 5, depthwise 7 x 7 dilated 3 (a 21 x 21 receptive
    field), then a 1 x 1 convolution. ``gated`` (gSTA): the 1 x 1 makes ``2·dim`` channels ``f, g`` and the output
    is ``σ(g)·f``; otherwise (TAU) the output multiplies the input, further scaled by a squeeze-and-excitation of
    the input (global mean -> ``dim/r`` -> ReLU -> ``dim`` -> sigmoid, no biases, ``r`` = 16, at least 4 wide)."""

    def __init__(self, dim: int, gated: bool, **kwargs):
        super().__init__(**kwargs)
        self.gated = bool(gated)
        self.local = keras.layers.DepthwiseConv2D(5, padding="same")
        self.dilated = keras.layers.DepthwiseConv2D(7, dilation_rate=3, padding="same")
        self.pointwise = keras.layers.Conv2D(2 * dim if gated else dim, 1)
        if not gated:
            self.squeeze = keras.layers.Dense(max(dim // 16, 4), use_bias=False)
            self.excite = keras.layers.Dense(dim, use_bias=False)

    def call(self, x):
        attention = self.pointwise(self.dilated(self.local(x)))
        if self.gated:
            features, gate = tf.split(attention, 2, axis=-1)
            return tf.sigmoid(gate) * features
        channel_weights = tf.sigmoid(self.excite(tf.nn.relu(self.squeeze(tf.reduce_mean(x, axis=[1, 2])))))
        return channel_weights[:, None, None, :] * attention * x


class AttentionBranch(keras.layers.Layer):
    """1 x 1 -> GELU -> :class:`LargeKernelAttention` -> 1 x 1, plus the branch input (inner residual)."""

    def __init__(self, dim: int, gated: bool, **kwargs):
        super().__init__(**kwargs)
        self.project_in = keras.layers.Conv2D(dim, 1)
        self.attention = LargeKernelAttention(dim, gated)
        self.project_out = keras.layers.Conv2D(dim, 1)

    def call(self, x):
        return self.project_out(self.attention(tf.nn.gelu(self.project_in(x)))) + x


class ConvMlp(keras.layers.Layer):
    """1 x 1 to ``ratio·dim`` -> depthwise 3 x 3 -> GELU -> 1 x 1 back to ``dim``."""

    def __init__(self, dim: int, ratio: int = MLP_RATIO, **kwargs):
        super().__init__(**kwargs)
        self.expand = keras.layers.Conv2D(dim * ratio, 1)
        self.depthwise = keras.layers.DepthwiseConv2D(3, padding="same")
        self.reduce = keras.layers.Conv2D(dim, 1)

    def call(self, x):
        return self.reduce(tf.nn.gelu(self.depthwise(self.expand(x))))


class MetaBlock(keras.layers.Layer):
    """``x + drop_path(γ1·attention(BN(x)))``, then ``x + drop_path(γ2·mlp(BN(x)))``, at the input width ``dim``;
    a 1 x 1 convolution to ``out_dim`` follows when it differs. ``gated``: gSTA attention; else TAU attention.

    Parameters at width ``d`` with ``h = 8·d``: BN ``2·4d``; attention branch ``2(d² + d)`` (1 x 1 in and out)
    + ``26d + 50d`` (depthwise 5 x 5, 7 x 7) + 1 x 1 ``d·2d + 2d`` (gSTA) or ``d² + d`` plus SE ``2·d·max(d/16, 4)``
    (TAU); γ ``2d``; MLP ``d·h + h + 10h + h·d + d``; reduction ``d·out + out``.
    """

    def __init__(self, dim: int, out_dim: int, gated: bool, drop_path: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.norm1 = keras.layers.BatchNormalization()
        self.attention = AttentionBranch(dim, gated)
        self.norm2 = keras.layers.BatchNormalization()
        self.mlp = ConvMlp(dim)
        self.drop_path = DropPath(drop_path)
        scale = keras.initializers.Constant(LAYER_SCALE_INIT)
        self.gamma1 = self.add_weight(shape=(dim,), initializer=scale, name="gamma1")
        self.gamma2 = self.add_weight(shape=(dim,), initializer=scale, name="gamma2")
        self.reduction = keras.layers.Conv2D(out_dim, 1) if out_dim != dim else None

    def call(self, x, training=False):
        x = x + self.drop_path(self.gamma1 * self.attention(self.norm1(x, training=training)), training=training)
        x = x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x, training=training)), training=training)
        return self.reduction(x) if self.reduction is not None else x


class MetaTranslator(keras.layers.Layer):
    """``N_T`` :class:`MetaBlock`: block 1 at ``in_dim`` reduced to ``hidden``, the middle ones at ``hidden``, the
    last at ``hidden`` reduced to ``out_dim`` (with ``N_T`` = 1: one block ``in_dim`` -> ``out_dim``). Drop-path
    rates rise linearly from 0 (first block) to ``drop_path`` (last block)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_blocks: int, gated: bool,
                 drop_path: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        widths = [in_dim] + [hidden] * (num_blocks - 1) + [out_dim]
        rates = [drop_path * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        self.blocks = [MetaBlock(widths[i], widths[i + 1], gated, rates[i]) for i in range(num_blocks)]

    def call(self, x, training=False):
        for block in self.blocks:
            x = block(x, training=training)
        return x


class InceptionBlock(keras.layers.Layer):
    """SimVP v1 Inception block: 1 x 1 to ``hidden``, then the sum of grouped convolutions with kernels 3, 5, 7,
    11 to ``out_dim``, each followed by GroupNorm and LeakyReLU(0.2). The group count is 8 when both widths
    divide by it, else 1."""

    def __init__(self, hidden: int, out_dim: int, **kwargs):
        super().__init__(**kwargs)
        groups = INCEPTION_GROUPS if hidden % INCEPTION_GROUPS == 0 and out_dim % INCEPTION_GROUPS == 0 else 1
        self.project = keras.layers.Conv2D(hidden, 1)
        self.branches = [(keras.layers.Conv2D(out_dim, k, padding="same", groups=groups),
                          keras.layers.GroupNormalization(groups=groups)) for k in INCEPTION_KERNELS]

    def call(self, x):
        x = self.project(x)
        return tf.add_n([tf.nn.leaky_relu(norm(conv(x)), 0.2) for conv, norm in self.branches])


class InceptionTranslator(keras.layers.Layer):
    """SimVP v1 translator (``N_T`` >= 2): ``N_T`` :class:`InceptionBlock` down to ``hidden`` channels, then
    ``N_T`` up, each up block after the first reading the concatenation of the previous output and the matching
    down block's output (U-Net skips); the last up block makes ``out_dim`` channels."""

    def __init__(self, hidden: int, out_dim: int, num_blocks: int, **kwargs):
        super().__init__(**kwargs)
        self.down = [InceptionBlock(hidden // 2, hidden) for _ in range(num_blocks)]
        self.up = [InceptionBlock(hidden // 2, hidden) for _ in range(num_blocks - 1)]
        self.up.append(InceptionBlock(hidden // 2, out_dim))

    def call(self, x, training=False):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](x)
        for block, skip in zip(self.up[1:], reversed(skips[:-1])):
            x = block(tf.concat([x, skip], axis=-1))
        return x


def differential_divergence(forecast: tf.Tensor, truth: tf.Tensor, temperature: float = 0.1,
                            eps: float = 1e-12) -> tf.Tensor:
    """TAU's differential divergence: with ``p``, ``q`` the softmax over all grid values and channels of the
    frame differences ``x[t+1] - x[t]`` divided by ``temperature``, of the forecast and of the truth, the mean over
    batch, difference index and values of ``p·log(p / (q + eps) + eps)`` (a Kullback-Leibler divergence of the
    predicted from the true change, per value). ``forecast``/``truth`` ``[B, F, H, W, C]``; 0 when ``F`` < 2."""
    if forecast.shape[1] < 2:
        return tf.constant(0.0, forecast.dtype)

    def softmax_of_differences(frames):
        differences = frames[:, 1:] - frames[:, :-1]
        flat = tf.reshape(differences, (tf.shape(frames)[0], frames.shape[1] - 1, -1))
        return tf.nn.softmax(flat / temperature, axis=-1)

    p, q = softmax_of_differences(forecast), softmax_of_differences(truth)
    return tf.reduce_mean(p * tf.math.log(p / (q + eps) + eps))
