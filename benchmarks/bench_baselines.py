"""SimVPv2 (``simvp``, gSTA) and TAU (``tau``) next to ``convLSTM``: training-step time and skill.

``--part step``: seconds per training step at the GMD shape (24 frames of 56 x 92 x 3, 12 context + 12 forecast),
each model with its ERA5 template (convLSTM: batch 4, 64 features; simvp / tau: batch 16, hid_S 32, hid_T 256,
N_S 2, N_T 8), through the trainer's ``tf.function`` step (``training.trainer.make_train_step``), random data.
Steps are interleaved after a warm-up, one of each model per round, the order reversed every round, so machine
load affects all alike. Reported: parameters, median seconds per step and samples per second.

``--part skill``: the three models trained for the same wall-clock budget on the quick-start demo archive
(synthetic ERA5-like, 24 x 32 points, 3 channels, train February / val January / test March 2017). The demo
directory must hold a finished
``python -m video_prediction_tools.main_scripts.main_quick_start --demo_dir DIR --exp_id conv`` run (its convLSTM training defines the budget: the ``train_time`` of its ``results.json``). simvp and tau go through
the same chain as the quick start with its model option (``Demo(model=...)``): generated runscripts for training,
postprocessing (test MSE of 2 m temperature per lead hour, K², against persistence: the same hour of the
previous day) and meta-postprocessing, with the ERA5 template but the smaller widths of :data:`DEMO_WIDTHS`.
Their ``max_epochs`` is chosen so that the steps fit the budget, from a
step time measured first on random data of the demo shape. Reported: the MSE per lead hour of each model and of
persistence, and each model's training time.

Example::

    python benchmarks/bench_baselines.py --part step --steps 4
    python benchmarks/bench_baselines.py --part skill --demo_dir /tmp/ambs_demo --venv_path ambs_test
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from video_prediction_tools import quick_start  # noqa: E402
from video_prediction_tools.models.registry import build_model, template_hparams  # noqa: E402
from video_prediction_tools.training.trainer import build_optimizers, make_train_step  # noqa: E402
from video_prediction_tools.utils.settings import resolve_venv  # noqa: E402

MODELS = ("convLSTM", "simvp", "tau")
GMD_SHAPE = (56, 92, 3)
FRAMES = 24
#: training windows of the demo's train split (February 2017, windows of 24 h sliding by 1 h)
DEMO_TRAIN_WINDOWS = 28 * 24 - 23
#: simvp / tau widths on the demo, scaled down like the demo's convLSTM (16 features instead of 64): with the
#: weather template (hid_S 32, hid_T 256, N_T 8) one step of batch 16 took 21 s on the shared 2-core machine, so
#: the budget would not even cover one epoch
DEMO_WIDTHS = {"hid_S": 16, "hid_T": 128, "N_T": 4}


def train_step_callable(name: str, hparams: dict, frame_shape: tuple[int, int, int]):
    """``(step, parameters)``: a callable running one trainer step of model ``name`` on random data."""
    batch = int(hparams["batch_size"])
    images = tf.constant(np.random.default_rng(0).uniform(size=(batch, FRAMES, *frame_shape)), tf.float32)
    model = build_model(name, hparams, frame_shape=frame_shape)
    phases = model.optimization_phases()
    train_step = make_train_step(tf.distribute.get_strategy(), model, phases, build_optimizers(model, phases))
    counter = iter(range(10**9))

    def step():
        logged = train_step(images, tf.constant(next(counter), tf.int64))
        return {key: float(value) for key, value in logged.items()}

    return step, sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def median_step_seconds(step, steps: int) -> float:
    step()  # tracing
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def part_step(steps: int) -> None:
    candidates = {name: train_step_callable(name, template_hparams(name), GMD_SHAPE) for name in MODELS}
    batches = {name: int(template_hparams(name)["batch_size"]) for name in MODELS}
    for name, (step, _) in candidates.items():
        step()  # tracing and the first step
    seconds = {name: [] for name in MODELS}
    for round_index in range(steps):
        order = list(candidates.items())
        for name, (step, _) in (order if round_index % 2 == 0 else order[::-1]):
            started = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - started)
    print(f"GMD shape {FRAMES} x {' x '.join(map(str, GMD_SHAPE))}; {steps} timed steps each; {os.cpu_count()} "
          f"CPU(s), load average {os.getloadavg()[0]:.1f}; GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    for name in MODELS:
        median = float(np.median(seconds[name]))
        print(f"{name:9s} {candidates[name][1]:>11,d} parameters  batch {batches[name]:>2d}  {median:7.2f} s/step  "
              f"{batches[name] / median:6.2f} samples/s  (all: {', '.join(f'{s:.2f}' for s in seconds[name])})")


# --- skill ---------------------------------------------------------------------------------------------------------
def part_skill(demo_dir: Path, venv: str) -> None:
    preset = quick_start.load_preset("demo")
    conv_results = sorted(demo_dir.glob("Models/*/convLSTM/*/results.json"))
    if not conv_results:
        raise SystemExit(f"{demo_dir}: no finished convLSTM demo run (run the quick start there first)")
    budget = json.loads(conv_results[-1].read_text())["train_time"]
    expname = conv_results[-1].parents[2].name
    results = {"convLSTM": sorted(demo_dir.glob(f"Results/{expname}/convLSTM/*/summary_metrics.csv"))[-1].parent}
    train_times = {"convLSTM": budget}
    frame_shape = (*preset["nyx"], 3)
    for model in ("simvp", "tau"):
        hparams = {**template_hparams(model), **DEMO_WIDTHS,
                   "normalization": quick_start.preset_hparams(preset, "convLSTM", "demo")["normalization"]}
        step, _ = train_step_callable(model, hparams, frame_shape)
        per_step = median_step_seconds(step, 3)
        steps_per_epoch = DEMO_TRAIN_WINDOWS // hparams["batch_size"]
        hparams["max_epochs"] = max(1, round(budget / (per_step * steps_per_epoch)))
        print(f"{model}: {per_step:.2f} s/step on random data -> max_epochs {hparams['max_epochs']} "
              f"({hparams['max_epochs'] * steps_per_epoch} steps) for the budget of {budget:.0f} s", flush=True)
        keras.backend.clear_session()
        demo = quick_start.Demo(venv_dir=resolve_venv(venv), demo_dir=demo_dir, preset=preset, exp_id=model,
                                model=model, hparams=hparams)
        results[model] = demo.train_and_evaluate(expname)  # train, postprocess, meta-postprocess
        run_dir = sorted(demo_dir.glob(f"Models/{expname}/{model}/*/results.json"))[-1]
        train_times[model] = json.loads(run_dir.read_text())["train_time"]
    rows = {model: quick_start.read_summary(path) for model, path in results.items()}
    print(f"\n2t test MSE [K^2] per lead hour; load average {os.getloadavg()[0]:.1f}; training time (s): "
          + ", ".join(f"{m} {t:.0f}" for m, t in train_times.items()))
    print(f"{'lead h':>6} " + " ".join(f"{m:>9}" for m in MODELS) + f" {'persist.':>9}")
    for lead, conv_row in enumerate(rows["convLSTM"]):
        values = [rows[m][lead][f"{m}_mse"] for m in MODELS]
        print(f"{int(conv_row['fcst_hour']):>6} " + " ".join(f"{v:9.4f}" for v in values)
              + f" {conv_row['persistence_mse']:9.4f}")
    means = {m: float(np.mean([r[f"{m}_mse"] for r in rows[m]])) for m in MODELS}
    print("mean over leads: " + ", ".join(f"{m} {v:.4f}" for m, v in means.items())
          + f", persistence {np.mean([r['persistence_mse'] for r in rows['convLSTM']]):.4f}")
    if not math.isfinite(sum(means.values())):
        raise SystemExit("a model produced non-finite MSE")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("step", "skill"), required=True)
    parser.add_argument("--steps", type=int, default=4, help="timed steps of each model (--part step)")
    parser.add_argument("--demo_dir", type=Path, help="finished quick-start demo directory (--part skill)")
    parser.add_argument("--venv_path", default="ambs_test", help="venv of the runscripts (--part skill)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    if args.part == "step":
        part_step(args.steps)
    else:
        if args.demo_dir is None:
            parser.error("--part skill needs --demo_dir")
        part_skill(args.demo_dir.resolve(), args.venv_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
