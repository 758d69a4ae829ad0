"""A whole training run against its bare steps and validations, same model, same data, same run.

* whole run: ``main_train_models`` as a user runs it, at the GMD shape (56 x 92 x 3, 24 frames, batch 4), for
  ``--epochs`` epochs of ``--train_days`` days (6 steps per epoch for 2 days): validation once per epoch over the
  val split, the last checkpoint, the loss logs and plot, TensorBoard events, ``results.json``;
* bare: a new process that reads the same splits, builds the same model and runs the same number of train steps
  (``training.trainer.make_train_step``) and the same validations (``make_val_step`` over the whole val split, as
  many as the whole run did), writing nothing.

Both sides are whole processes (imports, reading the data, building and tracing included), alternating which goes
first between repeats; reported are the medians and the ratio whole / bare (target <= 1.05).

Example::

    python benchmarks/bench_train_run.py --repeats 3 --features 64
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_postprocess import HPARAMS, train_command, write_experiment  # noqa: E402

HEIGHT, WIDTH, BATCH = 56, 92, 4


def bare_run(exp_dir: str, split_file: str, hparams_file: str, steps: int, validations: int) -> None:
    """The bare side (its own process): ``steps`` train steps and ``validations`` passes over the val split."""
    import tensorflow as tf

    from video_prediction_tools.datasets.era5 import ERA5Dataset
    from video_prediction_tools.models.registry import build_model
    from video_prediction_tools.training.distribute import distribute_batch, padded_batch
    from video_prediction_tools.training.trainer import build_optimizers, make_train_step, make_val_step
    from video_prediction_tools.utils.io import read_json

    hparams = read_json(hparams_file)
    split = read_json(split_file)
    train = ERA5Dataset(exp_dir, split, "train", hparams=hparams, seed=1)
    val = ERA5Dataset(exp_dir, split, "val", hparams=hparams, seed=1, normalization=train.normalization)
    strategy = tf.distribute.get_strategy()
    model = build_model("convLSTM", hparams, frame_shape=tuple(train.frame_shape))
    phases = model.optimization_phases()
    train_step = make_train_step(strategy, model, phases, build_optimizers(model, phases))
    val_step = make_val_step(strategy, model, train.normalization, train.frame_shape[-1])
    done, epoch = 0, 0
    while done < steps:
        for batch in train.batches(BATCH, epoch=epoch, drop_remainder=True):
            if done == steps:
                break
            images = distribute_batch(strategy, batch["images"])
            del batch
            logged = train_step(images, tf.constant(done, tf.int64))
            [float(value) for value in logged.values()]  # fetched to the host every step, as the loop does
            done += 1
        epoch += 1
    for _ in range(validations):
        for batch in val.batches(BATCH, drop_remainder=False):
            squared, _ = val_step(distribute_batch(strategy, padded_batch(batch["images"], BATCH)))
            float(squared)
    print(json.dumps({"steps": done, "validations": validations}))


def timed_process(command: list[str]) -> float:
    """Wall seconds of ``command`` (must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train_days", type=int, default=2, help="days of the train month (24 d - 23 windows)")
    parser.add_argument("--features", type=int, default=64, help="ConvLSTM features (64: the GMD convLSTM)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--bare", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare:
        exp_dir, split_file, hparams_file, steps, validations = args.bare
        bare_run(exp_dir, split_file, hparams_file, int(steps), int(validations))
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_train_run_"))
    exp_dir = workdir / "PreprocessedData" / "EXP"
    if not (exp_dir / "tfrecords").is_dir():
        write_experiment(workdir, HEIGHT, WIDTH, {"train": (1, 1, args.train_days), "val": (2, 1, 2)})
    hparams = {**HPARAMS, "batch_size": BATCH, "max_epochs": args.epochs, "num_features": args.features}
    steps = args.epochs * ((24 * args.train_days - 23) // BATCH)
    times: dict[str, list[float]] = {"whole run": [], "bare": []}
    validations = None
    for repeat in range(args.repeats):
        run_dir = workdir / "Models" / f"run_{repeat}"
        shutil.rmtree(run_dir, ignore_errors=True)
        whole_command = train_command(workdir, exp_dir, run_dir, hparams)
        for name in (["whole run", "bare"] if repeat % 2 == 0 else ["bare", "whole run"]):
            if name == "whole run":
                times[name].append(timed_process(whole_command))
                with open(run_dir / "val_losses.csv") as rows:
                    validations = len(list(csv.DictReader(rows)))
            else:
                if validations is None:  # the first repeat runs the whole run first
                    raise RuntimeError("the number of validations is known after the first whole run")
                times[name].append(timed_process([sys.executable, __file__, "--bare", str(exp_dir),
                                                  str(workdir / "data_split.json"), str(workdir / "hparams.json"),
                                                  str(steps), str(validations)]))
        print(f"repeat {repeat + 1}: whole run {times['whole run'][-1]:.1f} s, bare {times['bare'][-1]:.1f} s, "
              f"ratio {times['whole run'][-1] / times['bare'][-1]:.3f}", flush=True)
    whole, bare = (statistics.median(times[name]) for name in times)
    print(f"GMD shape {HEIGHT} x {WIDTH} x 3, batch {BATCH}, {args.features} features, {steps} steps, "
          f"{validations} validation(s), load {os.getloadavg()[0]:.1f}: whole run {whole:.1f} s, bare {bare:.1f} s "
          f"(medians of {args.repeats}), ratio {whole / bare:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
