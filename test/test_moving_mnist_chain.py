"""Moving MNIST through the runscript generator: the dataset question, the conversion, training and
postprocessing runscripts (answers mode and bash -n / shellcheck), and (slow) the whole chain run through the
generated runscripts in workstation mode on sequences generated from real MNIST digits, with the baseline's
per-frame MSE recomputed here from the raw file."""
from __future__ import annotations

import json
from pathlib import Path
import subprocess

import numpy as np
import pytest
import xarray as xr
import yaml

from fixtures.common import BIN_DIR, assert_user_error, run_module
from fixtures.generator import (DOWN, ENTER, assert_clean_shell, make_venv, only_runscript, plant_checkpoint, run_wizard,
                                typed, variable_line)
from video_prediction_tools.datasets.moving_mnist import convert_moving_mnist, generate_moving_mnist, \
    load_mnist_digits, write_raw_file
from video_prediction_tools.runscript_generator import wizard
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.settings import create_base_tree

GENERATOR = "video_prediction_tools.main_scripts.main_generate_runscript"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEQUENCES = 16
SPLIT = {"train": {"index1": [0, 9]}, "val": {"index1": [10, 11]}, "test": {"index1": [12, 15]}}
#: a convLSTM small enough for a CPU test: 4 features, one epoch of 10 sequences
HPARAMS = {"batch_size": 5, "lr": 0.001, "max_epochs": 1, "context_frames": 10, "sequence_length": 20,
           "loss_fun": "cross_entropy", "normalization": "minmax", "num_features": 4}


@pytest.fixture(scope="module")
def mnist_base(tmp_path_factory):
    """A base directory and a generated ``mnist_test_seq.npy`` (16 sequences from real MNIST digits)."""
    root = tmp_path_factory.mktemp("mnist_chain")
    base = root / "base"
    create_base_tree(base)
    raw = root / "data" / "mnist_test_seq.npy"
    write_raw_file(generate_moving_mnist(load_mnist_digits(), SEQUENCES, seed=21), raw)
    return root, base, raw


def generate(tmp, venv, answers: dict, *options: str):
    """Run the generator from an answers file; return the new runscript."""
    runscripts = tmp / "runscripts"
    before = set(runscripts.glob("*.sh")) if runscripts.is_dir() else set()
    answers_file = tmp / f"answers_{len(before)}.yaml"
    answers_file.write_text(yaml.safe_dump(answers))
    assert wizard.main(["--venv_path", str(venv), "--answers", str(answers_file), "--runscript_dir",
                        str(runscripts), *options]) == 0
    new = sorted(set(runscripts.glob("*.sh")) - before)
    assert len(new) == 1, new
    return new[0]


def test_generator_renders_the_moving_mnist_steps(mnist_base, tmp_path):
    root, base, raw = mnist_base
    venv = make_venv(tmp_path, base)
    script = generate(tmp_path, venv, {"dataset": "moving_mnist", "step": "convert", "source": str(raw)})
    assert script.name == "preprocess_data_moving_mnist.sh"
    assert variable_line(script, "DEST_DIR") == str(base / "PreprocessedData" / "moving_mnist" / "tfrecords")
    assert "main_preprocess_moving_mnist" in script.read_text()
    assert_clean_shell(script)
    # the step implies the dataset; the saved answers regenerate the same runscript
    saved = yaml.safe_load(script.with_name(script.name + ".answers.yaml").read_text())
    assert saved["dataset"] == "moving_mnist" and saved["step"] == "convert"

    convert_moving_mnist(raw, base / "PreprocessedData" / "moving_mnist" / "tfrecords")
    train = generate(tmp_path, venv, {"step": "train", "dataset": "moving_mnist", "experiment": "moving_mnist",
                                      "model": "convLSTM", "exp_id": "mm", "datasplit": SPLIT, "hparams": HPARAMS})
    assert train.name.startswith("train_model_moving_mnist_") and "--dataset moving_mnist" in train.read_text()
    # the run directory is made by the training; until then the data split waits next to the runscript
    run_dir = Path(yaml.safe_load(train.with_name(train.name + ".answers.yaml").read_text())["derived"]["run_dir"])
    assert run_dir.parent == base / "Models" / "moving_mnist" / "convLSTM" and not run_dir.exists()
    split_file = train.with_name(train.stem + "_data_split.json")
    assert variable_line(train, "DATASPLIT_DICT") == str(split_file)
    assert json.loads(split_file.read_text()) == SPLIT
    assert_clean_shell(train)

    run_dir.mkdir(parents=True)  # as the training would
    plant_checkpoint(run_dir, 4, complete=True)
    post = generate(tmp_path, venv, {"step": "postprocess", "dataset": "moving_mnist", "experiment": "moving_mnist",
                                     "model": "convLSTM", "run": run_dir.name, "checkpoint": "checkpoint_4"})
    assert post.name == f"visualize_postprocess_moving_mnist_{run_dir.name}.sh"
    assert variable_line(post, "CHECKPOINT") == str(run_dir / "checkpoint_4")
    assert_clean_shell(post)


def test_interactive_dataset_question_leads_to_the_moving_mnist_steps(mnist_base, tmp_path):
    _, base, raw = mnist_base
    venv = make_venv(tmp_path, base)
    keys = (DOWN + ENTER                 # dataset: moving_mnist (second in the list)
            + ENTER                      # step: convert (first of the Moving MNIST steps)
            + str(raw) + ENTER           # the Moving MNIST file
            + typed("mm_small"))         # experiment name
    assert run_wizard(tmp_path, venv, keys) == 0
    script = only_runscript(tmp_path)
    assert script.name == "preprocess_data_moving_mnist.sh"
    assert variable_line(script, "DEST_DIR") == str(base / "PreprocessedData" / "mm_small" / "tfrecords")
    saved = yaml.safe_load(script.with_name(script.name + ".answers.yaml").read_text())
    assert saved["dataset"] == "moving_mnist" and saved["source"] == str(raw)


def test_generator_refuses_bad_moving_mnist_answers(mnist_base, tmp_path):
    root, base, raw = mnist_base
    venv = make_venv(tmp_path, base)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((20, 2, 8, 8), np.float32))
    cases = [({"step": "convert", "source": str(bad)}, "uint8"),
             ({"step": "extract", "dataset": "moving_mnist"},
              "moving_mnist of the answers file does not match step extract"),
             ({"step": "convert", "dataset": "era5", "source": str(raw)}, "does not match")]
    for answers, fragment in cases:
        answers_file = tmp_path / "answers.yaml"
        answers_file.write_text(yaml.safe_dump(answers))
        with pytest.raises(UserError, match=fragment):
            wizard.main(["--venv_path", str(venv), "--answers", str(answers_file)])
    convert_moving_mnist(raw, base / "PreprocessedData" / "moving_mnist" / "tfrecords")
    answers_file.write_text(yaml.safe_dump({"step": "train", "dataset": "moving_mnist", "model": "convLSTM",
                                            "experiment": "moving_mnist", "exp_id": "x", "hparams": HPARAMS,
                                            "datasplit": {"train": {"index1": [0, 16]}}}))
    result = run_module(GENERATOR, "--venv_path", venv, "--answers", answers_file, "--runscript_dir", tmp_path)
    assert_user_error(result, "datasplit", "16")
    # the models offered are the registry's models with a Moving MNIST template
    answers_file.write_text(yaml.safe_dump({"step": "train", "dataset": "moving_mnist", "model": "mcnet",
                                            "experiment": "moving_mnist", "exp_id": "x"}))
    with pytest.raises(UserError, match="'model' .*'mcnet' is not one of: convLSTM, simvp, tau$"):
        wizard.main(["--venv_path", str(venv), "--answers", str(answers_file)])


def test_chain_mode_offers_the_run_a_generated_training_will_make(mnist_base, tmp_path):
    """With --chain, postprocessing is generated for the run of a training runscript that has not run yet."""
    root, base, raw = mnist_base
    venv = make_venv(tmp_path, base)
    convert_moving_mnist(raw, base / "PreprocessedData" / "moving_mnist" / "tfrecords")
    train = generate(tmp_path, venv, {"step": "train", "dataset": "moving_mnist", "experiment": "moving_mnist",
                                      "model": "convLSTM", "exp_id": "planned", "datasplit": SPLIT, "hparams": HPARAMS})
    run = yaml.safe_load(train.with_name(train.name + ".answers.yaml").read_text())["derived"]["exp_id"]
    post = generate(tmp_path, venv, {"step": "postprocess", "dataset": "moving_mnist", "experiment": "moving_mnist",
                                     "model": "convLSTM", "run": run}, "--chain")
    assert variable_line(post, "CHECKPOINT") == str(base / "Models" / "moving_mnist" / "convLSTM" / run)


# ---------------------------------------------------------------------------------------------- the whole chain
@pytest.fixture(scope="module")
def chain(mnist_base, tmp_path_factory):
    """Generate and run (bash) the conversion, training and postprocessing runscripts one after the other."""
    root, _, raw = mnist_base
    tmp = tmp_path_factory.mktemp("mnist_run")
    base = tmp / "base"
    create_base_tree(base)
    # the runscripts activate this venv: it puts the test interpreter's environment first on PATH
    venv = make_venv(tmp, base, activate=f'export PATH="{BIN_DIR}:$PATH"\n')

    def run(script):
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    run(generate(tmp, venv, {"dataset": "moving_mnist", "step": "convert", "source": str(raw)}))
    run(generate(tmp, venv, {"step": "train", "dataset": "moving_mnist", "experiment": "moving_mnist",
                             "model": "convLSTM", "exp_id": "e2e", "datasplit": SPLIT, "hparams": HPARAMS}))
    run_dir = next((base / "Models" / "moving_mnist" / "convLSTM").iterdir())
    post = run(generate(tmp, venv, {"step": "postprocess", "dataset": "moving_mnist", "experiment": "moving_mnist",
                                    "model": "convLSTM", "run": run_dir.name, "batch_size": 3}))
    return base, run_dir, base / "Results" / "moving_mnist" / "convLSTM" / run_dir.name, post.stdout + post.stderr


@pytest.mark.slow
def test_chain_scores_and_baseline_by_hand(chain, mnist_base):
    base, run_dir, results, log = chain
    raw = np.load(mnist_base[2]).astype(np.float64) / 255.0  # [frames, sequences, 64, 64]
    assert (run_dir / "best_checkpoint.json").is_file() or list(run_dir.glob("checkpoint_*"))
    with xr.open_dataset(results / "evaluation_metrics.nc") as evaluation:
        assert evaluation["sequence"].values.tolist() == [12, 13, 14, 15]
        assert evaluation["frame"].values.tolist() == list(range(1, 11))
        # copy-last-frame: frame 10 (index 9) against frames 11..20, per pixel and summed over the frame
        difference = raw[10:20, 12:16] - raw[9:10, 12:16]
        expected = (difference ** 2).mean(axis=(2, 3)).T
        np.testing.assert_allclose(evaluation["copy_last_frame_mse"].values, expected, rtol=1e-6)
        np.testing.assert_allclose(evaluation["copy_last_frame_mse_frame"].values, expected * 4096, rtol=1e-6)
        np.testing.assert_allclose(evaluation["copy_last_frame_mae"].values,
                                   np.abs(difference).mean(axis=(2, 3)).T, rtol=1e-6)
        np.testing.assert_allclose(evaluation["copy_last_frame_mse_avg"].values, expected.mean(axis=0), rtol=1e-6)
        for name in ("mse", "mse_frame", "mae", "mae_frame", "ssim", "psnr"):
            assert np.isfinite(evaluation[f"convLSTM_{name}"].values).all(), name
        model_mse = evaluation["convLSTM_mse"].values
        np.testing.assert_allclose(evaluation["convLSTM_mse_frame"].values, model_mse * 4096, rtol=1e-9)
    rows = (results / "summary_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("frame,convLSTM_mse,") and rows[-1].startswith("all,") and len(rows) == 12
    pngs = sorted(path.name for path in results.glob("*.png"))
    assert "evaluation_mse_frame.png" in pngs and "evaluation_ssim.png" in pngs
    examples = [name for name in pngs if name.startswith("example_sequence_")]
    assert {name.rsplit("_", 1)[1] for name in examples} == {"best.png", "median.png", "worst.png"}
    for name in pngs:
        assert (results / name).read_bytes()[:8] == PNG_MAGIC
    assert "copy_last_frame" in log


@pytest.mark.slow
def test_postprocess_of_a_moving_mnist_run_refuses_era5_options(chain, tmp_path):
    _, run_dir, _, _ = chain
    module = "video_prediction_tools.main_scripts.main_visualize_postprocess"
    assert_user_error(run_module(module, "--checkpoint", run_dir, "--results_dir", tmp_path / "r",
                                 "--evaluation_metrics", "mse", "acc"), "acc", "Moving MNIST")
    assert_user_error(run_module(module, "--checkpoint", run_dir, "--results_dir", tmp_path / "r",
                                 "--num_stochastic_samples", "2"), "--num_stochastic_samples 2")
    for option, value, reason in (("--block_length", "12", "not block-bootstrapped"),
                                  ("--nboots", "50", "not block-bootstrapped"), ("--channel", "1", "one channel"),
                                  ("--overwrite", None, "always rewritten"),
                                  ("--sample_compression", "zlib", "no per-sample files")):
        extra = [option] if value is None else [option, value]
        assert_user_error(run_module(module, "--checkpoint", run_dir, "--results_dir", tmp_path / "r", *extra),
                          option, "no effect on Moving MNIST", reason)
    assert not (tmp_path / "r").exists()
