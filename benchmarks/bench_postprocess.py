"""Whole postprocessing against the forecasts alone, same model, same windows, same run.

* postprocess: ``main_visualize_postprocess`` as a user runs it (a new process: imports, model loading, the
  forecasts, persistence, metrics, bootstrap, the per-sample files, ``evaluation_metrics.nc``, tables, plots);
* forecast only: a new process that loads the same model and forecasts every batch of the same split with the
  postprocessing's forecast function (``compiled_forecast``), nothing written (the least any postprocessing has
  to do);
* forecast only, frozen exit: the same, with its objects frozen before it exits (``gc.freeze``) as AMBS's command
  lines do: the interpreter's last garbage collection then skips TensorFlow's objects (about 1 s).

All sides are timed as whole processes, rotating which goes first between repeats; reported are the medians and
the ratio postprocess / forecast only (target: <= 1.5), and postprocess / forecast only with a frozen exit (the
ratio of the work alone, without the part of the gain that comes from the faster exit).

Data: a synthetic step-1 experiment (2t, tcc, t_850 on a 0.3° grid) through step 2 and a short convLSTM training
(the quick-start demo's hyper-parameters, one epoch on two days): the val month holds the last two days of
February, so the test month (March, ``--test_days`` days, 24 d - 23 windows) has persistence from its first
forecast on. Shapes: ``demo`` = the quick start (24 x 32, 14 days, 313 forecasts), ``gmd`` = 56 x 92, 31 days
(721 forecasts).

``--members K``: instead, the scoring of a batch alone (what postprocessing does per batch beside the forecasts:
every default metric of a K-member forecast and of both baselines, and the conditional quantiles), K members
against one member, in this process, on the shape's synthetic fields with members drawn around the truth (no model
needed); reported are the milliseconds per window (wall and CPU time of this process) and their ratios
(target: <= 2 for K = 8).

Example::

    python benchmarks/bench_postprocess.py --shape demo --repeats 3
    python benchmarks/bench_postprocess.py --shape gmd --members 8 --repeats 5
    python benchmarks/bench_postprocess.py --shape gmd --repeats 1 --workdir /tmp/bench_pp
    python benchmarks/bench_postprocess.py --shape gmd --repeats 1 --sample_compression zlib
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VARIABLES = ["2t", "tcc", "t_850"]
#: (ny, nx, test days) of each shape
SHAPES = {"demo": (24, 32, 14), "gmd": (56, 92, 31)}
#: the quick-start demo's convLSTM and postprocessing settings (templates/quick_start/presets.yaml)
HPARAMS = {"batch_size": 8, "lr": 0.002, "max_epochs": 1, "context_frames": 12, "sequence_length": 24,
           "loss_fun": "mse", "opt_var": "0", "shuffle_on_val": False, "normalization": "znorm", "num_features": 16,
           "filter_size": 5, "legacy_gates": False}
POSTPROCESS_BATCH, BLOCK_LENGTH = 16, 24
#: months of 2017: (month, first day, days); train, val (ends on the day before the test month), test
MONTHS = {"train": (1, 1, 2), "val": (2, 27, 2), "test": (3, 1, None)}


def synthetic_month(times: np.ndarray, ny: int, nx: int, seed: int) -> np.ndarray:
    """ERA5-like float32 ``[time, lat, lon, 3]``: 2t and t_850 with a diurnal cycle and a smooth spatial pattern
    moving east, tcc in [0, 1]."""
    rng = np.random.default_rng(seed)
    hours = times.astype("datetime64[h]").astype(np.int64)[:, None, None]
    y, x = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    wave = np.sin(2 * np.pi * (x[None] - 0.5 * hours) / nx + y[None] / ny)
    diurnal = 5.0 * np.sin(2 * np.pi * (hours % 24) / 24.0)
    t2 = 280.0 + diurnal + 3 * wave + rng.normal(0, 0.5, (len(times), ny, nx))
    tcc = np.clip(0.5 + 0.4 * wave + rng.normal(0, 0.05, (len(times), ny, nx)), 0, 1)
    t850 = 265.0 + 0.5 * diurnal + 2 * wave + rng.normal(0, 0.5, (len(times), ny, nx))
    return np.stack([t2, tcc, t850], axis=-1).astype(np.float32)


def write_experiment(workdir: Path, ny: int, nx: int, months: dict[str, tuple[int, int, int]]) -> Path:
    """A synthetic step-1 experiment ``workdir/PreprocessedData/EXP`` of ``months`` (split → (month of 2017, first
    day, days)) through step 2, and ``workdir/data_split.json``; return the experiment directory."""
    import xarray as xr

    from video_prediction_tools.data_preprocess.statistics import channel_stats
    from video_prediction_tools.data_preprocess.step2 import run_step2
    from video_prediction_tools.utils.io import write_json

    exp_dir = workdir / "PreprocessedData" / "EXP"
    (exp_dir / "2017").mkdir(parents=True, exist_ok=True)
    lat = [round(38.4 + 0.3 * k, 1) for k in range(ny)][::-1]
    lon = [round(0.3 * k, 1) for k in range(nx)]
    write_json(exp_dir / "metadata.json", {
        "expname": "EXP", "expdir": str(exp_dir.parent), "sw_corner_frame": {"lat": min(lat), "lon": lon[0]},
        "coordinates": {"lat": lat, "lon": lon}, "frame_size": {"nx": nx, "ny": ny},
        "variables": [{f"var{k + 1}": v} for k, v in enumerate(VARIABLES)]})
    for seed, (month, first_day, days) in enumerate(months.values()):
        start = np.datetime64(f"2017-{month:02d}-{first_day:02d}T00", "h")
        times = start + np.arange(24 * days) * np.timedelta64(1, "h")
        data = synthetic_month(times, ny, nx, seed)
        xr.DataArray(data, name="X", dims=("time", "lat", "lon", "channel"),
                     coords={"time": times.astype("datetime64[ns]"), "lat": lat, "lon": lon, "channel": VARIABLES}
                     ).to_netcdf(exp_dir / "2017" / f"X_{month:02d}.nc")
        write_json(exp_dir / "2017" / f"stat_{month:02d}.json", channel_stats(data, VARIABLES))
    run_step2(exp_dir, sequence_length=HPARAMS["sequence_length"])
    write_json(workdir / "data_split.json", {split: {"2017": [month]} for split, (month, _, _) in months.items()})
    return exp_dir


def train_command(workdir: Path, exp_dir: Path, run_dir: Path, hparams: dict, *options: str) -> list[str]:
    """The training CLI on ``exp_dir`` with ``hparams`` (written to ``workdir/hparams.json``) into ``run_dir``."""
    from video_prediction_tools.utils.io import write_json

    write_json(workdir / "hparams.json", hparams)
    return [sys.executable, "-m", "video_prediction_tools.main_scripts.main_train_models", "--input_dir",
            str(exp_dir), "--output_dir", str(run_dir), "--datasplit_dict", str(workdir / "data_split.json"),
            "--model", "convLSTM", "--model_hparams_dict", str(workdir / "hparams.json"), "--seed", "1", *options]


def prepare(workdir: Path, ny: int, nx: int, test_days: int) -> Path:
    """Data and a trained convLSTM in ``workdir``; return the run directory (reused when already trained)."""
    run_dir = workdir / "Models" / "EXP" / "convLSTM" / "bench"
    if (run_dir / "results.json").is_file():
        return run_dir
    months = {**MONTHS, "test": (MONTHS["test"][0], MONTHS["test"][1], test_days)}
    exp_dir = write_experiment(workdir, ny, nx, months)
    subprocess.run(train_command(workdir, exp_dir, run_dir, HPARAMS), check=True, stdout=subprocess.DEVNULL)
    return run_dir


def forecast_only(run_dir: str, batch_size: int, frozen_exit: bool) -> None:
    """The forecast-only side (run in its own process): load the model, forecast every test batch; with
    ``frozen_exit`` freeze the objects before the process exits."""
    from video_prediction_tools.datasets.era5 import ERA5Dataset
    from video_prediction_tools.training.checkpoints import load_trained_model

    model, run = load_trained_model(run_dir)
    dataset = ERA5Dataset(run.input_dir, run.datasplit, "test",
                          hparams={**run.hparams, "shuffle_on_val": False, "batch_size": batch_size},
                          normalization=run.normalization)
    forecast_batch, forecasts = model.compiled_forecast(), 0  # as the postprocessing forecasts
    for index, batch in enumerate(dataset.batches(batch_size)):
        forecasts += len(np.asarray(forecast_batch(batch["images"], seed=index)))
    print(json.dumps({"forecasts": forecasts}))
    if frozen_exit:
        gc.freeze()


def scoring_ms_per_window(ny: int, nx: int, members: int, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds per window of scoring a batch of ``POSTPROCESS_BATCH`` windows (12 leads of
    ``2t``) with ``members`` members, as postprocessing scores it (:class:`ScoreAccumulator` with the default
    metrics for that many members, both baselines, conditional quantiles)."""
    import xarray as xr

    from video_prediction_tools.postprocess.baselines import BASELINES
    from video_prediction_tools.postprocess.era5_job import resolve_metric_names
    from video_prediction_tools.postprocess.evaluation import ScoreAccumulator
    from video_prediction_tools.postprocess.metrics import make_metrics

    leads = np.arange(1, 13)
    times = np.datetime64("2017-03-01T00", "h") + np.arange(POSTPROCESS_BATCH + 24) * np.timedelta64(1, "h")
    hours = synthetic_month(times, ny, nx, seed=0)[..., 0]
    windows = np.stack([hours[i + leads] for i in range(POSTPROCESS_BATCH)])  # [B, F, H, W]
    dims = ("init_time", "fcst_hour", "lat", "lon")
    coords = {"init_time": times[:POSTPROCESS_BATCH].astype("datetime64[ns]"), "fcst_hour": leads,
              "lat": np.linspace(38.4 + 0.3 * (ny - 1), 38.4, ny), "lon": 0.3 * np.arange(nx)}
    truth = xr.DataArray(windows, dims=dims, coords=coords, attrs={"units": "K"})
    rng = np.random.default_rng(members)
    model = windows + rng.normal(0, 1, (members, *windows.shape)).astype(np.float32)
    forecasts = {"model": xr.DataArray(model, dims=("sample", *dims), coords=coords, attrs={"units": "K"}),
                 **{name: truth + offset for offset, name in enumerate(BASELINES, start=1)}}
    metrics = make_metrics(resolve_metric_names(None, None, members))
    wall, cpu = [], []
    for _ in range(repeats):
        scores = ScoreAccumulator(metrics, list(forecasts), "2t", leads, quantiles=True)
        start, start_cpu = time.perf_counter(), time.process_time()
        scores.add(truth, forecasts)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * statistics.median(wall) / POSTPROCESS_BATCH, 1000 * statistics.median(cpu) / POSTPROCESS_BATCH


def compare_members(shape: str, members: int, repeats: int) -> None:
    """Print the scoring time per window of ``members`` members against one member (alternating, medians), wall
    and CPU (the CPU time of this process is the steadier measure on a loaded machine)."""
    ny, nx, _ = SHAPES[shape]
    one, many = [], []
    for _ in range(repeats):
        one.append(scoring_ms_per_window(ny, nx, 1, 3))
        many.append(scoring_ms_per_window(ny, nx, members, 3))
    (one_ms, one_cpu), (many_ms, many_cpu) = ([statistics.median(side) for side in zip(*times)]
                                              for times in (one, many))
    print(f"{shape} shape {ny} x {nx}, batches of {POSTPROCESS_BATCH} windows, load {os.getloadavg()[0]:.1f}: scoring "
          f"1 member {one_ms:.2f} ms per window ({one_cpu:.2f} ms CPU), {members} members {many_ms:.2f} ms per "
          f"window ({many_cpu:.2f} ms CPU) (medians of {repeats}), ratio {many_ms / one_ms:.2f} (CPU "
          f"{many_cpu / one_cpu:.2f}; target <= 2)")


def timed_process(command: list[str]) -> float:
    """Wall seconds of ``command`` (must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="demo")
    parser.add_argument("--test_days", type=int, default=None, help="days of the test month (default: the shape's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="keeps the data and the trained model between runs")
    parser.add_argument("--sample_compression", default="none", choices=["none", "zlib"],
                        help="the postprocessing's --sample_compression (default: its default, none)")
    parser.add_argument("--members", type=int, default=None,
                        help="time the scoring alone: this many members against one (see the module docstring)")
    parser.add_argument("--forecast_only", metavar="RUN_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--frozen_exit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.forecast_only:
        forecast_only(args.forecast_only, POSTPROCESS_BATCH, args.frozen_exit)
        return
    if args.members is not None:
        compare_members(args.shape, args.members, args.repeats)
        return
    ny, nx, days = SHAPES[args.shape]
    days = args.test_days or days
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_postprocess_")) / f"{args.shape}_{days}d"
    run_dir = prepare(workdir, ny, nx, days)
    sides = {
        "postprocess": lambda repeat: [
            sys.executable, "-m", "video_prediction_tools.main_scripts.main_visualize_postprocess", "--checkpoint",
            str(run_dir), "--results_dir", str(workdir / f"Results_{repeat}"), "--batch_size", str(POSTPROCESS_BATCH),
            "--block_length", str(BLOCK_LENGTH), "--sample_compression", args.sample_compression],
        "forecast only": lambda repeat: [sys.executable, __file__, "--forecast_only", str(run_dir)],
        "frozen exit": lambda repeat: [sys.executable, __file__, "--forecast_only", str(run_dir), "--frozen_exit"]}
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        shutil.rmtree(workdir / f"Results_{repeat}", ignore_errors=True)  # a rerun would keep existing samples
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            times[name].append(timed_process(sides[name](repeat)))
        whole, forecast, frozen = (times[name][-1] for name in names)
        print(f"repeat {repeat + 1}: postprocess {whole:.1f} s, forecast only {forecast:.1f} s ({frozen:.1f} s with "
              f"a frozen exit), ratio {whole / forecast:.2f} ({whole / frozen:.2f})", flush=True)
    whole, forecast, frozen = (statistics.median(times[name]) for name in names)
    windows = 24 * days - 23
    print(f"{args.shape} shape {ny} x {nx} x 3, {windows} test forecasts, sample files "
          f"{args.sample_compression}, load {os.getloadavg()[0]:.1f}: "
          f"postprocess {whole:.1f} s, forecast only {forecast:.1f} s, with a frozen exit {frozen:.1f} s "
          f"(medians of {args.repeats}), ratio {whole / forecast:.2f} (target <= 1.5), against the forecast-only "
          f"process with a frozen exit {whole / frozen:.2f}")


if __name__ == "__main__":
    main()
