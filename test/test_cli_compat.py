"""The original AMBS's CLI habits: every main script runs by path, and the original's option spellings are
accepted (short forms), mapped with a one-line notice, or refused with one line naming the replacement."""
import os
import subprocess

import pytest

from fixtures.common import PYTHON, REPO_ROOT, assert_user_error
from video_prediction_tools.main_scripts import (main_preprocess_data_step1, main_train_models,
                                                 main_visualize_postprocess)

MAIN_SCRIPTS = sorted(path.name for path in (REPO_ROOT / "video_prediction_tools" / "main_scripts").glob("main_*.py"))


def run_by_path(script: str, *args, cwd, python_options=()):
    """``python video_prediction_tools/main_scripts/<script> <args>`` as the original's runscripts call it, from
    another directory and without PYTHONPATH: only the script's own location tells Python where the code is."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([PYTHON, *python_options, str(REPO_ROOT / "video_prediction_tools" / "main_scripts" / script),
                           *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_the_original_main_scripts_are_all_tested():
    original = {"main_data_extraction.py", "main_preprocess_data_step1.py", "main_preprocess_data_step2.py",
                "main_train_models.py", "main_visualize_postprocess.py", "main_meta_postprocess.py"}
    assert original <= set(MAIN_SCRIPTS)


@pytest.mark.parametrize("script", MAIN_SCRIPTS)
def test_every_main_script_runs_by_path(script, tmp_path):
    result = run_by_path(script, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: ") and "ImportError" not in result.stderr


@pytest.mark.slow
def test_a_script_run_by_path_runs_this_checkout(tmp_path):
    """The error comes from the training code, not from an import, and that code is this checkout's (python -v
    names the file of every imported module), even where another copy of the package is installed."""
    result = run_by_path("main_train_models.py", "-input_dir", tmp_path / "none", "-output_dir", tmp_path / "run",
                         "-datasplit_dict", tmp_path / "split.json", "-model", "convLSTM", cwd=tmp_path,
                         python_options=("-v",))
    assert_user_error(result, f"--input_dir {tmp_path / 'none'}: directory does not exist")
    errors_module = REPO_ROOT / "video_prediction_tools" / "utils" / "errors.py"
    imported = [line for line in result.stderr.splitlines() if "video_prediction_tools" in line
                and "errors.py" in line and line.startswith("# ")]
    assert imported and all(str(errors_module) in line for line in imported), imported


def test_step1_short_forms_and_dropped_options(capsys):
    args = main_preprocess_data_step1.parse_arguments(
        ["-src_dir", "Extracted", "-dest_dir", "Preprocessed", "-y", "2017", "--vars", "2t", "tcc", "t_850",
         "-swc", "38.4", "0.0", "-nyx", "56", "92", "--rsync_status", "1", "-exp_id", "exp1"])
    assert (args.source_dir, args.destination_dir, args.years) == ("Extracted", "Preprocessed", [2017])
    assert args.sw_corner == [38.4, 0.0] and args.nyx == [56, 92]
    assert not any(key.startswith("legacy") for key in vars(args))      # nothing of them reaches the options
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["NOTE: --rsync_status is ignored: every month that is not finished yet is processed "
                     "(--overwrite redoes finished ones)",
                     "NOTE: -exp_id is ignored: the experiment directory is named after the years, domain and "
                     "variables; a run is named at training (--output_dir)"]


def test_training_accepts_gpu_mem_frac_and_test_mode_with_notices(capsys):
    args = main_train_models.parse_args(["-input_dir", "in", "-output_dir", "out", "-datasplit_dict", "split.json",
                                         "-model", "convLSTM", "--gpu_mem_frac", "0.99", "-test"])
    assert set(vars(args)) == set(vars(main_train_models.parse_args(
        ["--input_dir", "in", "--output_dir", "out", "--datasplit_dict", "split.json", "--model", "convLSTM"])))
    err = capsys.readouterr().err
    assert "NOTE: --gpu_mem_frac is ignored: TensorFlow takes GPU memory as it needs it" in err
    assert "NOTE: -test is ignored: the best checkpoint is chosen on the validation loss" in err


def test_postprocessing_maps_metric_quick_and_test_mode(capsys):
    args = main_visualize_postprocess.parse_args(
        ["--checkpoint", "run", "--results_dir", "res", "-lquick", "-metric_quick", "acc", "-clim_fl", "c.nc",
         "-test", "--gpu_mem_frac", "0.95", "-channel", "2"])
    assert args.evaluation_metrics == ["acc"] and args.block_length == 1
    assert args.climatology_file == "c.nc" and args.lquick_evaluation and args.channel == 2
    assert capsys.readouterr().err.splitlines() == [
        "NOTE: -metric_quick is taken as --evaluation_metrics acc", "NOTE: -test is taken as --block_length 1",
        "NOTE: --gpu_mem_frac is ignored: TensorFlow takes GPU memory as it needs it"]


@pytest.mark.parametrize("option", ["-f_dt", "--frac_data"])
def test_frac_data_is_refused_naming_the_replacement(option, tmp_path):
    result = run_by_path("main_visualize_postprocess.py", "--checkpoint", tmp_path, "--results_dir",
                         tmp_path / "res", option, "0.5", cwd=tmp_path)
    assert_user_error(result, f"{option} is no longer supported: the whole --mode split is evaluated", "--mode")
    assert not (tmp_path / "res").exists()


def test_step2_sequences_per_file_is_ignored_with_a_notice(tmp_path):
    result = run_by_path("main_preprocess_data_step2.py", "-source_dir", tmp_path / "none", "-dest_dir",
                         tmp_path / "out", "-sequence_length", "24", "-sequences_per_file", "10", cwd=tmp_path)
    assert "NOTE: -sequences_per_file is ignored: each month becomes one TFRecord file" in result.stderr
    assert_user_error(result, str(tmp_path / "none"))


def test_packaging_license_is_spdx_and_extras_pin_the_tensorflow_of_create_env():
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"                     # SPDX string: no setuptools deprecation warning
    extras = project["optional-dependencies"]
    assert extras["cpu"] == ["tensorflow-cpu==2.21.*"] and extras["cuda"] == ["tensorflow[and-cuda]==2.21.*"]
    create_env = (REPO_ROOT / "env_setup" / "create_env.sh").read_text()
    assert '-e "${repo_root}[$extras]"' in create_env and "extras=test,cpu" in create_env
    assert "tensorflow" not in create_env.split("_ambs_install() {")[1].split("\n}")[0]   # only through the extras
