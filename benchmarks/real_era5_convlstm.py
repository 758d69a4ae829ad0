"""Why the quick start's convLSTM lost to holding its last input frame on real ERA5, one candidate at a time.

Data: the real ERA5 file (hourly 2 m temperature, March 2019, UK; read where it lies, never copied) through the
package's extraction and step 1 (box SW corner 50N 10W, 32 x 48 points at 0.25°), into ``--workdir``. Date-range
splits of one month are not available to the training CLI yet, so the month's days are split here, in memory:
train 1-21 March, validation 22-25, test 26-31; windows of 24 h (12 context + 12 forecast) slide by 1 h and lie
wholly inside one split (481 / 73 / 121 windows). Normalisation statistics come from the training hours only.

Each candidate is the quick start's demo convLSTM (``templates/quick_start/presets.yaml``) with a few
hyper-parameters overridden (:data:`CANDIDATES`), trained as the trainer trains it (``training.trainer``'s
``tf.function`` step, one Adam per optimisation phase, shuffled batches without remainder, the weights of the epoch
with the best validation MSE kept) and scored on the test windows: MSE of 2 m temperature in K² per lead hour
against the two baselines, persistence (the analysis 24 h before the valid time) and the last context frame held.
``edge / interior`` is the lead-1 MSE within 2 grid points of the domain edge over that of the points inside.

Example::

    PYTHONPATH=$PWD python benchmarks/real_era5_convlstm.py --workdir /tmp/real_era5 \\
        --candidates original residual --seeds 1 2 --out /tmp/real_era5/results.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import xarray as xr  # noqa: E402

from video_prediction_tools import quick_start  # noqa: E402
from video_prediction_tools.datasets.normalization import Normalization  # noqa: E402
from video_prediction_tools.models.convlstm import ConvLSTM  # noqa: E402
from video_prediction_tools.models.registry import build_model, resolve_hparams  # noqa: E402
from video_prediction_tools.training.trainer import build_optimizers, make_train_step  # noqa: E402
from video_prediction_tools.utils.io import write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the real file where it lies: beside the repository, or under ``$AMBS_SHARED_DATA`` (as the tests find it)
REAL_ERA5_T2M = Path(os.environ.get("AMBS_SHARED_DATA") or REPO_ROOT.parent / "shared/data") \
    / "era5_t2m_uk_2019_03/era5-2mt-2019-03-uk.grib"
#: inclusive days of March 2019 of each split
DAY_SPLIT = {"train": (1, 21), "val": (22, 25), "test": (26, 31)}
EDGE_WIDTH = 2
#: overrides of the demo preset's convLSTM; ``original`` is the preset as the issue measured it (the field
#: formulation); ``edge_padding`` is ``original`` run by :class:`EdgePaddedConvLSTM`
CANDIDATES: dict[str, dict] = {
    "original": {"residual": False},
    "residual": {"residual": True},
    "minmax_sigmoid": {"residual": False, "normalization": "minmax"},
    "edge_padding": {"residual": False},
    "budget_x4": {"residual": False, "max_epochs": 12},
    "residual_minmax": {"residual": True, "normalization": "minmax"},
    "residual_x4": {"residual": True, "max_epochs": 12},
}


#: each model's compiled forecast
_COMPILED: dict = {}


class EdgePaddedConvLSTM(ConvLSTM):
    """Experiment only: the convLSTM on frames widened by :attr:`margin` points mirrored from the inside, its
    forecasts cut back to the domain, so that the cell's zero padding falls outside the domain."""

    margin = 6

    def predict_frames(self, context, training=False, seed=None):
        m = self.margin
        wide = tf.pad(context, [[0, 0], [0, 0], [m, m], [m, m], [0, 0]], mode="SYMMETRIC")
        return super().predict_frames(wide, training=training, seed=seed)[:, :, m:-m, m:-m]


def real_box(grib: Path, workdir: Path) -> xr.DataArray:
    """2 m temperature ``[time, lat, lon]`` in K of the 32 x 48 box, extracted and cropped by the package's CLIs
    (run once per ``workdir``)."""
    box = workdir / "PreprocessedData/era5-Y2019-2019M03to03-48x32-5000N1000W-2t/2019/X_03.nc"
    if not box.is_file():
        source = workdir / "source"
        source.mkdir(parents=True, exist_ok=True)
        if not (source / grib.name).exists():
            (source / grib.name).symlink_to(grib.resolve())
        steps = [("main_data_extraction", "--source_dir", source, "--target_dir", workdir / "ExtractedData",
                  "--varslist_path", REPO_ROOT / "templates/data_extraction/era5_varmapping_2t_template.json"),
                 ("main_preprocess_data_step1", "--source_dir", workdir / "ExtractedData", "--destination_dir",
                  workdir / "PreprocessedData", "--years", 2019, "--vars", "2t", "--sw_corner", 50.0, -10.0,
                  "--nyx", 32, 48)]
        for module, *args in steps:
            subprocess.run([sys.executable, "-m", f"video_prediction_tools.main_scripts.{module}",
                            *map(str, args)], check=True)
    with xr.open_dataset(box) as data:
        return data["X"].isel(channel=0).load()


def split_windows(field: xr.DataArray, length: int) -> dict[str, np.ndarray]:
    """``{mode: first hour index of each window}``: windows of ``length`` hours inside the mode's days."""
    days = field["time"].dt.day.values
    starts = {}
    for mode, (first, last) in DAY_SPLIT.items():
        hours = np.flatnonzero((days >= first) & (days <= last))
        starts[mode] = hours[: len(hours) - length + 1]
    return starts


def windows(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``[N, length, lat, lon, 1]`` float32 windows of ``values`` ``[time, lat, lon]`` starting at ``starts``."""
    return np.stack([values[s:s + length] for s in starts])[..., None].astype(np.float32)


def baseline_mse(values: np.ndarray, starts: np.ndarray, context: int, forecast: int) -> dict[str, np.ndarray]:
    """Per-lead MSE (K², ``[forecast]``) of persistence (24 h before the valid time) and of the last context frame
    held, over the windows starting at ``starts`` (each needs 24 h before its first valid time)."""
    values = values.astype(np.float64)
    leads = np.arange(1, forecast + 1)
    valid = starts[:, None] + context - 1 + leads[None, :]
    truth = values[valid]
    return {"persistence": np.mean((values[valid - 24] - truth) ** 2, axis=(0, 2, 3)),
            "last_frame": np.mean((values[valid - leads[None, :]] - truth) ** 2, axis=(0, 2, 3))}


def normalization(values: np.ndarray, starts: np.ndarray, length: int, method: str) -> Normalization:
    """The ``method`` normalisation with the statistics of the training hours (all hours its windows cover)."""
    train = values[starts[0]:starts[-1] + length].astype(np.float64)
    stats = {"min": train.min(), "max": train.max(), "avg": train.mean(), "sigma": train.std()}
    return Normalization(method, {"2t": stats}, ["2t"])


def build(candidate: str, hparams: dict, frame_shape: tuple[int, int, int]):
    if candidate == "edge_padding":
        model = EdgePaddedConvLSTM(resolve_hparams("convLSTM", hparams), frame_shape=frame_shape, name="convLSTM")
        model.build_variables()
        return model
    return build_model("convLSTM", hparams, frame_shape=frame_shape)


def forecast_mse(model, images: np.ndarray, norm: Normalization, batch_size: int = 32) -> np.ndarray:
    """Squared error of the model's forecasts in K², ``[N, forecast, lat, lon]``, of normalised ``images``."""
    if model not in _COMPILED:  # traced once per model, not once per validation
        _COMPILED[model] = model.compiled_forecast()
    compiled = _COMPILED[model]
    errors = []
    for first in range(0, len(images), batch_size):
        batch = images[first:first + batch_size]
        predicted = norm.denormalize(np.asarray(compiled(batch)))
        truth = norm.denormalize(batch[:, model.context_frames:])
        errors.append((np.asarray(predicted, np.float64) - truth)[..., 0] ** 2)
    return np.concatenate(errors)


def train(model, hparams: dict, train_images: np.ndarray, val_images: np.ndarray, norm: Normalization,
          seed: int) -> float:
    """Train as the trainer does (its step, shuffled batches, remainder dropped) for ``max_epochs`` epochs and keep
    the weights of the epoch with the lowest validation MSE; returns the training seconds."""
    phases = model.optimization_phases()
    optimizers = build_optimizers(model, phases)
    step_fn = make_train_step(tf.distribute.get_strategy(), model, phases, optimizers)
    batch, rng = int(hparams["batch_size"]), np.random.default_rng(seed)
    best, best_weights, step, started = np.inf, None, 0, time.perf_counter()
    for _ in range(int(hparams["max_epochs"])):
        order = rng.permutation(len(train_images))
        for first in range(0, len(order) - batch + 1, batch):
            losses = step_fn(tf.constant(train_images[order[first:first + batch]]), tf.constant(step, tf.int64))
            if not np.isfinite(float(losses["total_loss"])):
                raise RuntimeError(f"training diverged at step {step}")
            step += 1
        val_mse = float(forecast_mse(model, val_images, norm).mean())
        if val_mse < best:
            best, best_weights = val_mse, model.get_weights()
    model.set_weights(best_weights)
    return time.perf_counter() - started


def run_candidate(candidate: str, seed: int, field: xr.DataArray) -> dict:
    """Train candidate ``candidate`` with ``seed`` and score it on the test windows (see the module docstring)."""
    hparams = {**quick_start.preset_hparams(quick_start.load_preset("demo"), "convLSTM", "demo"),
               **CANDIDATES[candidate]}
    length, context = int(hparams["sequence_length"]), int(hparams["context_frames"])
    values = field.values
    starts = split_windows(field, length)
    norm = normalization(values, starts["train"], length, hparams["normalization"])
    images = {mode: np.asarray(norm.normalize(windows(values, s, length)), np.float32) for mode, s in starts.items()}
    keras.utils.set_random_seed(seed)
    model = build(candidate, hparams, (*values.shape[1:], 1))
    seconds = train(model, hparams, images["train"], images["val"], norm, seed)
    errors = forecast_mse(model, images["test"], norm)
    edge = np.zeros(values.shape[1:], bool)
    edge[:EDGE_WIDTH], edge[-EDGE_WIDTH:], edge[:, :EDGE_WIDTH], edge[:, -EDGE_WIDTH:] = True, True, True, True
    baselines = baseline_mse(values, starts["test"], context, length - context)
    return {"candidate": candidate, "seed": seed, "hparams": hparams, "train_s": round(seconds, 1),
            "test_windows": len(starts["test"]), "mse": errors.mean(axis=(0, 2, 3)).tolist(),
            "edge_over_interior": float(errors[:, 0, edge].mean() / errors[:, 0, ~edge].mean()),
            **{name: mse.tolist() for name, mse in baselines.items()}}


def table(results: list[dict], leads=(1, 2, 3, 6, 12)) -> str:
    """One row per run: MSE (K²) at ``leads``, the edge/interior ratio and the training time; baselines last."""
    head = "candidate          seed " + " ".join(f"{f'+{h}h':>7}" for h in leads) + "  edge/int  train_s"
    rows = [head]
    for r in results:
        rows.append(f"{r['candidate']:<18} {r['seed']:>4} " + " ".join(f"{r['mse'][h - 1]:7.3f}" for h in leads)
                    + f"  {r['edge_over_interior']:8.2f}  {r['train_s']:7.1f}")
    for name in ("persistence", "last_frame"):
        rows.append(f"{name:<23} " + " ".join(f"{results[0][name][h - 1]:7.3f}" for h in leads))
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grib", type=Path, default=REAL_ERA5_T2M, help="the real ERA5 GRIB file")
    parser.add_argument("--workdir", type=Path, required=True, help="extraction and step-1 outputs go here")
    parser.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=["original", "residual"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--out", type=Path, help="JSON file of the results (appended to when it exists)")
    args = parser.parse_args(argv)
    field = real_box(args.grib, args.workdir)
    results = json.loads(args.out.read_text()) if args.out and args.out.is_file() else []
    for seed in args.seeds:
        for candidate in args.candidates:
            results.append(run_candidate(candidate, seed, field))
            print(table(results[-1:]), flush=True)
            if args.out:
                write_json(args.out, results)
    print(table(results))


if __name__ == "__main__":
    main()
