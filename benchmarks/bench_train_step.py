"""Seconds per training step of convLSTM at the GMD shape: the AMBS training loop vs plain Keras 3, same run.

Shape: global batch 4, 24 frames (12 context + 12 forecast) of 56 x 92 x 3, one ConvLSTM cell of 64 features
with 5 x 5 kernels, 1 x 1 convolution back to 3 channels, Adam(1e-3), MSE.

* ours: ``models.registry.build_model("convLSTM")`` trained by ``training.trainer.make_train_step`` (the
  ``tf.function`` step of the training loop, one Adam per optimisation phase, losses fetched to the host every
  step as the loop does).
* keras: ``keras.Sequential([ConvLSTM2D(64, 5, return_sequences=True), Conv3D(3, 1, sigmoid)])`` trained with
  ``train_on_batch``. ConvLSTM2D cannot feed its own output back, so the closest equivalent is teacher forcing on
  all 23 input frames (frames 0..22 predict 1..23): the same 23 cell steps and the same parameters (430 k) as
  ours (12 context steps + 11 autoregressive steps), loss on all 23 outputs instead of the 12 forecasts. Ours
  computes the gates as an input plus a recurrent convolution (64-channel convolutions run faster in oneDNN than
  one over the 67 channels of concat([x, h])) and skips the recurrent convolution of the zero initial state (22
  instead of 23); Keras computes the four gates with eight convolutions per step inside a ``tf.while_loop``.

Steps of the two are interleaved after a warm-up, one of each per round, the order alternating between rounds
(ours first, then Keras first), so machine load and cache state affect both alike. Reported: the median step time
of each, and the median over rounds of the per-round ratio (the figure least affected by load drifting during the
run).

Example::

    python benchmarks/bench_train_step.py --steps 6
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from video_prediction_tools.models.registry import build_model  # noqa: E402
from video_prediction_tools.training.trainer import build_optimizers, make_train_step  # noqa: E402

BATCH, FRAMES, CONTEXT, HEIGHT, WIDTH, CHANNELS, FEATURES, KERNEL = 4, 24, 12, 56, 92, 3, 64, 5


def ours_step(images: tf.Tensor):
    """A callable running one step of the AMBS loop on ``images``."""
    strategy = tf.distribute.get_strategy()
    model = build_model("convLSTM", {"context_frames": CONTEXT, "sequence_length": FRAMES,
                                     "num_features": FEATURES, "filter_size": KERNEL, "lr": 1e-3},
                        frame_shape=(HEIGHT, WIDTH, CHANNELS))
    phases = model.optimization_phases()
    train_step = make_train_step(strategy, model, phases, build_optimizers(model, phases))
    counter = iter(range(10**9))

    def step():
        logged = train_step(images, tf.constant(next(counter), tf.int64))
        return {key: float(value) for key, value in logged.items()}

    return step, sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def keras_step(images: tf.Tensor):
    """A callable running one ``train_on_batch`` of the plain Keras ConvLSTM2D model on ``images``."""
    model = keras.Sequential([
        keras.Input((FRAMES - 1, HEIGHT, WIDTH, CHANNELS)),
        keras.layers.ConvLSTM2D(FEATURES, KERNEL, padding="same", return_sequences=True),
        keras.layers.Conv3D(CHANNELS, 1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    inputs, targets = images[:, :-1], images[:, 1:]
    return (lambda: model.train_on_batch(inputs, targets)), model.count_params()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each (after 2 warm-up steps)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    images = tf.constant(np.random.default_rng(0).uniform(size=(BATCH, FRAMES, HEIGHT, WIDTH, CHANNELS)),
                         tf.float32)
    candidates = {"ours (AMBS loop)": ours_step(images), "keras train_on_batch": keras_step(images)}
    for name, (step, parameters) in candidates.items():
        started = time.perf_counter()
        step()
        step()
        print(f"{name}: {parameters} parameters, warm-up (tracing + 1 step) {time.perf_counter() - started:.1f} s",
              flush=True)
    seconds = {name: [] for name in candidates}
    for round_index in range(args.steps):
        order = list(candidates.items())
        for name, (step, _) in (order if round_index % 2 == 0 else order[::-1]):
            started = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - started)
    medians = {name: float(np.median(values)) for name, values in seconds.items()}
    print(f"shape: batch {BATCH} x {FRAMES} x {HEIGHT} x {WIDTH} x {CHANNELS}, {FEATURES} features, "
          f"{KERNEL}x{KERNEL}; {args.steps} timed steps each, {os.cpu_count()} CPU(s), "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    for name, median in medians.items():
        print(f"{name:22s} {median:8.3f} s/step (median; all: {', '.join(f'{s:.2f}' for s in seconds[name])})"
              f"  {BATCH / median:6.2f} samples/s")
    ratio = medians["ours (AMBS loop)"] / medians["keras train_on_batch"]
    per_round = np.array(seconds["ours (AMBS loop)"]) / np.array(seconds["keras train_on_batch"])
    print(f"ratio ours/keras = {ratio:.3f} of the medians, {np.median(per_round):.3f} median of the per-round ratios "
          f"(range {per_round.min():.3f}-{per_round.max():.3f}; target <= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
