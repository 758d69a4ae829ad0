"""Tests of training (main_train_models, training/trainer.py, training/checkpoints.py) on the tiny TFRecords.

Every test trains for real (tiny widths, 8 x 12 grid); expected values are computed here independently of the
training code: validation MSE by numpy from the raw data, best checkpoint from the logged losses, weights compared
with an uninterrupted run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from fixtures.common import PYTHON, REPO_ROOT, assert_user_error, run_module
from fixtures.trained import TRAIN_MODULE
from video_prediction_tools.main_scripts.main_train_models import main as train_main
from video_prediction_tools.training import checkpoints
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.locks import LOCK_FILE

#: tiny widths per model (all: 3 context + 3 forecast hours, 2 epochs of 4 steps on one 72-hour month)
COMMON = {"context_frames": 3, "sequence_length": 6, "max_epochs": 2, "batch_size": 16}
TINY_HPARAMS = {
    "convLSTM": {"num_features": 4, "filter_size": 3, "lr": 0.01},
    "convLSTM_gan": {"num_features": 4, "filter_size": 3, "df_dim": 4, "recon_weight": 0.9, "lr": 0.01},
    "vae": {"nz": 2, "lr": 0.01},
    "mcnet": {"gf_dim": 4, "df_dim": 4, "lr": 0.01},
    "savp": {"ngf": 4, "ndf": 4, "nef": 4, "nz": 2, "clip_length": 4, "lr": 0.001},
    "ours_gan": {"ngf": 4, "ndf": 4, "nef": 4, "nz": 2, "clip_length": 4, "lr": 0.001},
    "ours_vae_l1": {"ngf": 4, "ndf": 4, "nef": 4, "nz": 2, "clip_length": 4, "lr": 0.001},
    "simvp": {"hid_S": 4, "hid_T": 8, "N_T": 2, "lr": 0.005},
    "tau": {"hid_S": 4, "hid_T": 8, "N_T": 2, "lr": 0.005},
}
SLOW_MODELS = {"savp", "ours_gan", "ours_vae_l1", "mcnet", "vae", "simvp", "tau"}
#: convLSTM run used by the resume, kill and multi-worker tests: 4 epochs x 4 steps of a global batch of 32
RESUME_HPARAMS = {**COMMON, **TINY_HPARAMS["convLSTM"], "context_frames": 4, "sequence_length": 8,
                  "max_epochs": 4, "batch_size": 32}
RESUME_STEPS = 16


# --- helpers -------------------------------------------------------------------------------------------------
def one_month_split(tiny):
    """The tiny split with only its first training month (fewer steps per epoch)."""
    split = json.loads(json.dumps(tiny.datasplit))
    year = sorted(split["train"])[0]
    split["train"] = {year: split["train"][year][:1]}
    return split


def write_inputs(directory: Path, hparams: dict, split: dict) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    hparams_file, split_file = directory / "hparams.json", directory / "split.json"
    hparams_file.write_text(json.dumps(hparams))
    split_file.write_text(json.dumps(split))
    return hparams_file, split_file


def train_args(tiny, run_dir, model, hparams_file, split_file, *extra):
    return ["--input_dir", str(tiny.exp_dir), "--output_dir", str(run_dir), "--datasplit_dict", str(split_file),
            "--dataset", "era5", "--model", model, "--model_hparams_dict", str(hparams_file), *map(str, extra)]


def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def read_h5(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as store:
        store.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                         else None)
    return arrays


def assert_same_arrays(first: dict, second: dict, atol: float = 0.0) -> None:
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=0, atol=atol, err_msg=name)


def event_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TensorBoard event files in ``log_dir``, read with TensorFlow's own event reader."""
    import tensorflow as tf

    scalars: dict[str, list] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


@pytest.fixture(scope="module")
def reference_run(tiny_tfrecords, tmp_path_factory):
    """An uninterrupted run of :data:`RESUME_HPARAMS` (default checkpointing: the last step only)."""
    base = tmp_path_factory.mktemp("reference")
    hparams_file, split_file = write_inputs(base, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    run_dir = base / "run"
    assert train_main(train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file)) == 0
    return run_dir


# --- every model ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_MODELS else name
                                   for name in sorted(TINY_HPARAMS)])
def test_every_model_trains_and_writes_its_run_directory(model, tiny_tfrecords, tmp_path):
    from video_prediction_tools.models.registry import known_models

    assert sorted(TINY_HPARAMS) == known_models(), "a registered model lacks tiny hparams in this test"
    split = one_month_split(tiny_tfrecords)
    hparams = {**COMMON, **TINY_HPARAMS[model]}
    hparams_file, split_file = write_inputs(tmp_path, hparams, split)
    run_dir = tmp_path / "Models" / model / "run"  # created by the run
    steps_per_epoch = (72 - hparams["sequence_length"] + 1) // hparams["batch_size"]  # the 72-hour month
    steps = steps_per_epoch * hparams["max_epochs"]
    args = train_args(tiny_tfrecords, run_dir, model, hparams_file, split_file, "--val_interval", steps // 2)
    assert train_main(args) == 0

    resolved = json.loads((run_dir / "model_hparams.json").read_text())
    assert {key: resolved[key] for key in hparams} == hparams and resolved["sequence_length"] == 6
    assert json.loads((run_dir / "data_split.json").read_text()) == split
    options = json.loads((run_dir / "options.json").read_text())
    assert (options["model"], options["dataset"], options["seed"]) == (model, "era5", 1234)
    # normalisation: min-max of the raw training month, per channel (computed here from the raw values)
    (year, months), = split["train"].items()
    raw_train = tiny_tfrecords.raw[(int(year), months[0])][0]
    normalization = json.loads((run_dir / "normalization.json").read_text())
    assert normalization["method"] == "minmax"
    for channel, variable in enumerate(normalization["variables"]):
        assert normalization["stats"][variable]["min"] == pytest.approx(float(raw_train[..., channel].min()))
        assert normalization["stats"][variable]["max"] == pytest.approx(float(raw_train[..., channel].max()))

    train_rows = read_csv(run_dir / "train_losses.csv")
    assert [row["step"] for row in train_rows] == list(range(1, steps + 1))
    assert all(row["seconds"] > 0 for row in train_rows)
    losses = [row["loss"] for row in train_rows]
    # falling loss: the second epoch (the same windows in another order) has a lower mean loss than the first
    assert np.all(np.isfinite(losses)), losses
    assert np.mean(losses[steps_per_epoch:]) < np.mean(losses[:steps_per_epoch]), losses
    val_rows = read_csv(run_dir / "val_losses.csv")
    assert [row["step"] for row in val_rows] == [steps // 2, steps]
    assert all(np.isfinite(row["val_loss"]) and row["val_loss"] > 0 for row in val_rows)
    assert [c.name for c in checkpoints.complete_checkpoints(run_dir)] == [f"checkpoint_{steps}"]
    assert json.loads((run_dir / "best_checkpoint.json").read_text()) == {"step": steps,
                                                                          "val_loss": val_rows[-1]["val_loss"]}
    assert (run_dir / "plot_train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["total_steps"] == steps and results["samples_per_second"] > 0
    logged = json.loads((run_dir / "losses.json").read_text())
    assert len(logged["train"]) == steps and len(logged["val"]) == len(val_rows)
    train_events = event_scalars(run_dir / "logs" / "train")
    tracked = logged["tracked_loss"]
    assert [step for step, _ in train_events[tracked]] == list(range(1, steps + 1))
    np.testing.assert_allclose([value for _, value in train_events[tracked]], losses, rtol=1e-6)
    assert [step for step, _ in event_scalars(run_dir / "logs" / "val")["val_loss"]] == [row["step"]
                                                                                          for row in val_rows]
    # the run loads back as postprocessing loads it
    _, run = checkpoints.load_trained_model(run_dir)
    assert run.step == steps and run.model_name == model and run.hparams == resolved


@pytest.mark.slow  # trains the tiny run (tiny_trained_run), which no fast test needs
def test_validation_is_the_physical_mse_of_the_whole_val_split(tiny_trained_run, tiny_tfrecords):
    """Recompute the logged validation loss with numpy: every val window, forecast from its context only,
    denormalised, squared error of channel 0 (2t) in K²."""
    model, run = checkpoints.load_trained_model(tiny_trained_run)
    best = json.loads((tiny_trained_run / "best_checkpoint.json").read_text())
    assert run.step == best["step"] and run.checkpoint_dir.name == f"checkpoint_{best['step']}"
    (year, months), = run.datasplit["val"].items()
    data, times = tiny_tfrecords.raw[(int(year), months[0])]
    assert np.all(np.diff(times) == np.timedelta64(1, "h"))
    train_raw = np.concatenate([tiny_tfrecords.raw[(int(y), m)][0] for y, ms in run.datasplit["train"].items()
                                for m in ms])
    low, high = train_raw.min(axis=(0, 1, 2)), train_raw.max(axis=(0, 1, 2))
    length, context = run.hparams["sequence_length"], run.hparams["context_frames"]
    windows = np.stack([data[start:start + length] for start in range(len(data) - length + 1)])
    normalised = ((windows - low) / (high - low)).astype(np.float32)
    forecast = np.asarray(model.forecast(normalised[:, :context]), np.float64)
    physical = forecast[..., 0] * (high[0] - low[0]) + low[0]
    expected = np.mean((physical - windows[:, context:, ..., 0].astype(np.float64)) ** 2)
    logged = {row["step"]: row["val_loss"] for row in read_csv(tiny_trained_run / "val_losses.csv")}
    assert logged[run.step] == pytest.approx(expected, rel=1e-4)
    assert best["val_loss"] == pytest.approx(expected, rel=1e-4)


# --- resume --------------------------------------------------------------------------------------------------
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(reference_run, tiny_tfrecords, tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    stopped = tmp_path / "stopped"
    args = train_args(tiny_tfrecords, stopped, "convLSTM", hparams_file, split_file)
    assert train_main(args + ["--stop_after_steps", "6"]) == 0  # mid-epoch 1 (4 steps per epoch)
    assert [c.name for c in checkpoints.complete_checkpoints(stopped)] == ["checkpoint_6"]
    state = json.loads((stopped / "checkpoint_6" / "trainer_state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_index"], len(state["train_history"])) == (6, 1, 2, 6)

    assert train_main(args) == 0  # rerun into the same output dir: continues from checkpoint_6
    final = f"checkpoint_{RESUME_STEPS}"
    reference_state = read_h5(reference_run / final / "trainer_state.h5")  # model + Adam variables
    assert_same_arrays(read_h5(stopped / final / "trainer_state.h5"), reference_state, atol=1e-6)
    np.testing.assert_allclose([row["loss"] for row in read_csv(stopped / "train_losses.csv")],
                               [row["loss"] for row in read_csv(reference_run / "train_losses.csv")], rtol=1e-5)

    continued = tmp_path / "continued"  # --checkpoint: start a new run dir from another run's checkpoint
    assert train_main(train_args(tiny_tfrecords, continued, "convLSTM", hparams_file, split_file,
                                 "--checkpoint", stopped / "checkpoint_6")) == 0
    assert_same_arrays(read_h5(continued / final / "trainer_state.h5"), reference_state, atol=1e-6)


@pytest.mark.slow
def test_sigkill_during_training_resumes_from_the_last_complete_checkpoint(reference_run, tiny_tfrecords, tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    run_dir = tmp_path / "run"
    # a checkpoint at every step, so the kill most likely lands in the middle of writing one
    args = train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file,
                      "--frac_start_save", 0, "--frac_intv_save", 1 / RESUME_STEPS)
    process = subprocess.Popen([PYTHON, "-m", TRAIN_MODULE, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    deadline = time.monotonic() + 300
    while len(checkpoints.complete_checkpoints(run_dir)) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "training produced no checkpoints"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_done = [checkpoints.checkpoint_step(c) for c in checkpoints.complete_checkpoints(run_dir)]
    assert 3 <= max(steps_done) < RESUME_STEPS, steps_done
    # what a kill inside atomic_directory leaves: a hidden temporary directory with a truncated file
    leftover = run_dir / f".checkpoint_{max(steps_done) + 1}.tmp-killed"
    leftover.mkdir(exist_ok=True)
    (leftover / "model.weights.h5").write_bytes(b"\x89HDF\r\n")

    result = run_module(TRAIN_MODULE, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {run_dir / f'checkpoint_{max(steps_done)}'}" in result.stderr
    assert not list(run_dir.glob(".*.tmp-*"))
    final = f"checkpoint_{RESUME_STEPS}"
    assert_same_arrays(read_h5(run_dir / final / "model.weights.h5"),
                       read_h5(reference_run / final / "model.weights.h5"), atol=1e-6)


@pytest.mark.slow
def test_sigkill_right_after_the_final_checkpoint_is_completed_by_a_rerun(reference_run, tiny_tfrecords, tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    run_dir = tmp_path / "run"
    args = train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file, "--frac_start_save", 0.25,
                      "--frac_intv_save", 0.125)  # checkpoints at steps 4, 6, ..., 16; best and last kept
    process = subprocess.Popen([PYTHON, "-m", TRAIN_MODULE, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    final = run_dir / f"checkpoint_{RESUME_STEPS}"
    deadline = time.monotonic() + 300
    while not checkpoints.is_complete(final) and process.poll() is None:
        assert time.monotonic() < deadline, "training wrote no final checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoints.is_complete(final) and not (run_dir / "results.json").exists(), "killed too late"

    result = run_module(TRAIN_MODULE, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training already finished" in result.stderr
    val = {int(row["step"]): row["val_loss"] for row in read_csv(run_dir / "val_losses.csv")}
    best = min(range(4, RESUME_STEPS + 1, 2), key=lambda step: val[step])
    assert [checkpoints.checkpoint_step(c) for c in checkpoints.complete_checkpoints(run_dir)] == sorted(
        {best, RESUME_STEPS})
    assert json.loads((run_dir / "best_checkpoint.json").read_text()) == {"step": best, "val_loss": val[best]}
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["step"], results["best_step"], results["best_val_loss"]) == (RESUME_STEPS, best, val[best])
    np.testing.assert_allclose([row["loss"] for row in read_csv(run_dir / "train_losses.csv")],
                               [row["loss"] for row in read_csv(reference_run / "train_losses.csv")], rtol=1e-5)
    logged = json.loads((run_dir / "losses.json").read_text())
    assert len(logged["train"]) == RESUME_STEPS and [row["step"] for row in logged["val"]] == sorted(val)
    assert (run_dir / "plot_train.png").is_file()


def test_best_model_selection_keeps_the_best_and_the_last_checkpoint(tiny_tfrecords, tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    run_dir = tmp_path / "run"
    # checkpoints at steps 4, 6, ..., 16 (start 0.25 x 16, every 0.125 x 16)
    assert train_main(train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file,
                                 "--frac_start_save", 0.25, "--frac_intv_save", 0.125)) == 0
    val = {int(row["step"]): row["val_loss"] for row in read_csv(run_dir / "val_losses.csv")}
    saved_steps = list(range(4, RESUME_STEPS + 1, 2))
    assert set(saved_steps) <= set(val)
    best = min(saved_steps, key=lambda step: val[step])
    kept = sorted({best, RESUME_STEPS})
    assert [checkpoints.checkpoint_step(c) for c in checkpoints.complete_checkpoints(run_dir)] == kept
    assert json.loads((run_dir / "best_checkpoint.json").read_text()) == {"step": best, "val_loss": val[best]}
    assert [path.name for path in run_dir.glob(".*")] == [LOCK_FILE]  # the lock file stays, unlocked
    _, run = checkpoints.load_trained_model(run_dir)
    assert run.step == best
    _, run = checkpoints.load_trained_model(run_dir / f"checkpoint_{RESUME_STEPS}")
    assert run.step == RESUME_STEPS

    # a run killed right after its final checkpoint: no results, loss logs, best pointer or plot yet, and a
    # checkpoint that pruning would have deleted; the rerun completes the end-of-run work from the trainer state
    end_files = ["results.json", "train_losses.csv", "val_losses.csv", "losses.json", "best_checkpoint.json"]
    finished = {name: (run_dir / name).read_bytes() for name in end_files}
    for name in [*end_files, "plot_train.png"]:
        (run_dir / name).unlink()
    pruned = next(step for step in saved_steps if step not in kept)
    shutil.copytree(run_dir / f"checkpoint_{RESUME_STEPS}", run_dir / f"checkpoint_{pruned}")
    result = run_module(TRAIN_MODULE, *train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file,
                                                  "--frac_start_save", 0.25, "--frac_intv_save", 0.125))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training already finished" in result.stderr
    assert {name: (run_dir / name).read_bytes() for name in end_files} == finished
    assert (run_dir / "plot_train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [checkpoints.checkpoint_step(c) for c in checkpoints.complete_checkpoints(run_dir)] == kept
    results = json.loads(finished["results.json"])
    seconds = [row["seconds"] for row in read_csv(run_dir / "train_losses.csv")]
    assert (results["best_step"], results["step"]) == (best, RESUME_STEPS)
    assert results["train_time"] == pytest.approx(sum(seconds), rel=1e-9)
    assert results["mean_seconds_per_step"] == pytest.approx(np.mean(seconds[1:]), rel=1e-9)  # no tracing step


# --- same run, end-of-run work, divergence ---------------------------------------------------------------------
@pytest.mark.slow
def test_a_rerun_resumes_only_the_same_run(tiny_tfrecords, tmp_path):
    """Split, hyper-parameters, seed and input data define the run: a rerun differing in any is refused with one
    line naming it; the identical rerun resumes; --start_over trains the changed run from scratch."""
    exp_dir = tmp_path / "PreprocessedData" / tiny_tfrecords.exp_dir.name
    shutil.copytree(tiny_tfrecords.exp_dir, exp_dir)  # a copy whose files this test may touch
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    other_hparams, other_split = write_inputs(tmp_path / "other", {**RESUME_HPARAMS, "lr": 0.02},
                                              one_month_split(tiny_tfrecords))
    run_dir = tmp_path / "run"

    def args(hparams=hparams_file, split=split_file, *extra):
        return ["--input_dir", str(exp_dir), "--output_dir", str(run_dir), "--datasplit_dict", str(split),
                "--model", "convLSTM", "--model_hparams_dict", str(hparams), *map(str, extra)]

    assert train_main(args(hparams_file, split_file, "--stop_after_steps", 2)) == 0
    identity = json.loads((run_dir / "run_identity.json").read_text())
    assert (identity["seed"], identity["data_split"], identity["hparams"]) == (
        1234, tiny_tfrecords.datasplit, json.loads((run_dir / "model_hparams.json").read_text()))
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}

    # a split by dates that cuts February: another split too
    _, date_split = write_inputs(tmp_path / "dates", RESUME_HPARAMS, {
        **tiny_tfrecords.datasplit, "train": [["2017-01-01T00", "2017-01-03T23"], ["2017-02-01T00", "2017-02-02T23"]]})
    refused = [("data split", args(hparams_file, other_split)), ("data split", args(hparams_file, date_split)),
               ("hyper-parameters (lr: 0.01 → 0.02)", args(other_hparams, split_file)),
               ("--seed", args(hparams_file, split_file, "--seed", 99))]
    for fragment, rerun in refused:
        with pytest.raises(UserError, match="holds another run") as error:
            train_main(rerun)
        assert fragment in str(error.value) and "--start_over" in str(error.value), str(error.value)
    month_file = sorted((exp_dir / "tfrecords").glob("*2017*.tfrecords"))[0]
    original = month_file.read_bytes()
    month_file.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # same size, other content
    result = run_module(TRAIN_MODULE, *args())
    assert_user_error(result, str(run_dir), "input data", "differ", "new exp_id", "--start_over")
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before
    month_file.write_bytes(original)  # rewritten with the original bytes: a new mtime, the same input

    assert train_main(args(hparams_file, split_file, "--stop_after_steps", 2)) == 0  # the same run: resumes
    assert [checkpoints.checkpoint_step(c) for c in checkpoints.complete_checkpoints(run_dir)] == [2, 4]

    bad_hparams, _ = write_inputs(tmp_path / "bad", {**RESUME_HPARAMS, "lr": -1.0}, tiny_tfrecords.datasplit)
    with pytest.raises(UserError, match="'lr'.*greater than 0"):  # invalid inputs: nothing is deleted
        train_main(args(bad_hparams, other_split, "--start_over"))
    assert [checkpoints.checkpoint_step(c) for c in checkpoints.complete_checkpoints(run_dir)] == [2, 4]
    assert train_main(args(other_hparams, other_split, "--stop_after_steps", 1, "--start_over")) == 0
    assert [c.name for c in checkpoints.complete_checkpoints(run_dir)] == ["checkpoint_1"]
    assert json.loads((run_dir / "data_split.json").read_text()) == one_month_split(tiny_tfrecords)
    assert json.loads((run_dir / "run_identity.json").read_text())["hparams"]["lr"] == 0.02
    assert [row["step"] for row in read_csv(run_dir / "train_losses.csv")] == [1]


@pytest.mark.parametrize("bad, fragments", [({"lr": math.nan}, ["'lr'", "finite", "nan"]),
                                            ({"lr": -0.01}, ["'lr'", "greater than 0", "-0.01"]),
                                            ({"batch_size": 0}, ["'batch_size'", ">= 1", "got 0"])])
def test_out_of_range_hyperparameters_are_refused_before_anything_is_written(bad, fragments, tiny_tfrecords,
                                                                             tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, {**RESUME_HPARAMS, **bad}, tiny_tfrecords.datasplit)
    result = run_module(TRAIN_MODULE, *train_args(tiny_tfrecords, tmp_path / "run", "convLSTM", hparams_file,
                                                  split_file))
    assert_user_error(result, str(hparams_file), *fragments)
    assert not (tmp_path / "run").exists()


def test_a_non_finite_loss_stops_training_without_saving(tiny_tfrecords, tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    run_dir = tmp_path / "run"
    args = train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file)
    assert train_main(args + ["--stop_after_steps", "2"]) == 0
    # weights that have blown up: every model variable of the checkpoint's trainer state becomes NaN
    with h5py.File(run_dir / "checkpoint_2" / "trainer_state.h5", "r+") as store:
        for name in store["model"]:
            if store["model"][name].dtype.kind == "f":
                store["model"][name][...] = np.nan
    result = run_module(TRAIN_MODULE, *args)
    assert_user_error(result, "training diverged at step 3", "total_loss = nan")
    assert [c.name for c in checkpoints.complete_checkpoints(run_dir)] == ["checkpoint_2"]
    assert json.loads((run_dir / "best_checkpoint.json").read_text())["step"] == 2
    assert [row["step"] for row in read_csv(run_dir / "train_losses.csv")] == [1, 2]


# --- distribution --------------------------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_match_one_process_with_the_same_global_batch(reference_run, tiny_tfrecords, tmp_path):
    hparams_file, split_file = write_inputs(tmp_path, RESUME_HPARAMS, tiny_tfrecords.datasplit)
    run_dir = tmp_path / "run"
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2")
        processes.append(subprocess.Popen(
            [PYTHON, "-m", TRAIN_MODULE, *train_args(tiny_tfrecords, run_dir, "convLSTM", hparams_file, split_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["replicas"], results["global_batch_size"]) == (2, 32)
    final = run_dir / f"checkpoint_{RESUME_STEPS}"
    chief_weights = read_h5(final / "model.weights.h5")
    assert_same_arrays(read_h5(run_dir / "worker_1.weights.h5"), chief_weights)  # replicas in sync, bit for bit
    assert_same_arrays(chief_weights, read_h5(reference_run / final.name / "model.weights.h5"), atol=1e-5)
    np.testing.assert_allclose([row["loss"] for row in read_csv(run_dir / "train_losses.csv")],
                               [row["loss"] for row in read_csv(reference_run / "train_losses.csv")], rtol=1e-4)
    np.testing.assert_allclose([row["val_loss"] for row in read_csv(run_dir / "val_losses.csv")],
                               [row["val_loss"] for row in read_csv(reference_run / "val_losses.csv")], rtol=1e-4)


MIRRORED_SCRIPT = """
import json, sys
import keras, numpy as np, tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
from video_prediction_tools.models.registry import build_model
from video_prediction_tools.training.distribute import distribute_batch
from video_prediction_tools.training.trainer import build_optimizers, make_train_step

def train(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("convLSTM", json.loads(sys.argv[1]), frame_shape=(8, 12, 3))
        phases = model.optimization_phases()
        step = make_train_step(strategy, model, phases, build_optimizers(model, phases))
    batch = np.random.default_rng(1).uniform(size=(4, 6, 8, 12, 3)).astype("float32")
    losses = [float(step(distribute_batch(strategy, batch), tf.constant(i, tf.int64))["generator_loss"])
              for i in range(4)]
    shares = [share.numpy() for share in strategy.experimental_local_results(distribute_batch(strategy, batch))]
    assert np.array_equal(np.concatenate(shares), batch) and len(shares) == strategy.num_replicas_in_sync
    return {"replicas": strategy.num_replicas_in_sync, "losses": losses,
            "weights": [v.numpy().ravel().tolist() for v in model.trainable_variables]}

print(json.dumps([train(tf.distribute.get_strategy()),
                  train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_devices_matches_one_device():
    """The several-GPUs path (MirroredStrategy, each replica taking its share of the global batch) on two logical
    CPU devices: the same losses and weights as one device on the same global batch."""
    hparams = {**COMMON, **TINY_HPARAMS["convLSTM"], "batch_size": 4}
    result = subprocess.run([PYTHON, "-c", MIRRORED_SCRIPT, json.dumps(hparams)], capture_output=True, text=True,
                            cwd=REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    single, mirrored = json.loads(result.stdout.strip().splitlines()[-1])
    assert (single["replicas"], mirrored["replicas"]) == (1, 2)
    np.testing.assert_allclose(mirrored["losses"], single["losses"], rtol=1e-5)
    assert single["losses"][-1] < single["losses"][0]          # the same batch four times: it is learnt
    for got, expected in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


# --- bad inputs ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bad_inputs_end_with_one_clear_line(tiny_tfrecords, tmp_path):
    hparams = {**COMMON, **TINY_HPARAMS["convLSTM"]}
    hparams_file, split_file = write_inputs(tmp_path, hparams, tiny_tfrecords.datasplit)
    other_model = tmp_path / "vae.json"
    other_model.write_text(json.dumps({"nz": 2}))
    empty_split = tmp_path / "empty_split.json"
    empty_split.write_text(json.dumps({**tiny_tfrecords.datasplit, "train": {}}))
    vae_run = tmp_path / "vae_run"
    vae_run.mkdir()
    (vae_run / "options.json").write_text(json.dumps({"model": "vae", "dataset": "era5"}))

    def run(run_dir, hparams_path=hparams_file, split_path=split_file, input_dir=tiny_tfrecords.exp_dir, *extra):
        return run_module(TRAIN_MODULE, "--input_dir", input_dir, "--output_dir", run_dir, "--datasplit_dict",
                          split_path, "--model", "convLSTM", "--model_hparams_dict", hparams_path, *extra)

    assert_user_error(run(tmp_path / "a", input_dir=tmp_path / "nope"), "--input_dir", "nope", "does not exist")
    assert_user_error(run(tmp_path / "b", split_path=empty_split), "no months", "train")
    assert_user_error(run(tmp_path / "c", hparams_path=other_model), "vae.json", "'nz'", "convLSTM")
    assert_user_error(run(vae_run), "vae_run", "vae", "convLSTM")
    assert_user_error(run(tmp_path / "d", hparams_file, split_file, tiny_tfrecords.exp_dir, "--frac_start_save",
                          "1.5"), "--frac_start_save", "[0, 1]")
    assert_user_error(run(tmp_path / "e", hparams_file, split_file, tiny_tfrecords.exp_dir, "--frac_intv_save", "0"),
                      "--frac_intv_save")
    assert_user_error(run(tmp_path / "f", hparams_file, split_file, tiny_tfrecords.exp_dir, "--seed",
                          "99999999999999999999"), "--seed 99999999999999999999", "0..4294967295")
    assert not any((tmp_path / name).exists() for name in "abcdef")
    assert sorted(p.name for p in vae_run.iterdir()) == ["options.json"]


def test_loading_a_missing_or_incomplete_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        checkpoints.load_trained_model(tmp_path / "nope")
    (tmp_path / "options.json").write_text("{}")
    with pytest.raises(UserError, match="no complete checkpoint_"):
        checkpoints.load_trained_model(tmp_path)
    incomplete = tmp_path / "checkpoint_5"
    incomplete.mkdir()
    (incomplete / "model.weights.h5").write_bytes(b"")
    with pytest.raises(UserError, match="incomplete"):
        checkpoints.load_trained_model(incomplete)
    with pytest.raises(UserError, match="no complete checkpoint_"):
        checkpoints.load_trained_model(tmp_path)


def test_loss_logs_written_in_the_background_hold_the_histories_of_the_request(tmp_path):
    """The loss-log thread writes the histories as they were when asked (later steps are not in those files),
    the last request wins, and an error in the thread reaches the training loop."""
    from types import SimpleNamespace

    from video_prediction_tools.training.run_logs import LossLogWriter

    state = SimpleNamespace(train_history=[], val_history=[])
    writer = LossLogWriter(tmp_path, "total_loss")
    for step in range(1, 5):
        state.train_history.append({"step": step, "epoch": 0, "seconds": 0.5, "loss": 1.0 / step})
        if step % 2 == 0:
            state.val_history.append({"step": step, "val_loss": 2.0 / step})
            writer.submit(state)
    state.train_history.append({"step": 5, "epoch": 0, "seconds": 0.5, "loss": 0.2})  # after the last request
    writer.close()
    with open(tmp_path / "train_losses.csv") as rows:
        assert [float(row["loss"]) for row in csv.DictReader(rows)] == [1.0, 0.5, 1 / 3, 0.25]
    with open(tmp_path / "val_losses.csv") as rows:
        assert [(int(row["step"]), float(row["val_loss"])) for row in csv.DictReader(rows)] == [(2, 1.0), (4, 0.5)]
    assert json.loads((tmp_path / "losses.json").read_text())["train"][-1]["step"] == 4
    assert (tmp_path / "plot_train.png").read_bytes()[:4] == b"\x89PNG"

    (tmp_path / "a_file").write_text("")
    failing = LossLogWriter(tmp_path / "a_file", "total_loss")  # a file where the run directory should be
    failing.submit(state)
    with pytest.raises(OSError):
        failing.close()
