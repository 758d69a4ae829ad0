"""The quick-start demo: the whole AMBS workflow on a small synthetic ERA5-like archive, the way a user runs it.

Every step goes through a runscript that ``env_setup/generate_runscript.py`` generates from an answers file
(``templates/quick_start/<step>.yaml``, placeholders filled in here) and that is then run with ``bash``:
extraction → preprocessing 1 → preprocessing 2 → training (convLSTM, or the model given with ``--model``) →
postprocessing → meta-postprocessing. At the end the model's MSE is printed per lead hour beside both baselines,
persistence (same hour of the previous day) and the last input frame held, with its skill against each.

Everything lives in the demo directory (default ``<repo>/ambs_demo``): the GRIB archive (``grib/``), the base
directory tree (``ExtractedData/``, ``PreprocessedData/``, ``Models/``, ``Results/``, ``meta_postprocess/``), the
runscripts with their answers (``no_HPC_scripts/``) and the filled-in answers files (``answers/``). The user's
own settings (base directory, runscript directory) are left alone. A rerun reuses the archive and the extracted
and preprocessed data (the steps skip finished months) and trains a new run with a new experiment id;
``--fresh`` deletes the demo directory first.

Usage example (the entry point is ``main_scripts/main_quick_start.py``; ``bash env_setup/quick_start.sh`` runs it
once the venv exists)::

    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path dev --preset tiny --demo_dir /tmp/t
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs --model savp

Sizes (domain, months, data split, each model's hyper-parameters) are the presets of
``templates/quick_start/presets.yaml``: ``demo`` (default, a few minutes of training on 2 CPU cores) and ``tiny``
(the end-to-end test in CI). A preset gives every model its hyper-parameters as overrides of the model's template
``templates/hparams/era5/<model>/model_hparams_template.json`` (:func:`preset_hparams`). Exit status: 0 when the
model beats persistence at every lead hour, 3 when it does not (the table is printed either way; the last frame
held is reported, not required), 2 on a user error.
"""
from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import string
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .models.registry import known_models
from .runscript_generator import checks
from .utils.errors import UserError
from .utils.io import read_json, write_text
from .utils.settings import create_base_tree, repo_root, templates_dir

STEPS = ("extract", "preprocess1", "preprocess2", "train", "postprocess", "meta_postprocess")
RUNSCRIPT_WRITTEN = re.compile(r"^Runscript written: (.+)$", re.MULTILINE)
ARCHIVE_RECORD = "archive.json"
NOT_BEATEN = 3
DEFAULT_MODEL = "convLSTM"
#: the baselines of the printed summary as ``summary_metrics.csv`` names them (the products of
#: ``postprocess.baselines``, which the quick start does not import): (product, column of the model's skill against
#: it, column header, in words)
SUMMARY_BASELINES = (("persistence", "skill_mse", "persistence", "persistence"),
                     ("copy_last_frame", "skill_copy_last_frame_mse", "last frame", "the last input frame held"))


def quick_start_dir() -> Path:
    return templates_dir() / "quick_start"


def load_preset(name: str) -> dict:
    """The preset ``name`` of ``templates/quick_start/presets.yaml``."""
    presets = yaml.safe_load((quick_start_dir() / "presets.yaml").read_text())
    if name not in presets:
        raise UserError(f"--preset {name!r}: expected one of {', '.join(presets)}")
    return presets[name]


def check_model(model: str) -> str:
    """``model`` if it is a registered model (found without importing TensorFlow), else a :class:`UserError`."""
    models = known_models()
    if model not in models:
        raise UserError(f"--model {model!r}: expected one of {', '.join(models)}")
    return model


def preset_hparams(preset: dict, model: str, preset_name: str = "the preset") -> dict:
    """The hyper-parameters ``model`` trains with in ``preset``: its ERA5 template
    (``templates/hparams/era5/<model>/model_hparams_template.json``, else the model's defaults) updated by the
    overrides of ``preset["models"][model]``, validated as the runscript generator validates them (keys, types,
    ranges); a model without an entry or an invalid override is a :class:`UserError` naming ``presets.yaml``."""
    source = f"{quick_start_dir() / 'presets.yaml'}: preset {preset_name}, model {model}"
    overrides = (preset.get("models") or {}).get(check_model(model))
    if not isinstance(overrides, dict):
        raise UserError(f"{source}: expected a mapping of hyper-parameter overrides, got {overrides!r}")
    template = templates_dir() / "hparams" / "era5" / model / "model_hparams_template.json"
    if template.is_file():
        hparams = {**read_json(template, what=f"hyper-parameter template of {model}"), **overrides}
    else:
        from .models.registry import default_hparams  # imports the model's module (TensorFlow): only when needed

        hparams = {**default_hparams(model), **overrides}
    try:
        checks.hparams(hparams, model, template)
    except UserError as err:
        raise UserError(f"{source}: {err}") from None
    return hparams


def inline_yaml(value) -> str:
    """``value`` as one line of YAML flow style, read back as the same value (JSON would not do: PyYAML reads the
    JSON number ``1e-05`` as a string)."""
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()


def _number_list(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in sorted(set(values)))


@dataclass
class StepTiming:
    step: str
    wall_s: float
    cpu_s: float


@dataclass
class Demo:
    """One run of the demo chain in ``demo_dir`` with the venv ``venv_dir``, training ``model`` with the sizes of
    ``preset`` (``hparams``: the model's hyper-parameters, :func:`preset_hparams` of the preset when not given;
    ``num_stochastic_samples``: forecast members per window that postprocessing draws from a stochastic model)."""

    venv_dir: Path
    demo_dir: Path
    preset: dict
    exp_id: str = "demo"
    model: str = DEFAULT_MODEL
    hparams: dict | None = None
    num_stochastic_samples: int = 1
    timings: list[StepTiming] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.hparams is None:
            self.hparams = preset_hparams(self.preset, self.model)

    @property
    def python(self) -> Path:
        return self.venv_dir / "bin" / "python"

    @property
    def runscript_dir(self) -> Path:
        return self.demo_dir / "no_HPC_scripts"

    @property
    def grib_dir(self) -> Path:
        return self.demo_dir / "grib"

    # ------------------------------------------------------------------------------------------------ running
    def _timed(self, step: str, command: list[str]) -> str:
        """Run ``command`` (output shown live and returned), recording its wall and CPU time under ``step``."""
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter would drown the steps' output
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        for line in process.stdout:
            print(f"    {line}", end="", flush=True)
            lines.append(line)
        process.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.timings.append(StepTiming(step, time.perf_counter() - started, cpu))
        if process.returncode != 0:
            raise UserError(f"demo step '{step}' failed (exit {process.returncode}): {' '.join(command)}; "
                            f"see the output above")
        return "".join(lines)

    def make_archive(self) -> None:
        """The synthetic GRIB archive (reused when one of the same preset exists)."""
        record = self.grib_dir / ARCHIVE_RECORD
        wanted = {"region": self.preset["region"], "archive": self.preset["archive"]}
        if record.is_file() and json.loads(record.read_text()) == wanted:
            print(f"Reusing the synthetic GRIB archive {self.grib_dir}")
            return
        # data of another archive would be reused by the steps (they skip finished months): start afresh
        for stale in (self.grib_dir, self.demo_dir / "ExtractedData", self.demo_dir / "PreprocessedData"):
            shutil.rmtree(stale, ignore_errors=True)
        create_base_tree(self.demo_dir)
        region = self.preset["region"]
        for part in self.preset["archive"]:
            self._timed("synthetic archive", [
                str(self.python), "-m", "video_prediction_tools.main_scripts.main_synthetic_archive",
                "--years", str(part["year"]), "--months", *map(str, part["months"]), "--days", str(part["days"]),
                "--out", str(self.grib_dir), "--lat_range", *map(str, region["lat_range"]),
                "--lon_range", *map(str, region["lon_range"]), "--resolution", "0.3", "--seed", "0"])
        write_text(record, json.dumps(wanted, indent=2))

    def answers_text(self, step: str, values: dict) -> str:
        """``templates/quick_start/<step>.yaml`` filled in with ``values`` (by default ``${model}`` is the demo's
        model and ``${num_stochastic_samples}`` its member count)."""
        defaults = {"base_dir": self.demo_dir, "model": self.model,
                    "num_stochastic_samples": self.num_stochastic_samples}
        return string.Template((quick_start_dir() / f"{step}.yaml").read_text()).substitute({**defaults, **values})

    def train_values(self, expname: str) -> dict:
        """The placeholders of the train answers: the data split and hyper-parameters inline."""
        return {"expname": expname, "exp_id": self.exp_id, "datasplit": inline_yaml(self.preset["datasplit"]),
                "hparams": inline_yaml(self.hparams)}

    def generate(self, step: str, values: dict) -> Path:
        """Fill in ``templates/quick_start/<step>.yaml``, generate the step's runscript from it and return it."""
        answers = self.demo_dir / "answers" / f"{step}.yaml"
        write_text(answers, self.answers_text(step, values))
        output = self._timed(f"generate {step}", [
            str(self.python), str(repo_root() / "env_setup" / "generate_runscript.py"),
            "--venv_path", str(self.venv_dir), "--step", step, "--answers", str(answers), "--no-hpc",
            "--base_dir", str(self.demo_dir), "--runscript_dir", str(self.runscript_dir), "--overwrite"])
        match = RUNSCRIPT_WRITTEN.search(output)
        if match is None:
            raise UserError(f"the generator did not report a runscript for step '{step}'")
        return Path(match.group(1).strip())

    def run_step(self, step: str, values: dict) -> dict:
        """Generate and run (``bash``) the runscript of ``step``; return the ``derived`` values it saved."""
        print(f"\n=== {step} ===", flush=True)
        runscript = self.generate(step, values)
        self._timed(step, ["bash", str(runscript)])
        saved = yaml.safe_load(runscript.with_name(runscript.name + ".answers.yaml").read_text()) or {}
        return saved.get("derived", {}) or {}

    def run(self) -> Path:
        """The whole chain; returns the results directory of the postprocessing."""
        create_base_tree(self.demo_dir)
        self.make_archive()
        years = [part["year"] for part in self.preset["archive"]]
        months = [m for part in self.preset["archive"] for m in part["months"]]
        dates = {"years": _number_list(years), "months": _number_list(months)}
        self.run_step("extract", dict(grib_dir=self.grib_dir, **dates))
        (sw_lat, sw_lon), (ny, nx) = self.preset["sw_corner"], self.preset["nyx"]
        derived = self.run_step("preprocess1", dict(sw_lat=sw_lat, sw_lon=sw_lon, ny=ny, nx=nx, **dates))
        expname = derived["expname"]
        self.run_step("preprocess2", {"expname": expname})
        return self.train_and_evaluate(expname)

    def train_and_evaluate(self, expname: str) -> Path:
        """Train the model on the preprocessed experiment ``expname``, postprocess and meta-postprocess the run;
        returns the results directory of the postprocessing."""
        derived = self.run_step("train", self.train_values(expname))
        run = derived["exp_id"]
        derived = self.run_step("postprocess", dict(expname=expname, run=run, **self.preset["postprocess"]))
        results_dir = Path(derived["results_dir"])
        self.run_step("meta_postprocess", {"run_key": f"{expname}/{self.model}/{run}", "exp_id": self.exp_id})
        return results_dir


# ---------------------------------------------------------------------------------------------------- report
def read_summary(results_dir: Path) -> list[dict]:
    """Rows of ``summary_metrics.csv`` (one per lead hour): the scores as floats, text columns (the metric
    conventions) as they are."""
    path = results_dir / "summary_metrics.csv"
    if not path.is_file():
        raise UserError(f"postprocessing wrote no summary table {path}")

    def number_or_text(value: str):
        try:
            return float(value)
        except ValueError:
            return value

    with path.open() as handle:
        return [{key: number_or_text(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def losing_leads(rows: list[dict], model: str = DEFAULT_MODEL, baseline: str = "persistence",
                 metric: str = "mse") -> list[int]:
    """Lead hours at which the model's averaged ``metric`` is NOT lower than the ``baseline``'s (a product of
    ``summary_metrics.csv``; empty: beaten at all)."""
    return [int(row["fcst_hour"]) for row in rows
            if not row[f"{model}_{metric}"] < row[f"{baseline}_{metric}"]]


def print_mse_table(rows: list[dict], model: str) -> None:
    """The model's MSE per lead hour beside each of :data:`SUMMARY_BASELINES` and the skill against it, then per
    baseline the lead hours where the model does not beat it."""
    width = max(10, len(model))
    print(f"\n  2t MSE [K^2] per lead hour (test split), {model} vs persistence (same hour of the previous day) and vs")
    print(f"  the last input frame held; skill = 1 - MSE({model}) / MSE(baseline):")
    print(f"  {'lead h':>6} {model:>{width}}" + "".join(f" {header:>12} {'skill':>7}"
                                                      for _, _, header, _ in SUMMARY_BASELINES))
    for row in rows:
        print(f"  {int(row['fcst_hour']):>6} {row[f'{model}_mse']:>{width}.4f}" + "".join(
            f" {row[f'{baseline}_mse']:>12.4f} {row[skill]:>7.3f}" for baseline, skill, _, _ in SUMMARY_BASELINES))
    print()
    for baseline, _, _, words in SUMMARY_BASELINES:
        losing = losing_leads(rows, model, baseline)
        print(f"  The {model} does NOT beat {words} at lead hour(s) {', '.join(map(str, losing))}." if losing
              else f"  The {model} beats {words} at every lead hour 1..{len(rows)}.")


def report(demo: Demo, results_dir: Path) -> int:
    """Print the time per step, where the results are and the MSE table (:func:`print_mse_table`); return 0 when
    the model beats persistence at every lead hour, :data:`NOT_BEATEN` when it does not."""
    rows, model = read_summary(results_dir), demo.model
    meta_dirs = sorted((demo.demo_dir / "meta_postprocess").glob(f"*_{demo.exp_id}"))
    print("\n=== time per step (wall / CPU seconds) ===")
    totals: dict[str, list[float]] = {}
    for timing in demo.timings:
        totals.setdefault(timing.step, [0.0, 0.0])
        totals[timing.step][0] += timing.wall_s
        totals[timing.step][1] += timing.cpu_s
    for step, (wall, cpu) in totals.items():
        print(f"  {step:28s} {wall:8.1f} s {cpu:8.1f} s")
    print("\n=== results ===")
    print(f"  metrics table : {results_dir / 'summary_metrics.md'} (and .csv)")
    print(f"  metrics netCDF: {results_dir / 'evaluation_metrics.nc'}")
    print(f"  plots         : {results_dir}/*.png")
    if meta_dirs:
        print(f"  meta plots    : {meta_dirs[-1]}")
    print_mse_table(rows, model)
    return NOT_BEATEN if losing_leads(rows, model) else 0
