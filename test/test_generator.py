"""Runscript generator, answers-file mode: every step on a base directory holding what earlier steps produce,
the validation rules, bash -n / shellcheck of every variant, and an injection test that runs the scripts.

The shared helpers (``make_base``, ``make_venv``, ...) are in ``fixtures/generator.py``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from fixtures.common import PYTHON, REPO_ROOT, assert_user_error
from fixtures.generator import (DATASPLIT, EXPNAME, RUN, RUN2, VARMAPPING, assert_clean_shell, make_base, make_venv,
                                plant_checkpoint, variable_line, write_evaluation, write_extracted_month)
from video_prediction_tools.datasets.datasplit import hours_of_months
from video_prediction_tools.postprocess.metrics import DEFAULT_METRICS
from video_prediction_tools.runscript_generator import steps as steps_module
from video_prediction_tools.runscript_generator.base import AUTO_CHECKPOINT
from video_prediction_tools.runscript_generator import wizard
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.settings import create_base_tree

GENERATOR = REPO_ROOT / "env_setup" / "generate_runscript.py"
def answers_for(step: str, data: dict[str, Path], exp_id: str = "ref") -> dict:
    """Valid answers of every step on the base directory of :func:`make_base`."""
    return {
        "extract": {"source_dir": str(data["grib"]), "years": "2017", "months": "1-2", "varmapping": VARMAPPING},
        "preprocess1": {"years": "2017", "months": "1,2", "variables": "2t,tcc,t_850", "sw_corner": "43.5, 0.3",
                        "nyx": "8, 12"},
        "preprocess2": {"experiment": EXPNAME, "sequence_length": 12},
        "train": {"experiment": EXPNAME, "model": "convLSTM", "exp_id": exp_id, "datasplit": DATASPLIT,
                  "hparams": {}},
        "postprocess": {"experiment": EXPNAME, "model": "convLSTM", "run": RUN, "checkpoint": "checkpoint_10",
                        "climatology_file": str(data["climatology"]), "lquick_evaluation": True},
        "meta_postprocess": {"runs": [f"{EXPNAME}/convLSTM/{RUN}", f"{EXPNAME}/convLSTM/{RUN2}"],
                             "metric": "mse", "exp_id": exp_id},
    }[step]


def generate(tmp: Path, venv: Path, step: str, answers: dict, *options: str, runscript_dir: Path | None = None) -> Path:
    """Run the generator in-process from an answers file; return the runscript written."""
    runscript_dir = runscript_dir or tmp / "runscripts"
    answers_file = tmp / f"answers_{step}.yaml"
    answers_file.write_text(yaml.safe_dump({"step": step, **answers}))
    before = set(runscript_dir.glob("*.sh")) if runscript_dir.is_dir() else set()
    assert wizard.main(["--venv_path", str(venv), "--answers", str(answers_file), "--runscript_dir",
                        str(runscript_dir), *options]) == 0
    new = sorted(set(runscript_dir.glob("*.sh")) - before)
    assert len(new) == 1 or "--overwrite" in options, new
    return new[0] if new else next(iter(before))


# ------------------------------------------------------------------------------------------------ answers mode
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_base(tmp_path_factory.mktemp("generator"))


@pytest.fixture
def venv(tmp_path, data):
    return make_venv(tmp_path, data["base"])


def test_extract_answers(tmp_path, venv, data):
    script = generate(tmp_path, venv, "extract", {**answers_for("extract", data), "mpi_processes": 1})
    assert script.name == "data_extraction_era5.sh"
    assert variable_line(script, "SOURCE_DIR") == str(data["grib"])
    assert variable_line(script, "TARGET_DIR") == str(data["base"] / "ExtractedData")
    assert variable_line(script, "YEARS") == "(2017)" and variable_line(script, "MONTHS") == "(1 2)"
    assert "mpiexec -n 1 python" in script.read_text()
    varmap = Path(variable_line(script, "VARMAP_FILE"))
    assert json.loads(varmap.read_text()) == VARMAPPING
    saved = yaml.safe_load(Path(f"{script}.answers.yaml").read_text())
    assert saved["step"] == "extract" and saved["years"] == "2017" and saved["varmapping"] == VARMAPPING
    assert_clean_shell(script)


def test_preprocess1_answers(tmp_path, venv, data):
    script = generate(tmp_path, venv, "preprocess1", answers_for("preprocess1", data))
    assert script.name == "preprocess_data_era5_step1.sh"
    assert variable_line(script, "VARIABLES") == "(2t tcc t_850)"
    assert variable_line(script, "SW_CORNER") == "(43.5 0.3)" and variable_line(script, "NYX") == "(8 12)"
    assert variable_line(script, "DESTINATION_DIR") == str(data["base"] / "PreprocessedData")
    saved = yaml.safe_load(Path(f"{script}.answers.yaml").read_text())
    assert saved["derived"]["expname"] == EXPNAME


def test_preprocess2_answers(tmp_path, venv, data):
    script = generate(tmp_path, venv, "preprocess2", answers_for("preprocess2", data))
    assert script.name == "preprocess_data_era5_step2.sh"
    assert variable_line(script, "SOURCE_DIR") == str(data["experiment"])
    assert variable_line(script, "SEQUENCE_LENGTH") == "12"


def test_train_answers_leave_the_run_dir_to_the_training(tmp_path, venv, data):
    script = generate(tmp_path, venv, "train", answers_for("train", data, exp_id="answers"))
    exp_id = script.name[len("train_model_era5_"):-len(".sh")]
    stamp, user, typed = exp_id.split("_", 2)
    assert len(stamp) == 15 and stamp[8] == "T" and typed == "answers" and user
    run_dir = data["base"] / "Models" / EXPNAME / "convLSTM" / exp_id
    assert variable_line(script, "OUTPUT_DIR") == str(run_dir)
    assert variable_line(script, "INPUT_DIR") == str(data["experiment"])
    assert variable_line(script, "MODEL") == "convLSTM"
    assert not run_dir.exists()            # made when the training runs
    assert json.loads(Path(variable_line(script, "DATASPLIT_DICT")).read_text()) == DATASPLIT
    assert json.loads(Path(variable_line(script, "MODEL_HPARAMS")).read_text()) == {}
    assert Path(variable_line(script, "MODEL_HPARAMS")).parent == script.parent
    assert_clean_shell(script)


def test_postprocess_answers(tmp_path, venv, data):
    script = generate(tmp_path, venv, "postprocess", answers_for("postprocess", data))
    assert script.name == f"visualize_postprocess_era5_{RUN}.sh"
    assert variable_line(script, "CHECKPOINT") == str(data["run_dir"] / "checkpoint_10")
    assert variable_line(script, "RESULTS_DIR") == str(data["base"] / "Results" / EXPNAME / "convLSTM" / RUN)
    assert variable_line(script, "CLIMATOLOGY_FILE") == str(data["climatology"])
    assert "EXTRA_OPTIONS+=(--lquick_evaluation)" in script.read_text()
    # convLSTM is deterministic: the metrics that need an ensemble are left out
    deterministic = [name for name in DEFAULT_METRICS if name not in ("spread", "spread_skill", "rank_histogram")]
    assert variable_line(script, "METRICS") == f"({' '.join(deterministic)})"
    assert variable_line(script, "BLOCK_LENGTH") == "5"     # 50 test windows / 10 blocks


def test_postprocess_auto_checkpoint_and_no_quick(tmp_path, venv, data):
    answers = {**answers_for("postprocess", data), "checkpoint": AUTO_CHECKPOINT,
               "lquick_evaluation": False, "climatology_file": ""}
    script = generate(tmp_path, venv, "postprocess", answers)
    assert variable_line(script, "CHECKPOINT") == str(data["run_dir"])
    assert "--lquick_evaluation" not in script.read_text() and "CLIMATOLOGY_FILE" not in script.read_text()
    assert variable_line(script, "METRICS") == ("(mse rmse psnr ssim texture weighted_rmse crps ensemble_mean_mse "
                                                "ensemble_mean_rmse)")  # no ACC without one, no spread of one member


def test_meta_postprocess_answers(tmp_path, venv, data):
    script = generate(tmp_path, venv, "meta_postprocess", answers_for("meta_postprocess", data, exp_id="cmp"))
    assert script.name.startswith("meta_postprocess_era5_") and script.name.endswith("_cmp.sh")
    config = json.loads(Path(variable_line(script, "ANALYSIS_CONFIG")).read_text())
    results = data["base"] / "Results" / EXPNAME / "convLSTM"
    assert list(config["results"].values()) == [str(results / RUN), str(results / RUN2)]
    assert len(config["markers"]) == len(config["colors"]) == 2
    assert variable_line(script, "ROOT_DIR") == str(data["base"])
    assert "EXTRA_OPTIONS+=(--enable_skill_scores)" in script.read_text()


def test_dry_run_writes_nothing(tmp_path, venv, data, capsys):
    answers_file = tmp_path / "a.yaml"
    answers_file.write_text(yaml.safe_dump({"step": "train", **answers_for("train", data, exp_id="dry")}))
    runscripts = tmp_path / "rs"
    models_before = sorted((data["base"] / "Models").rglob("*"))
    assert wizard.main(["--venv_path", str(venv), "--answers", str(answers_file), "--runscript_dir", str(runscripts),
                        "--dry-run"]) == 0
    assert "main_train_models" in capsys.readouterr().out
    assert not runscripts.exists()
    assert sorted((data["base"] / "Models").rglob("*")) == models_before


def test_regenerating_never_silently_overwrites(tmp_path, venv, data):
    script = generate(tmp_path, venv, "preprocess2", answers_for("preprocess2", data))
    with pytest.raises(UserError, match="exists already"):
        generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "sequence_length": 6})
    assert variable_line(script, "SEQUENCE_LENGTH") == "12"
    generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "sequence_length": 6},
             "--overwrite")
    assert variable_line(script, "SEQUENCE_LENGTH") == "6"


def test_saved_answers_regenerate_the_same_runscript(tmp_path, venv, data):
    first = generate(tmp_path, venv, "preprocess1", answers_for("preprocess1", data), runscript_dir=tmp_path / "a")
    saved = tmp_path / "a" / f"{first.name}.answers.yaml"
    second_dir = tmp_path / "b"
    assert wizard.main(["--venv_path", str(venv), "--answers", str(saved), "--runscript_dir", str(second_dir)]) == 0
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("#")]  # noqa: E731
    assert strip(first.read_text()) == strip((second_dir / first.name).read_text())


# ------------------------------------------------------------------------------------------------ validation rules
REJECTIONS = [
    ("extract", {"source_dir": "/nonexistent/grib"}, "source_dir", "not an existing directory"),
    ("extract", {"years": "2017,1939"}, "years", "1939"),
    ("extract", {"years": "2018"}, "years", "no ERA5 data for year(s) 2018"),
    ("extract", {"months": "1-3"}, "months", "2017-03"),
    ("extract", {"months": "13"}, "months", "13"),
    ("extract", {"varmapping": {"surface": "2t"}}, "varmapping", "'surface' must be a list"),
    ("extract", {"varmapping": {"surface": ["2t", "zz_notavar"], "multi": {}}}, "varmapping",
     "field(s) zz_notavar are not in the GRIB files"),
    ("preprocess1", {"years": "2016"}, "years", "2016"),
    ("preprocess1", {"months": "3"}, "months", "2017-03"),
    ("preprocess1", {"variables": "2t,msl"}, "variables", "msl"),
    ("preprocess1", {"sw_corner": "20.0, 0.3"}, "sw_corner", "latitude 20.0 lies outside the grid latitudes"),
    ("preprocess1", {"sw_corner": "95, 0"}, "sw_corner", "[-90, 90]"),
    ("preprocess1", {"sw_corner": "43.5"}, "sw_corner", "two values"),
    ("preprocess1", {"nyx": "20, 12"}, "nyx", "northern edge of the grid (48 degrees_north); at most 16 rows"),
    ("preprocess1", {"nyx": "8, 30"}, "nyx", "eastern edge of the grid (6.9 degrees_east); at most 23 columns"),
    ("preprocess1", {"nyx": "1, 12"}, "nyx", "at least 2"),
    ("preprocess2", {"experiment": "era5-nothing"}, "experiment", "not one of"),
    ("preprocess2", {"sequence_length": 1}, "sequence_length", "2..744"),
    ("preprocess2", {"sequence_length": "x"}, "sequence_length", "integer"),
    ("train", {"model": "no_such_model"}, "model", "not one of"),
    ("train", {"exp_id": "a/b"}, "exp_id", "'/'"),
    ("train", {"exp_id": ""}, "exp_id", "must not be empty"),
    ("train", {"exp_id": "with blank"}, "exp_id", "must not contain '/', blanks"),
    ("train", {"seed": 2**32}, "seed", "seed must be in 0..4294967295, got 4294967296"),
    ("preprocess1", {"nyx": "2.5, 3"}, "nyx", "'2.5, 3' are not two whole numbers"),
    ("train", {"datasplit": {"train": {"2017": [3]}}}, "datasplit", "2017-03"),
    ("train", {"datasplit": {"training": {"2017": [1]}}}, "datasplit", "unknown mode"),
    ("train", {"datasplit": {"train": {"2017": [1]}, "val": {"2017": [1]}}}, "datasplit", "both"),
    # February's step-2 blocks are 1-2 and 4-5 February: a range over the 3rd names hours without data
    ("train", {"datasplit": {"train": [["2017-02-01T00", "2017-02-05T23"]]}}, "datasplit",
     "'train' range [2017-02-01T00, 2017-02-05T23] names 24 hour(s) without data (first 2017-02-03T00, last "
     "2017-02-03T23"),
    ("train", {"datasplit": {"train": [["2017-01-01T00", "2017-01-02T23"]], "val": [["2017-01-02T12",
                                                                                   "2017-01-03T23"]]}},
     "datasplit", "[2017-01-01T00, 2017-01-02T23] of 'train' and [2017-01-02T12, 2017-01-03T23] of 'val' overlap"),
    ("train", {"datasplit": {"train": [["2017-01-01", "2017-01-02T23"]]}}, "datasplit", "YYYY-MM-DDTHH"),
    ("train", {"hparams": {"no_such_key": 1}}, "hparams", "no_such_key"),
    ("train", {"hparams": "broken.json"}, "hparams", "not valid JSON"),
    ("train", {"hparams": {"batch_size": -4}}, "hparams", "'batch_size' of model convLSTM must be an integer >= 1"),
    ("train", {"hparams": {"max_epochs": 0}}, "hparams", "'max_epochs' of model convLSTM must be an integer >= 1"),
    ("train", {"hparams": {"loss_fun": "bogus"}}, "hparams", "one of mse, cross_entropy"),
    ("train", {"hparams": {"context_frames": 24}}, "hparams", "smaller than sequence_length (24)"),
    ("train", {"hparams": {"lr": "fast"}}, "hparams", "'lr' of model convLSTM must be a number"),
    # the training split (January) is one gap-free block of 72 hours: 72 - 24 + 1 = 49 windows of 24
    ("train", {"hparams": {"sequence_length": 97}}, "hparams", "sequence_length 97: no window that long fits into a "
                                                               "gap-free block of the training split (the longest "
                                                               "holds 72 frames)"),
    ("train", {"hparams": {"batch_size": 100000}}, "hparams", "batch_size 100000: the training split holds 49 "
                                                              "windows of 24 frames, so at most 49"),
    ("train", {"hparams": {"max_epochs": 10**9}}, "hparams", "max_epochs 1000000000: 1000000000 x 12 steps an epoch "
                                                             "exceeds 10000000 training steps; at most 833333 epochs"),
    ("postprocess", {"run": "20990101T000000_x_none"}, "run", "not one of"),
    ("postprocess", {"checkpoint": "checkpoint_99"}, "checkpoint", "not one of"),
    ("postprocess", {"checkpoint": "checkpoint_15"}, "checkpoint", "not one of"),    # incomplete
    ("postprocess", {"climatology_file": "/nonexistent.nc"}, "climatology_file", "does not exist"),
    ("postprocess", {"climatology_file": "/tmp"}, "climatology_file", "/tmp is a directory; give the netCDF file"),
    ("postprocess", {"evaluation_metrics": "mse,foo"}, "evaluation_metrics", "foo"),
    ("postprocess", {"batch_size": 0}, "batch_size", ">= 1"),
    ("postprocess", {"block_length": "week"}, "block_length", "integer"),
    # the test split (February) holds 2 x (48 - 24 + 1) = 50 windows: blocks of at most 5 give 10 blocks
    ("postprocess", {"block_length": 168}, "block_length", "the test split holds 50 forecasts, so at most 5"),
    ("preprocess1", {"variables": "2t,2t"}, "variables", "2t given more than once"),
    ("postprocess", {"lquick_evaluation": "maybe"}, "lquick_evaluation", "true or false"),
    ("meta_postprocess", {"runs": ["x/y/z"]}, "runs", "x/y/z"),
    ("meta_postprocess", {"metric": "bias"}, "metric", "not one of"),
    ("meta_postprocess", {"metric": "ssim"}, "metric", "not one of: mse, rmse"),  # RUN2 has no ssim
]


@pytest.mark.parametrize("step, change, key, fragment", REJECTIONS,
                         ids=[f"{step}-{key}-{i}" for i, (step, _, key, _) in enumerate(REJECTIONS)])
def test_invalid_answer_is_rejected_naming_the_question(tmp_path, venv, data, step, change, key, fragment):
    (tmp_path / "broken.json").write_text('{"lr": 0.1,}')
    models_before = sorted((data["base"] / "Models").rglob("*"))
    with pytest.raises(UserError) as err:
        generate(tmp_path, venv, step, {**answers_for(step, data, exp_id="rejected"), **change})
    assert f"'{key}'" in str(err.value) and fragment in str(err.value), str(err.value)
    assert not (tmp_path / "runscripts").exists() or not list((tmp_path / "runscripts").iterdir())
    assert sorted((data["base"] / "Models").rglob("*")) == models_before


def test_bad_climatology_content_rejected(tmp_path, venv, data):
    bad = tmp_path / "not_climatology.nc"
    xr.Dataset({"2t": (("x",), np.zeros(3))}).to_netcdf(bad)
    with pytest.raises(UserError, match="month and hour"):
        generate(tmp_path, venv, "postprocess", {**answers_for("postprocess", data), "climatology_file": str(bad)})


def test_missing_answer_is_an_error_naming_the_question(tmp_path, venv, data):
    extract = answers_for("extract", data)
    del extract["source_dir"]
    with pytest.raises(UserError, match=r"'source_dir' \(Directory of the ERA5 GRIB files.*no answer given"):
        generate(tmp_path, venv, "extract", extract)


def test_cli_errors_are_one_line(tmp_path, data):
    venv = make_venv(tmp_path, data["base"])
    answers = tmp_path / "a.yaml"
    answers.write_text(yaml.safe_dump({"step": "preprocess2", "experiment": EXPNAME, "sequence_length": 0}))
    result = subprocess.run([PYTHON, str(GENERATOR), "--venv_path", str(venv), "--answers", str(answers),
                             "--runscript_dir", str(tmp_path / "rs")], capture_output=True, text=True, cwd="/")
    assert_user_error(result, "sequence_length", "2..744")
    result = subprocess.run([PYTHON, str(GENERATOR), "--venv_path", str(tmp_path / "novenv"), "--step", "extract"],
                            capture_output=True, text=True, cwd="/")
    assert_user_error(result, "novenv")
    answers.write_text("step: [unclosed")
    result = subprocess.run([PYTHON, str(GENERATOR), "--venv_path", str(venv), "--answers", str(answers)],
                            capture_output=True, text=True)
    assert_user_error(result, "not valid YAML")


def test_generator_never_imports_tensorflow_nor_xarray(tmp_path, data):
    """Every step answered from a file, in one fresh interpreter: model names, hyper-parameter keys, metric names
    and checks come from the templates and light modules, so the generator answers without TensorFlow's start-up
    (seconds) nor xarray, scipy or matplotlib (about a second together). Only reading a climatology file, which
    postprocessing reads the same way, takes xarray; never TensorFlow."""
    venv = make_venv(tmp_path, data["base"])
    files = []
    for step in steps_module.STEPS:
        answers = answers_for(step, data)
        if step == "train":
            answers["hparams"] = {"lr": 0.002, "batch_size": 2}
        if step == "postprocess":
            answers.pop("climatology_file")
        files.append(tmp_path / f"{step}.yaml")
        files[-1].write_text(yaml.safe_dump({"step": step, **answers}))
    with_climatology = tmp_path / "postprocess_climatology.yaml"
    with_climatology.write_text(yaml.safe_dump({"step": "postprocess", **answers_for("postprocess", data)}))
    script = ("import sys\nfrom video_prediction_tools.runscript_generator import wizard\n"
              "def generate(path):\n"
              "    assert wizard.main(['--venv_path', sys.argv[1], '--runscript_dir', sys.argv[2], '--dry-run', "
              "'--answers', path]) == 0\n"
              "def loaded(*names):\n"
              "    return sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in names})\n"
              "for path in sys.argv[4:]:\n"
              "    generate(path)\n"
              "print('HEAVY', loaded('tensorflow', 'keras', 'xarray', 'scipy', 'matplotlib'))\n"
              "generate(sys.argv[3])\n"
              "print('TENSORFLOW', loaded('tensorflow', 'keras'))\n")
    result = subprocess.run([PYTHON, "-c", script, str(venv), str(tmp_path / "rs"), str(with_climatology),
                             *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("#!/") == len(steps_module.STEPS) + 1   # every runscript was rendered
    assert "HEAVY []" in result.stdout, result.stdout[-2000:]
    assert "TENSORFLOW []" in result.stdout, result.stdout[-2000:]


def test_help_works_from_any_directory(tmp_path):
    result = subprocess.run([PYTHON, str(GENERATOR), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and "--answers" in result.stdout and "--dry-run" in result.stdout


# ------------------------------------------------------------------------------------------------ every variant
MODES = {"venv": (False, False), "hpc": (True, False), "container": (False, True), "hpc-container": (True, True)}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("step", list(steps_module.STEPS))
def test_every_runscript_passes_bash_n_and_shellcheck(tmp_path, data, step, mode):
    hpc, container = MODES[mode]
    image = tmp_path / "tf.sif"
    image.write_bytes(b"")
    venv = make_venv(tmp_path, data["base"], hpc=hpc, container=image if container else None)
    answers = answers_for(step, data, exp_id=f"lint_{mode}")
    if hpc:
        answers["slurm"] = {"profile": "juwels_booster", "account": "myproject", "mail_user": "me@example.org",
                            "extra": ["--exclusive", "--constraint=largedata"]}
    script = generate(tmp_path, venv, step, answers)
    assert_clean_shell(script)
    text = script.read_text()
    assert "set -euo pipefail" in text
    if hpc:
        stem = script.with_suffix("")
        assert f"#SBATCH --output={stem}-out.%j" in text and f"#SBATCH --error={stem}-err.%j" in text
        assert "#SBATCH --account=myproject" in text and "#SBATCH --mail-user=me@example.org" in text
        assert "#SBATCH --exclusive" in text and "#SBATCH --constraint=largedata" in text
        gpus = {"train": 1, "postprocess": 1}.get(step, 0)
        assert ("#SBATCH --gres=gpu:1" in text) == bool(gpus)
        assert "RUN_PYTHON=(srun '--mpi=pmi2' '--cpu-bind=none' \"${IN_CONTAINER[@]}\" python)" in text
    else:
        assert "#SBATCH" not in text
        assert ("mpiexec -n 2" in text) == steps_module.STEPS[step].mpi
    if container:
        assert "exec --nv \"$CONTAINER_IMAGE\" \"$WRAPPER\" \"$VENV_DIR\"" in text
        assert variable_line(script, "CONTAINER_IMAGE") == str(image)
    else:
        assert 'source "$VENV_DIR/bin/activate"' in text


def test_slurm_values_are_validated(tmp_path, data):
    venv = make_venv(tmp_path, data["base"], hpc=True)
    for change, fragment in (({"time": "tomorrow"}, "time"), ({"account": "a b"}, "account"),
                             ({"extra": ["--x; rm -rf /"]}, "extra"), ({"ntasks": 0}, "ntasks"),
                             ({"ntasks": 10**9}, r"ntasks.*in 1\.\.1932"), ({"profile": "nowhere"}, "profile")):
        answers = {**answers_for("preprocess2", data), "slurm": change}
        with pytest.raises(UserError, match=fragment):
            generate(tmp_path, venv, "preprocess2", answers)


def test_site_profile_defaults_and_overrides(tmp_path, data):
    venv = make_venv(tmp_path, data["base"], hpc=True)
    script = generate(tmp_path, venv, "train", {**answers_for("train", data, exp_id="prof"),
                                               "slurm": {"profile": "juwels_booster", "time": "02:00:00"}})
    text = script.read_text()
    assert "#SBATCH --partition=booster" in text and "#SBATCH --account=deepacf" in text
    assert "#SBATCH --time=02:00:00" in text and "#SBATCH --gres=gpu:1" in text
    saved = yaml.safe_load(Path(f"{script}.answers.yaml").read_text())
    assert saved["slurm"]["profile"] == "juwels_booster" and saved["slurm"]["time"] == "02:00:00"


# ------------------------------------------------------------------------------------------------ injection
PAYLOAD = "x y'q\"$(touch PWNED_1)`touch PWNED_2`;touch PWNED_3 $HOME"
#: the same for typed ids, which take no blanks: $IFS is one when a shell executes it
ID_PAYLOAD = "_q'\"$(touch$IFS'PWNED_1')`touch$IFS'PWNED_2'`;touch$IFS'PWNED_3'$HOME"

FAKE_PYTHON = """#!/bin/bash
# stands in for python: records its arguments, one per line, runs nothing
{ printf '%s\\n' "$@"; echo '<end>'; } >> "$ARGV_LOG"
"""
FAKE_MPIEXEC = """#!/bin/bash
# stands in for mpiexec -n N: drops the two options and runs the command once
shift 2
exec "$@"
"""


def test_injection_payloads_stay_inert(tmp_path):
    """Paths holding blanks, quotes, $(), backticks and ';' and ids holding all that but blanks are passed verbatim
    and never executed."""
    data = make_base(tmp_path, name=f"base {PAYLOAD}")
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    for name, text in (("python", FAKE_PYTHON), ("mpiexec", FAKE_MPIEXEC)):
        (fake_bin / name).write_text(text)
        (fake_bin / name).chmod(0o755)
    venv = make_venv(tmp_path, data["base"], activate=f'export PATH={fake_bin}:"$PATH"\n')
    log = tmp_path / "argv.log"
    work = tmp_path / "work"
    work.mkdir()
    scripts = [generate(tmp_path, venv, step, answers_for(step, data, exp_id=f"id{ID_PAYLOAD}"))
               for step in steps_module.STEPS]
    for script in scripts:
        assert_clean_shell(script)
        result = subprocess.run(["bash", str(script)], cwd=work, capture_output=True, text=True,
                                env=dict(os.environ, ARGV_LOG=str(log)))
        assert result.returncode == 0, (script.name, result.stderr)
    assert not list(work.glob("PWNED*")) and not list(tmp_path.glob("PWNED*"))
    calls = [call.strip("\n").split("\n") for call in log.read_text().split("<end>\n") if call.strip()]
    by_module = {call[1].rsplit(".", 1)[-1]: call for call in calls}
    assert set(by_module) == {"main_data_extraction", "main_preprocess_data_step1", "main_preprocess_data_step2",
                              "main_train_models", "main_visualize_postprocess", "main_meta_postprocess"}

    def option(call, name):
        return call[call.index(name) + 1]

    base = str(data["base"])
    assert option(by_module["main_data_extraction"], "--source_dir") == str(data["grib"])
    assert option(by_module["main_preprocess_data_step1"], "--destination_dir") == f"{base}/PreprocessedData"
    train_out = option(by_module["main_train_models"], "--output_dir")
    assert train_out.startswith(f"{base}/Models/{EXPNAME}/convLSTM/") and train_out.endswith(f"_id{ID_PAYLOAD}")
    assert Path(option(by_module["main_train_models"], "--datasplit_dict")).is_file()
    assert option(by_module["main_visualize_postprocess"], "--climatology_file") == str(data["climatology"])
    meta_id = option(by_module["main_meta_postprocess"], "--exp_id")
    assert meta_id.endswith(f"_id{ID_PAYLOAD}")


def test_runscript_refuses_missing_input(tmp_path, data):
    venv = make_venv(tmp_path, data["base"])
    script = generate(tmp_path, venv, "preprocess2", answers_for("preprocess2", data))
    moved = data["experiment"].with_name("moved_away")
    data["experiment"].rename(moved)
    try:
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    finally:
        moved.rename(data["experiment"])
    assert result.returncode == 1
    assert result.stderr.strip() == (f"ERROR: preprocessed experiment: file '{data['experiment']}/metadata.json' "
                                     f"does not exist (run preprocessing step 1 first)")


def test_hpc_ids_must_suit_sbatch_log_names(tmp_path, data):
    venv = make_venv(tmp_path, data["base"], hpc=True)
    with pytest.raises(UserError, match="'exp_id'.*experiment id 'half%'.*sbatch"):
        generate(tmp_path, venv, "train", answers_for("train", data, exp_id="half%"))


def test_chain_mode_accepts_what_earlier_runscripts_will_produce(tmp_path, data):
    """On an empty base directory, --chain generates every step from the answers of the earlier runscripts;
    without --chain the same answers are rejected because the data does not exist yet."""
    base = tmp_path / "empty_base"
    create_base_tree(base)
    venv = make_venv(tmp_path, base)
    with pytest.raises(UserError, match="ExtractedData holds no extracted netCDF files"):
        generate(tmp_path, venv, "preprocess1", answers_for("preprocess1", data))
    generate(tmp_path, venv, "extract", answers_for("extract", data), "--chain")
    script = generate(tmp_path, venv, "preprocess1", answers_for("preprocess1", data), "--chain")
    assert "# expected experiment directory: $DESTINATION_DIR/" + EXPNAME in script.read_text()
    generate(tmp_path, venv, "preprocess2", answers_for("preprocess2", data), "--chain")
    with pytest.raises(UserError, match="2017-03"):  # the planned months are 2017-01 and 2017-02
        generate(tmp_path, venv, "train", {**answers_for("train", data), "datasplit": {"train": {"2017": [3]}}},
                 "--chain")
    train = generate(tmp_path, venv, "train", answers_for("train", data, exp_id="chain"), "--chain")
    run = Path(variable_line(train, "OUTPUT_DIR")).name
    post = generate(tmp_path, venv, "postprocess", {**answers_for("postprocess", data), "run": run,
                                                    "checkpoint": AUTO_CHECKPOINT}, "--chain")
    assert variable_line(post, "CHECKPOINT") == str(base / "Models" / EXPNAME / "convLSTM" / run)
    meta = generate(tmp_path, venv, "meta_postprocess", {**answers_for("meta_postprocess", data),
                                                         "runs": [f"{EXPNAME}/convLSTM/{run}"]}, "--chain")
    config = json.loads(Path(variable_line(meta, "ANALYSIS_CONFIG")).read_text())
    assert list(config["results"].values()) == [str(base / "Results" / EXPNAME / "convLSTM" / run)]


def test_chain_mode_names_the_experiment_after_the_nearest_grid_point(tmp_path, data):
    """A chained preprocess1 with an off-grid SW corner (43.62 N, 0.41 E; grid points every 0.3 degrees) names
    the experiment after the grid point step 1 will use (43.5 N, 0.3 E), like the generator does when the
    extracted data exist, so that the chained preprocess2 finds it."""
    off_grid = {**answers_for("preprocess1", data), "sw_corner": "43.62, 0.41"}
    script = generate(tmp_path, make_venv(tmp_path, data["base"]), "preprocess1", off_grid)
    assert "# expected experiment directory: $DESTINATION_DIR/" + EXPNAME in script.read_text()

    base = tmp_path / "empty_base"
    create_base_tree(base)
    venv = make_venv(tmp_path / "chain", base)
    with pytest.raises(UserError, match="generate the extraction runscript first"):
        generate(tmp_path / "chain", venv, "preprocess1", off_grid, "--chain")
    generate(tmp_path / "chain", venv, "extract", answers_for("extract", data), "--chain")
    script = generate(tmp_path / "chain", venv, "preprocess1", off_grid, "--chain")
    assert "# expected experiment directory: $DESTINATION_DIR/" + EXPNAME in script.read_text()
    step2 = generate(tmp_path / "chain", venv, "preprocess2", answers_for("preprocess2", data), "--chain")
    assert variable_line(step2, "SOURCE_DIR") == str(base / "PreprocessedData" / EXPNAME)
    # a corner whose box leaves the planned grid is refused as step 1 would refuse it
    with pytest.raises(UserError, match="northern edge"):
        generate(tmp_path / "chain", venv, "preprocess1", {**off_grid, "nyx": "17, 12"}, "--chain")


def test_unknown_answer_keys_are_named(tmp_path, data):
    venv = make_venv(tmp_path, data["base"])
    with pytest.raises(UserError, match="no question has the key.*sequence_lenght"):
        generate(tmp_path, venv, "preprocess2", {"experiment": EXPNAME, "sequence_lenght": 12})
    # the resources of the other mode are refused, not ignored
    with pytest.raises(UserError, match="'slurm' is for SLURM runscripts"):
        generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "slurm": {"ntasks": 2}})
    hpc_venv = make_venv(tmp_path / "hpc", data["base"], hpc=True)
    with pytest.raises(UserError, match="'mpi_processes' is for runscripts without SLURM"):
        generate(tmp_path, hpc_venv, "preprocess2", {**answers_for("preprocess2", data), "mpi_processes": 2},
                 runscript_dir=tmp_path / "hpc_scripts")
    with pytest.raises(UserError, match="slurm.ntask\\b"):
        generate(tmp_path, hpc_venv, "preprocess2", {**answers_for("preprocess2", data), "slurm": {"ntask": 2}},
                 runscript_dir=tmp_path / "hpc_scripts")


# ------------------------------------------------------------------------------------------------ defaults from data
def test_defaults_come_from_the_data(tmp_path, venv, data, capsys):
    """Answers left out take the defaults the data suggest, and the output lists them: the months found, a box
    that fits the 16 x 24 grid from its SW point, a split of the two months with TFRecords, a block length the
    test split supports (50 windows / 10 blocks)."""
    extract = generate(tmp_path, venv, "extract", {"source_dir": str(data["grib"]), "varmapping": "template"})
    assert variable_line(extract, "YEARS") == "(2017)" and variable_line(extract, "MONTHS") == "(1 2)"
    listed = capsys.readouterr().err
    assert "Defaults used for answers the file does not give: years=2017, months=1,2, mpi_processes=2 (saved" in listed
    assert "dataset" not in listed      # ERA5's dataset answer is implied, not saved: not a default taken
    pre1 = generate(tmp_path, venv, "preprocess1", {})
    assert variable_line(pre1, "MONTHS") == "(1 2)" and variable_line(pre1, "VARIABLES") == "(2t tcc t_850)"
    assert variable_line(pre1, "SW_CORNER") == "(43.5 0.0)" and variable_line(pre1, "NYX") == "(16 24)"
    assert "sw_corner=43.5, 0, nyx=16, 24" in capsys.readouterr().err
    train = generate(tmp_path, venv, "train", {"experiment": EXPNAME, "exp_id": "defaults"})
    assert json.loads(Path(variable_line(train, "DATASPLIT_DICT")).read_text()) == {"train": {"2017": [1]},
                                                                                     "val": {"2017": [2]}}
    post = generate(tmp_path, venv, "postprocess", {"experiment": EXPNAME, "model": "convLSTM", "run": RUN})
    assert variable_line(post, "BLOCK_LENGTH") == "5" and variable_line(post, "CHECKPOINT") == str(data["run_dir"])


def test_a_split_by_dates_is_accepted_and_checked_against_the_hours_of_step_2(tmp_path, venv, data):
    """Hour ranges inside the months with TFRecords: the runscript's split file holds them as given; in chain
    mode (before step 2) they are checked against every hour of the months step 1 will write."""
    dates = {"train": [["2017-01-01T00", "2017-01-03T23"]], "val": [["2017-02-01T00", "2017-02-02T23"]],
             "test": [["2017-02-04T00", "2017-02-05T23"]]}
    train = generate(tmp_path, venv, "train", {**answers_for("train", data), "datasplit": dates})
    assert json.loads(Path(variable_line(train, "DATASPLIT_DICT")).read_text()) == dates
    base = tmp_path / "empty_base"
    create_base_tree(base)
    chain_venv = make_venv(tmp_path / "chain", base)
    for step in ("extract", "preprocess1", "preprocess2"):
        generate(tmp_path, chain_venv, step, answers_for(step, data), "--chain")
    generate(tmp_path, chain_venv, "train", {**answers_for("train", data, exp_id="chain"), "datasplit": {
        **dates, "test": [["2017-02-03T00", "2017-02-28T23"]]}}, "--chain")       # whole planned months
    with pytest.raises(UserError, match=r"'datasplit'.*names 24 hour\(s\) without data \(first 2017-03-01T00"):
        generate(tmp_path, chain_venv, "train", {**answers_for("train", data, exp_id="late"), "datasplit": {
            **dates, "test": [["2017-02-28T00", "2017-03-01T23"]]}}, "--chain")


def test_split_proposal_of_many_months(tmp_path):
    template = tmp_path / "split.json"
    template.write_text(json.dumps({"train": {"2007": [1]}}))
    months = {(2016, m) for m in range(1, 13)} | {(2017, m) for m in range(1, 9)}   # 20 months: a tenth is 2
    proposal = json.loads(steps_module.proposed_split(template, hours_of_months(months)))
    assert proposal == {"train": {"2016": list(range(3, 13)), "2017": list(range(1, 7))},
                        "val": {"2016": [1, 2]}, "test": {"2017": [7, 8]}}
    assert steps_module.proposed_split(template, hours_of_months({(2007, 1)})) == template.read_text()  # it fits


def test_split_proposal_within_one_month_is_by_dates():
    """One month with data (e.g. one CDS download): whole days in time order, about 70 / 15 / 15 %, naming only
    hours with data (a gap splits a mode's range in two)."""
    hours = hours_of_months({(2019, 3)})
    hours = hours[(hours < np.datetime64("2019-03-10T05")) | (hours > np.datetime64("2019-03-10T07"))]
    template = REPO_ROOT / "templates" / "data_split" / "era5" / "datasplit_template.json"
    proposal = json.loads(steps_module.proposed_split(template, hours))
    assert proposal == {"train": [["2019-03-01T00", "2019-03-10T04"], ["2019-03-10T08", "2019-03-21T23"]],
                        "val": [["2019-03-22T00", "2019-03-26T23"]], "test": [["2019-03-27T00", "2019-03-31T23"]]}


def test_step_menu_offers_the_first_step_not_done(tmp_path, data):
    base = tmp_path / "fresh"
    create_base_tree(base)
    assert steps_module.next_step(base) == "extract"
    write_extracted_month(base / "ExtractedData" / "2017" / "01" / "era5_2017_01.nc", 2017, 1)
    assert steps_module.next_step(base) == "preprocess1"
    assert steps_module.next_step(data["base"]) == "meta_postprocess"


def test_meta_metrics_and_skill_default_follow_the_runs(tmp_path, data):
    base = make_base(tmp_path, "nopersistence")
    write_evaluation(base["base"] / "Results" / EXPNAME / "convLSTM" / "20240103T000000_bob_np", ("mse",),
                     persistence=False)
    venv = make_venv(tmp_path, base["base"])
    runs = [f"{EXPNAME}/convLSTM/{RUN}", f"{EXPNAME}/convLSTM/20240103T000000_bob_np"]
    with pytest.raises(UserError, match="'metric'.*'rmse' is not one of: mse$"):
        generate(tmp_path, venv, "meta_postprocess", {"runs": runs, "metric": "rmse", "exp_id": "x"})
    script = generate(tmp_path, venv, "meta_postprocess", {"runs": runs, "metric": "mse", "exp_id": "x"})
    assert "--enable_skill_scores)" not in script.read_text()      # default off without persistence scores
    with pytest.raises(UserError, match="'enable_skill_scores'.*skill scores need the persistence scores of every "
                                        "chosen run"):
        generate(tmp_path, venv, "meta_postprocess", {"runs": runs, "metric": "mse", "exp_id": "y",
                                                      "enable_skill_scores": True})


def test_answers_file_rules(tmp_path, venv, data):
    """'best' names the automatic checkpoint; an unfilled ${...} is named; replaying a saved answers file
    regenerates the same runscript (same exp_id) unless --new-run is given."""
    post = generate(tmp_path, venv, "postprocess", {**answers_for("postprocess", data), "checkpoint": "best"})
    assert variable_line(post, "CHECKPOINT") == str(data["run_dir"])
    with pytest.raises(UserError, match=r"'exp_id' holds the unfilled placeholder '\$\{exp_id\}'"):
        generate(tmp_path, venv, "train", {**answers_for("train", data), "exp_id": "${exp_id}"})
    first = generate(tmp_path, venv, "train", answers_for("train", data, exp_id="replay"))
    saved = str(first) + ".answers.yaml"
    common = ["--venv_path", str(venv), "--answers", saved, "--runscript_dir", str(tmp_path / "runscripts")]
    with pytest.raises(UserError, match="exists already; pass --overwrite"):
        wizard.main(common)
    assert wizard.main([*common, "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "runscripts").glob("train_*.sh")) == [first.name]
    (data["base"] / "Models" / EXPNAME / "convLSTM" / first.stem[len("train_model_era5_"):]).mkdir()  # it ran
    assert wizard.main([*common, "--overwrite"]) == 0
    time.sleep(1.1)  # a new run gets a new timestamp
    assert wizard.main([*common, "--new-run"]) == 0
    assert len(list((tmp_path / "runscripts").glob("train_*.sh"))) == 2


def test_slurm_forms_are_checked(tmp_path, data):
    venv = make_venv(tmp_path, data["base"], hpc=True)
    for change, fragment in (({"mail_type": "SOMETIMES"}, "'slurm.mail_type'.*one or more .* of NONE, BEGIN"),
                             ({"time": "00:99:00"}, "'slurm.time'.*below 60"),
                             ({"srun_options": "hostname"}, "'slurm.srun_options'.*must start with '-'")):
        with pytest.raises(UserError, match=fragment):
            generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "slurm": change})
    script = generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data),
                                                      "slurm": {"mail_type": "end,fail", "mail_user": "a@b.c"}})
    assert "#SBATCH --mail-type=END,FAIL" in script.read_text()


def test_window_length_and_mpi_processes_against_the_data(tmp_path):
    """Step 2's window length is checked against the hours of the months step 1 wrote (four days of February 2017:
    96 hours, not the calendar's 672); more MPI processes than months to share out are refused."""
    data = make_base(tmp_path)
    hours = np.arange(np.datetime64("2017-02-01T00"), np.datetime64("2017-02-05T00"), np.timedelta64(1, "h"))
    (data["experiment"] / "2017").mkdir()
    xr.Dataset({"X": (("time",), np.zeros(len(hours), np.float32))}, coords={"time": hours}).to_netcdf(
        data["experiment"] / "2017" / "X_02.nc")
    venv = make_venv(tmp_path, data["base"])
    with pytest.raises(UserError, match=r"'sequence_length' \(Window length .*the longest month step 1 wrote holds "
                                        r"96 hours\)\): sequence length must be in 2..96, got 100"):
        generate(tmp_path, venv, "preprocess2", {"experiment": EXPNAME, "sequence_length": 100})
    with pytest.raises(UserError, match=r"'mpi_processes' .*1 month\(s\) to share out\)\): number of MPI processes "
                                        r"\(one per month at most\) must be in 1..1, got 2"):
        generate(tmp_path, venv, "preprocess2", {"experiment": EXPNAME, "sequence_length": 96, "mpi_processes": 2})
    with pytest.raises(UserError, match=r"must be in 1..2, got 5"):
        generate(tmp_path, venv, "preprocess1", {**answers_for("preprocess1", data), "mpi_processes": 5})
    with pytest.raises(UserError, match=r"must be in 1..2, got 1000000000"):
        generate(tmp_path, venv, "extract", {**answers_for("extract", data), "mpi_processes": 10**9})


def test_domain_questions_state_the_grid_and_warnings_name_the_limits(tmp_path, venv, data, capsys):
    """The SW-corner and grid-size questions state the extracted grid's extent (latitude and longitude) and what
    fits; more stochastic samples than a deterministic model gives, or more MPI processes than cores here, are
    warnings (the runscript is still written)."""
    with pytest.raises(UserError, match=r"'sw_corner' \(SW corner of the domain as 'lat, lon' in degrees \(lat 43.5 to "
                                        r"48 \(16 points\), lon 0 to 6.9 \(24 points, west to east\)\)\)"):
        generate(tmp_path, venv, "preprocess1", {**answers_for("preprocess1", data), "sw_corner": "20, 0.3"})
    with pytest.raises(UserError, match=r"'nyx' \(Grid points .* at most 16, 23 from this corner"):
        generate(tmp_path, venv, "preprocess1", {**answers_for("preprocess1", data), "nyx": "8, 30"})
    cores = len(os.sched_getaffinity(0))  # step 2 of an experiment whose months step 1 has not written: no bound
    generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "mpi_processes": cores + 1})
    assert f"Warning: {cores + 1} MPI processes on {cores} cores here" in capsys.readouterr().err
    generate(tmp_path, venv, "postprocess", {**answers_for("postprocess", data), "num_stochastic_samples": 3})
    assert "Warning: convLSTM is deterministic; its 3 samples per forecast will all be the same" in \
        capsys.readouterr().err


def test_the_deterministic_warning_names_the_model_the_run_trained(tmp_path, capsys):
    """The model of a run is the one its options.json names (as postprocessing reads it), not its directory's
    name; whether it is deterministic is the model registry's trait (convLSTM_gan is, savp is not)."""
    data = make_base(tmp_path)
    venv = make_venv(tmp_path, data["base"])
    for label, model in (("gan_label", "convLSTM_gan"), ("savp_label", "savp")):
        run_dir = data["base"] / "Models" / EXPNAME / label / RUN
        shutil.copytree(data["run_dir"], run_dir)
        (run_dir / "options.json").write_text(json.dumps({"model": model, "dataset": "era5"}))
        generate(tmp_path, venv, "postprocess", {**answers_for("postprocess", data), "model": label,
                                                 "num_stochastic_samples": 3}, runscript_dir=tmp_path / label)
        warned = f"Warning: {model} is deterministic; its 3 samples per forecast will all be the same" in \
            capsys.readouterr().err
        assert warned == (model == "convLSTM_gan"), model


def test_without_a_terminal_the_wizard_points_to_answers(tmp_path, data):
    venv = make_venv(tmp_path, data["base"])
    result = subprocess.run([PYTHON, str(GENERATOR), "--venv_path", str(venv)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert_user_error(result, "needs a terminal", "--answers")


def test_a_model_without_a_template_is_offered_its_own_defaults(tmp_path):
    """The train step offers a model's JSON template, or, for a model without one, its ``default_hparams()``."""
    from video_prediction_tools.models.registry import default_hparams
    from video_prediction_tools.runscript_generator.base import hparams_offered

    template = tmp_path / "model_hparams_template.json"
    assert json.loads(hparams_offered("convLSTM", template)) == default_hparams("convLSTM")
    template.write_text('{"lr": 0.5}')
    assert json.loads(hparams_offered("convLSTM", template)) == {"lr": 0.5}


def test_seeds_up_to_the_largest_32_bit_number_are_taken(tmp_path, venv, data):
    script = generate(tmp_path, venv, "train", {**answers_for("train", data, exp_id="seeded"), "seed": 2**32 - 1})
    assert variable_line(script, "SEED") == "4294967295"


def test_pairs_take_commas_and_or_blanks():
    from video_prediction_tools.runscript_generator import checks

    for text in ("2.5, 3", "2.5,3", "2.5 3", " 2.5 ,  3 "):
        assert checks.parse_pair(text, "SW corner", float) == (2.5, 3.0)


def test_postprocessing_offers_only_runs_that_can_be_evaluated(tmp_path, capsys):
    """A run directory without a complete checkpoint (a training that died) is not offered; an answers file
    without experiment, model and run takes those of the newest run, as the menus offer them."""
    data = make_base(tmp_path)
    venv = make_venv(tmp_path, data["base"])
    dead = data["run_dir"].parent / "20991231T000000_alice_dead"
    plant_checkpoint(dead, 5, complete=False)
    (dead / "options.json").write_text(json.dumps({"model": "convLSTM", "dataset": "era5"}))
    with pytest.raises(UserError, match=f"'run'.*'{dead.name}' is not one of: {RUN}, {RUN2}$"):
        generate(tmp_path, venv, "postprocess", {**answers_for("postprocess", data), "run": dead.name})
    script = generate(tmp_path, venv, "postprocess", {"lquick_evaluation": True})
    assert script.name == f"visualize_postprocess_era5_{RUN2}.sh"
    assert f"experiment={EXPNAME}, model=convLSTM, run={RUN2}, checkpoint=best" in capsys.readouterr().err


def test_step_1_refuses_the_grib_archive_as_its_source(tmp_path, venv, data):
    with pytest.raises(UserError, match=r"'source_dir'.* holds no extracted netCDF files \(<YYYY>/<MM>/\*.nc\); it "
                                        r"is a GRIB archive, the source of the extraction step"):
        generate(tmp_path, venv, "preprocess1", {**answers_for("preprocess1", data), "source_dir": str(data["grib"])})


@pytest.mark.parametrize("corner", ["43.65, 0.45", "44.55, 0.75", "45.45, 6.45", "47.5, 0.15"])
def test_the_grid_size_hint_is_what_step_1_accepts(tmp_path, venv, data, corner):
    """From a corner between grid points (halfway ones included, where the nearest point is a tie) the size the
    question names as the largest is accepted, one row or column more is refused."""
    answers = {**answers_for("preprocess1", data), "sw_corner": corner}
    with pytest.raises(UserError) as err:
        generate(tmp_path, venv, "preprocess1", {**answers, "nyx": "99, 99"})
    ny, nx = map(int, re.search(r"at most (\d+), (\d+) from this corner", str(err.value)).groups())
    generate(tmp_path, venv, "preprocess1", {**answers, "nyx": f"{ny}, {nx}"})
    for bigger in (f"{ny + 1}, {nx}", f"{ny}, {nx + 1}"):
        with pytest.raises(UserError, match="'nyx'.*reaches beyond"):
            generate(tmp_path, venv, "preprocess1", {**answers, "nyx": bigger})


def test_a_renamed_runscript_takes_its_json_files_along(tmp_path):
    """A runscript written under another name (the existing one kept) has JSON files named after it, and its
    variables point to them."""
    from video_prediction_tools.runscript_generator.base import StepResult
    from video_prediction_tools.runscript_generator.generation import renamed

    split, moved_split = (tmp_path / "train_model_era5_x_data_split.json",
                          tmp_path / "train_model_era5_x_2_data_split.json")
    result = renamed(StepResult("train_model_era5_x.sh", {"datasplit_file": split, "seed": 7},
                                json_files={split: DATASPLIT}), "train_model_era5_x_2.sh")
    assert result.runscript_name == "train_model_era5_x_2.sh"
    assert result.variables == {"datasplit_file": moved_split, "seed": 7}
    assert result.json_files == {moved_split: DATASPLIT}


def test_hpc_job_setup_lines_come_before_the_venv_and_srun(tmp_path, data):
    """Job set-up lines (``module load``) of the answers (or the site profile) are written into the SLURM runscript
    before the venv is activated and before the first srun, and pass bash -n and shellcheck; a line bash cannot
    parse, or an #SBATCH line, is refused at its question."""
    venv = make_venv(tmp_path, data["base"], hpc=True)
    setup = ["module --force purge", "module load Stages/2024 GCC CUDA"]
    script = generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "slurm": {"setup": setup}})
    text = script.read_text()
    assert text.index(setup[0]) < text.index(setup[1]) < text.index('source "$VENV_DIR/bin/activate"') \
        < text.index("RUN_PYTHON=(srun")
    assert_clean_shell(script)
    saved = yaml.safe_load(Path(f"{script}.answers.yaml").read_text())
    assert saved["slurm"]["setup"] == "; ".join(setup)
    for wrong, fragment in (("if then", "bash cannot parse them"), ("#SBATCH --exclusive", "go into 'extra'")):
        with pytest.raises(UserError, match=f"'slurm.setup'.*{fragment}"):
            generate(tmp_path, venv, "preprocess2", {**answers_for("preprocess2", data), "slurm": {"setup": [wrong]}})


def test_gpus_for_a_venv_with_cpu_only_tensorflow_are_warned_about(tmp_path, data, capsys):
    """A GPU requested for a venv whose TensorFlow is tensorflow-cpu (create_env.sh installs it where it sees no
    GPU, e.g. on a login node) is a warning that says how to install the GPU build; a venv without it is not."""
    venv = make_venv(tmp_path, data["base"], hpc=True)
    answers = {**answers_for("train", data), "slurm": {"gpus": 1}}
    generate(tmp_path, venv, "train", {**answers, "exp_id": "gpu"})
    assert "tensorflow-cpu" not in capsys.readouterr().err
    (venv / "lib" / "python3.12" / "site-packages" / "tensorflow_cpu-2.21.0.dist-info").mkdir(parents=True)
    generate(tmp_path, venv, "train", {**answers, "exp_id": "gpu2"})
    err = " ".join(capsys.readouterr().err.split())
    assert f"Warning: 1 GPU(s) requested, but the venv {venv} holds tensorflow-cpu" in err
    assert "pip install -e" in err and "[cuda]" in err
    generate(tmp_path, venv, "train", {**answers, "exp_id": "cpu", "slurm": {"gpus": 0}})
    assert "tensorflow-cpu" not in capsys.readouterr().err


def test_postprocess_runscripts_create_no_results_directory_before_their_checks(tmp_path, venv, data):
    """The postprocessing creates its results directory itself once its checks passed; a runscript that fails a
    check (no trained model) leaves none behind."""
    script = generate(tmp_path, venv, "postprocess", answers_for("postprocess", data))
    assert "mkdir" not in script.read_text()


@pytest.mark.slow
def test_an_unknown_hyper_parameter_key_is_refused_without_tensorflow_in_the_wizard(tmp_path, data):
    """A key the template does not list is checked against the model's own defaults in a child process: the
    wizard's process imports no TensorFlow and prints none of its start-up lines (absl, oneDNN); a key the model
    has but the template does not list is taken."""
    venv = make_venv(tmp_path, data["base"])
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump({"step": "train", **answers_for("train", data, "good"),
                                    "model": "savp", "hparams": {"kl_anneal": "linear"}}))
    bad.write_text(yaml.safe_dump({"step": "train", **answers_for("train", data, "bad"),
                                   "hparams": {"no_such_key": 1}}))
    script = ("import sys\nfrom video_prediction_tools.runscript_generator import wizard\n"
              "from video_prediction_tools.utils.errors import UserError\n"
              "common = ['--venv_path', sys.argv[1], '--runscript_dir', sys.argv[2], '--dry-run']\n"
              "assert wizard.main([*common, '--answers', sys.argv[3]]) == 0\n"
              "try:\n    wizard.main([*common, '--answers', sys.argv[4]])\nexcept UserError as err:\n"
              "    print('REFUSED', err)\n"
              "print('TENSORFLOW', sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))\n")
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([PYTHON, "-c", script, str(venv), str(tmp_path / "rs"), str(good), str(bad)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "unknown hyper-parameter 'no_such_key' for model convLSTM" in result.stdout
    assert "TENSORFLOW []" in result.stdout
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr, result.stderr
