"""Trust in runs and results: one run per directory (real concurrent processes, a SIGKILLed holder), a full disk
(a real 2 MiB tmpfs), paired skill scores, an unfinished training run, and no stale output beside new metrics."""
import json
import os
import signal
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from fixtures.common import run_module
from video_prediction_tools.postprocess import bootstrap, meta
from video_prediction_tools.postprocess.results_io import write_netcdf
from video_prediction_tools.runscript_generator.base import unfinished_runs_note
from video_prediction_tools.training import checkpoints
from video_prediction_tools.utils.locks import LOCK_FILE, lock_directory

POSTPROCESS = "video_prediction_tools.main_scripts.main_visualize_postprocess"
TF_ENV = {"TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}
#: a process that locks a directory for training and waits (run with ``-c``)
HOLDER = ("import sys, time\n"
          "from video_prediction_tools.utils.locks import lock_directory\n"
          "lock_directory(sys.argv[1], 'training')\n"
          "print('locked', flush=True)\n"
          "time.sleep(600)\n")
#: a second run into the directory, as an entry point would start it
SECOND = ("import sys\n"
          "from video_prediction_tools.utils.errors import run_cli\n"
          "from video_prediction_tools.utils.locks import lock_directory\n"
          "run_cli(lambda argv: print('ran') if lock_directory(sys.argv[1], 'postprocessing') else 1)\n")


def _python(script, *args, **kwargs):
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          **kwargs)


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of ``tmp_path / 'run'``."""
    directory = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield directory, process
    process.kill()
    process.wait()


def test_a_second_run_into_a_directory_in_use_is_refused_naming_the_holder(holder):
    directory, process = holder
    result = _python(SECOND, directory)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {directory.resolve()} is in use by training (process "
                                                   f"{process.pid} on host ")
    assert " since 20" in lines[0]


def test_a_lock_left_by_a_killed_process_does_not_block_the_next_run(holder):
    directory, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (directory / LOCK_FILE).is_file()  # the file stays; the kernel released the lock
    result = _python(SECOND, directory)
    assert result.returncode == 0 and result.stdout == "ran\n", result.stderr


def test_one_process_may_lock_a_directory_again_even_after_it_was_made_anew(tmp_path):
    directory = tmp_path / "results"
    first = lock_directory(directory, "postprocessing")
    assert lock_directory(directory, "postprocessing") is first
    (directory / LOCK_FILE).unlink()
    directory.rmdir()
    again = lock_directory(directory, "postprocessing")
    assert again is not first and again.holds_file()
    held = _python(SECOND, directory)
    assert held.returncode == 2 and f"process {os.getpid()}" in held.stderr
    again.release()


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs (tests run as root in CI)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        reason = f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":   # CI runs as root: the full-disk tests must run there
            pytest.fail(reason)
        pytest.skip(reason)
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


#: writes a 4 MB netCDF file into argv[1] as a step writes its outputs (argv[2]: "netcdf" or "json")
FILLER = ("import sys, numpy as np, xarray as xr\n"
          "from pathlib import Path\n"
          "from video_prediction_tools.utils.errors import run_cli\n"
          "from video_prediction_tools.utils.io import write_text\n"
          "from video_prediction_tools.postprocess.results_io import write_netcdf\n"
          "def main(argv):\n"
          "    out = Path(sys.argv[1])\n"
          "    if sys.argv[2] == 'netcdf':\n"
          "        data = np.random.default_rng(0).random((1000, 1000)).astype('f4')\n"
          "        write_netcdf(xr.Dataset({'x': (('a', 'b'), data)}), out / 'big.nc', {})\n"
          "    else:\n"
          "        write_text(out / 'big.json', 'x' * 4_000_000)\n"
          "run_cli(main)\n")


@pytest.mark.parametrize("writer", ["netcdf", "json"])
def test_a_full_disk_ends_with_one_line_naming_it_and_nothing_half_written(small_disk, writer):
    """netCDF's "HDF error" and Python's ENOSPC alike: one ERROR line naming the file system, exit 2, no temporary
    file left; with space freed the same write succeeds."""
    result = _python(FILLER, small_disk, writer)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: no space left on the file system of {small_disk}: "
                                                   "the disk is full"), lines
    assert list(small_disk.iterdir()) == []
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    assert _python(FILLER, small_disk, writer).returncode == 0
    assert [path.name for path in small_disk.iterdir()] == [f"big.{'nc' if writer == 'netcdf' else 'json'}"]


def _raw_scores_with_missing_persistence():
    """Raw MSEs ``[init_time, fcst_hour]`` of a model and persistence; persistence lacks the first 12 of 48
    forecasts (no previous day)."""
    rng = np.random.default_rng(3)
    times = np.datetime64("2018-02-01T11", "ns") + np.arange(48) * np.timedelta64(1, "h")
    model = 2.0 + rng.random((48, 3))
    persistence = 4.0 + 3 * rng.random((48, 3))
    persistence[:12] = np.nan
    coords = {"init_time": times, "fcst_hour": [1, 2, 3]}
    dims = ("init_time", "fcst_hour")
    return xr.Dataset({"2t_convLSTM_mse": (dims, model, {"units": "K^2"}),
                       "2t_persistence_mse": (dims, persistence, {"units": "K^2"})}, coords=coords,
                      attrs={"model": "convLSTM", "variable": "2t"})


def test_skill_compares_the_same_forecasts_and_says_how_many(tmp_path):
    raw = _raw_scores_with_missing_persistence()
    model, persistence = raw["2t_convLSTM_mse"].values, raw["2t_persistence_mse"].values
    evaluation = bootstrap.summarize_metrics(bootstrap.add_paired_scores(raw, "2t", "convLSTM", ["mse"]), 4, 50)
    rows = bootstrap.skill_summary_rows(evaluation, "2t", "convLSTM", ["mse"], {"mse": 0.0},
                                        baselines=["persistence"])
    expected = 1 - model[12:].mean(axis=0) / persistence[12:].mean(axis=0)
    np.testing.assert_allclose([row["skill_mse"] for row in rows], expected, rtol=1e-12)
    assert [row["skill_mse_forecasts"] for row in rows] == [36, 36, 36]
    np.testing.assert_allclose([row["convLSTM_mse"] for row in rows], model.mean(axis=0))  # its own: all 48
    # meta-postprocessing's skill, replicate by replicate, over the same forecasts too
    write_netcdf(evaluation, tmp_path / "evaluation_metrics.nc")
    run = meta.load_run("run", tmp_path, "mse", "o", "r")
    skill = meta.skill_scores([run], "mse", tmp_path)["persistence"][0]
    draws = bootstrap.block_draws(12, 50)
    paired_model = np.where(np.isnan(persistence), np.nan, model)

    def replicates(values):
        with np.errstate(all="ignore"), warnings.catch_warnings():  # all-NaN blocks are NaN, as in the bootstrap
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.nanmean(values.reshape(12, 4, 3), axis=1)[draws], axis=1)

    np.testing.assert_allclose(skill.values, 1 - replicates(paired_model) / replicates(persistence), rtol=1e-12)


def test_every_forecast_paired_adds_nothing():
    raw = _raw_scores_with_missing_persistence().fillna(5.0)
    assert set(bootstrap.add_paired_scores(raw, "2t", "convLSTM", ["mse"]).data_vars) == set(raw.data_vars)


def _fake_checkpoint(run_dir, step, total_steps):
    path = checkpoints.checkpoint_path(run_dir, step)
    path.mkdir(parents=True)
    for name in (checkpoints.WEIGHTS_FILE, checkpoints.VARIABLES_FILE):
        (path / name).write_bytes(b"")
    (path / checkpoints.STATE_FILE).write_text(json.dumps({"step": step, "total_steps": total_steps}))


def test_an_unfinished_run_is_known_and_the_generator_shows_it(tmp_path):
    models = tmp_path / "Models" / "EXP" / "convLSTM"
    _fake_checkpoint(models / "stopped", 60, 240)
    _fake_checkpoint(models / "stopped", 120, 240)
    _fake_checkpoint(models / "finished", 240, 240)
    _fake_checkpoint(models / "old", 100, 0)  # written before the plan was recorded
    assert checkpoints.training_progress(models / "stopped") == (120, 240)
    assert checkpoints.training_progress(models / "finished") is None
    assert checkpoints.training_progress(models / "old") is None
    assert unfinished_runs_note(models, ["finished", "old", "stopped"]) == \
        "stopped: unfinished, trained to step 120 of 240"


@pytest.mark.slow
def test_postprocessing_an_unfinished_run_warns_and_records_it(tiny_trained_run, tmp_path):
    """The tiny run trained to its end, then its plan made longer by hand: a run stopped at its last step."""
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(tiny_trained_run), str(run_dir)], check=True)
    newest = checkpoints.newest_checkpoint(run_dir)
    state = json.loads((newest / checkpoints.STATE_FILE).read_text())
    (newest / checkpoints.STATE_FILE).write_text(json.dumps({**state, "total_steps": 2 * state["step"]}))
    results = tmp_path / "Results"
    result = run_module(POSTPROCESS, "--checkpoint", run_dir, "--results_dir", results, "--batch_size", 4,
                        "--block_length", 4, "--nboots", 10, "--lquick_evaluation", env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    step = state["step"]
    assert f"WARNING: training run {run_dir} is unfinished: it stopped at step {step} of {2 * step} planned" \
        in result.stderr
    with xr.open_dataset(results / "evaluation_metrics.nc") as evaluation:
        assert evaluation.attrs["training_step_reached"] == step
        assert evaluation.attrs["training_steps_planned"] == 2 * step
    assert f"stopped at step {step} of {2 * step}" in (results / "summary_metrics.csv").read_text()


def _sample_mse(results):
    """The model's MSE per lead hour averaged over the sample files (as ``<var>_<model>_mse_avg``)."""
    errors = []
    for path in sorted(results.glob("vfp_date_*_sample_ind_*.nc")):
        with xr.open_dataset(path) as sample:
            errors.append(((sample["2t_convLSTM_fcst"].values.astype(np.float64) - sample["2t_ref"].values) ** 2)
                          .mean(axis=(1, 2)))
    return np.mean(errors, axis=0)


def _retrain_in_place(run_dir):
    """Change every weight of the run's newest checkpoint as a retraining (``--start_over``) to the same step
    would: same directory, same step, other weights."""
    with h5py.File(checkpoints.newest_checkpoint(run_dir) / checkpoints.WEIGHTS_FILE, "r+") as weights:
        arrays = []
        weights.visititems(lambda name, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
        for array in arrays:
            if array.dtype.kind == "f":
                array[...] = array[...] * 1.5 + 0.01


@pytest.mark.slow
def test_a_retrained_run_or_fewer_metrics_leave_no_stale_output(tiny_trained_run, tmp_path):
    """Postprocess, retrain (same checkpoint name and step, other weights), rerun with fewer metrics into the same
    directory: every sample file holds the new forecasts, no figure of a metric no longer asked for is left."""
    run_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(tiny_trained_run), str(run_dir)], check=True)
    results = tmp_path / "Results"
    options = ("--checkpoint", run_dir, "--results_dir", results, "--batch_size", 4, "--block_length", 4,
               "--nboots", 10)
    first = run_module(POSTPROCESS, *options, "--evaluation_metrics", "mse", "rmse", "ssim", env=TF_ENV)
    assert first.returncode == 0, first.stderr[-3000:]
    old_mse = _sample_mse(results)
    _retrain_in_place(run_dir)
    result = run_module(POSTPROCESS, *options, "--evaluation_metrics", "mse", "rmse", env=TF_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "outputs made from other inputs (weights_sha256 differ) are removed and made again" in result.stderr
    with xr.open_dataset(results / "evaluation_metrics.nc") as evaluation:
        new_mse = evaluation["2t_convLSTM_mse_avg"].values
    assert not np.allclose(old_mse, new_mse, rtol=1e-3)
    np.testing.assert_allclose(_sample_mse(results), new_mse, rtol=1e-5)
    assert not (results / "evaluation_ssim.png").exists() and (results / "evaluation_rmse.png").is_file()
