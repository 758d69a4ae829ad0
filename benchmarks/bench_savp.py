"""Parameter count and seconds per training step (discriminator + generator phases) of savp, ours_gan and
ours_vae_l1 at the GMD shape, with their ERA5 template hyper-parameters.

Shape: global batch 4 (``--batch``), 24 frames (12 context + 12 forecast) of 56 x 92 x 3. Each model is built with
``models.registry.build_model`` from ``templates/hparams/era5/<model>/model_hparams_template.json`` (batch size
overridden) and trained by ``training.trainer.make_train_step`` (the ``tf.function`` step of the training loop,
one Adam per optimisation phase), on random frames. The first step (tracing and graph optimisation) is reported
apart; the median of the following ``--steps`` steps is the time per step.

Example::

    python benchmarks/bench_savp.py --steps 3 --models savp ours_gan ours_vae_l1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from video_prediction_tools.models.registry import build_model  # noqa: E402
from video_prediction_tools.training.trainer import build_optimizers, make_train_step  # noqa: E402
from video_prediction_tools.utils.settings import templates_dir  # noqa: E402

FRAMES, HEIGHT, WIDTH, CHANNELS = 24, 56, 92, 3
MODELS = ("savp", "ours_gan", "ours_vae_l1")


def measure(name: str, batch: int, steps: int) -> dict:
    """Build ``name`` with its template, run ``1 + steps`` training steps; return the figures."""
    template = templates_dir() / "hparams" / "era5" / name / "model_hparams_template.json"
    hparams = {**json.loads(template.read_text()), "batch_size": batch, "sequence_length": FRAMES}
    model = build_model(name, hparams, frame_shape=(HEIGHT, WIDTH, CHANNELS))
    phases = model.optimization_phases()
    train_step = make_train_step(tf.distribute.get_strategy(), model, phases, build_optimizers(model, phases))
    images = tf.constant(np.random.default_rng(0).uniform(size=(batch, FRAMES, HEIGHT, WIDTH, CHANNELS)),
                         tf.float32)
    seconds = []
    for step in range(steps + 1):
        start = time.perf_counter()
        logged = train_step(images, tf.constant(step, tf.int64))
        losses = {key: float(value) for key, value in logged.items()}
        seconds.append(time.perf_counter() - start)
        print(f"  {name} step {step}: {seconds[-1]:.2f} s  {model.tracked_loss} = "
              f"{losses[model.tracked_loss]:.4f}", flush=True)
    generator = sum(int(np.prod(v.shape)) for v in model.generator_variables())
    discriminators = sum(int(np.prod(v.shape)) for v in model.discriminator_variables())
    return {"model": name, "phases": [p.name for p in phases], "parameters": model.count_params(),
            "generator_parameters": generator, "discriminator_parameters": discriminators,
            "first_step_s": seconds[0], "step_s": statistics.median(seconds[1:])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="global batch size (default 4)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the first one (default 3)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    print(f"batch {args.batch}, {FRAMES} x {HEIGHT} x {WIDTH} x {CHANNELS}, {args.steps} timed steps, "
          f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}")
    rows = [measure(name, args.batch, args.steps) for name in args.models]
    print(f"{'model':<12} {'phases':<24} {'params':>10} {'G params':>10} {'D params':>10} {'first step s':>13} "
          f"{'s/step':>8}")
    for row in rows:
        print(f"{row['model']:<12} {'+'.join(row['phases']):<24} {row['parameters']:>10,} "
              f"{row['generator_parameters']:>10,} {row['discriminator_parameters']:>10,} "
              f"{row['first_step_s']:>13.1f} {row['step_s']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
