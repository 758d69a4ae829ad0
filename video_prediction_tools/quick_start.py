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

On your own ERA5 (:class:`Era5Demo`, ``--era5 <file or directory>``, default directory ``<repo>/ambs_era5``) the
source is the user's GRIB or netCDF data instead of the synthetic archive (a file is linked into ``era5/``): every
variable it holds is extracted (2t required), the box is the largest of its grid up to the GMD size or
``--region LAT,LON,NY,NX`` (:class:`Region`), the split is by dates (about 70 / 15 / 15 % of the hours, whole days,
in time order, printed) and the bootstrap block of postprocessing fits the test forecasts.

Usage example (the entry point is ``main_scripts/main_quick_start.py``; ``bash env_setup/quick_start.sh`` runs it
once the venv exists)::

    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path dev --preset tiny --demo_dir /tmp/t
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs --model savp
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs --era5 era5-2mt-2019-03-uk.grib

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

import numpy as np
import yaml

from .models.registry import known_models
from .postprocess.file_names import EVALUATION_FILE, SUMMARY_STEM
from .runscript_generator import checks
from .utils.errors import UserError
from .utils.io import read_json, write_text
from .utils.settings import create_base_tree, repo_root, templates_dir

STEPS = ("extract", "preprocess1", "preprocess2", "train", "postprocess", "meta_postprocess")
RUNSCRIPT_WRITTEN = re.compile(r"^Runscript written: (.+)$", re.MULTILINE)
ARCHIVE_RECORD = "archive.json"
NOT_BEATEN = 3
DEFAULT_MODEL = "convLSTM"
#: the GMD experiment's variables: the synthetic demo's channels, and the first channels (in this order) of a run on
#: the user's ERA5 where its data hold them
GMD_VARIABLES = ("2t", "tcc", "t_850")
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


#: MPI processes of the steps that share months out (the generator refuses more processes than months)
DEMO_MPI_PROCESSES = 2


def mpi_processes(dates: dict) -> int:
    """The MPI processes of extraction and steps 1-2 for the ``years``/``months`` placeholders of the dates (every
    month in every year): :data:`DEMO_MPI_PROCESSES`, at most one per month of work."""
    months = len(dates["years"].split(",")) * len(dates["months"].split(","))
    return max(1, min(DEMO_MPI_PROCESSES, months))


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
    #: the data split of the training (the JSON form; None: the preset's)
    datasplit: dict | None = None
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
        defaults = {"base_dir": self.demo_dir, "model": self.model, "varmapping": "template",
                    "variables": ",".join(GMD_VARIABLES), "num_stochastic_samples": self.num_stochastic_samples}
        return string.Template((quick_start_dir() / f"{step}.yaml").read_text()).substitute({**defaults, **values})

    def train_values(self, expname: str) -> dict:
        """The placeholders of the train answers: the data split and hyper-parameters inline."""
        datasplit = self.preset["datasplit"] if self.datasplit is None else self.datasplit
        return {"expname": expname, "exp_id": self.exp_id, "datasplit": inline_yaml(datasplit),
                "hparams": inline_yaml(self.hparams)}

    def postprocess_values(self, expname: str) -> dict:
        """The placeholders of the postprocess answers other than the run: the preset's batch size and bootstrap
        block length."""
        return dict(self.preset["postprocess"])

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

    def prepare_source(self) -> tuple[dict, dict, dict]:
        """Write the synthetic archive; returns the placeholders of the extraction's source, of its dates (also
        step 1's) and of step 1's domain (and channels, where not the GMD ones)."""
        self.make_archive()
        years = [part["year"] for part in self.preset["archive"]]
        months = [m for part in self.preset["archive"] for m in part["months"]]
        (sw_lat, sw_lon), (ny, nx) = self.preset["sw_corner"], self.preset["nyx"]
        return ({"grib_dir": self.grib_dir}, {"years": _number_list(years), "months": _number_list(months)},
                dict(sw_lat=sw_lat, sw_lon=sw_lon, ny=ny, nx=nx))

    def choose_split(self, expname: str) -> None:
        """Settle the data split once step 2 wrote ``expname`` (the demo: the preset's)."""

    def run(self) -> Path:
        """The whole chain; returns the results directory of the postprocessing."""
        create_base_tree(self.demo_dir)
        source, dates, domain = self.prepare_source()
        processes = {"mpi_processes": mpi_processes(dates)}
        self.run_step("extract", {**source, **dates, **processes})
        expname = self.run_step("preprocess1", {**domain, **dates, **processes})["expname"]
        self.run_step("preprocess2", {"expname": expname, **processes})
        self.choose_split(expname)
        return self.train_and_evaluate(expname)

    def train_and_evaluate(self, expname: str) -> Path:
        """Train the model on the preprocessed experiment ``expname``, postprocess and meta-postprocess the run;
        returns the results directory of the postprocessing."""
        derived = self.run_step("train", self.train_values(expname))
        run = derived["exp_id"]
        derived = self.run_step("postprocess", dict(expname=expname, run=run, **self.postprocess_values(expname)))
        results_dir = Path(derived["results_dir"])
        self.run_step("meta_postprocess", {"run_key": f"{expname}/{self.model}/{run}", "exp_id": self.exp_id})
        return results_dir


# ------------------------------------------------------------------------------------------------ your own ERA5
#: folder of the demo directory holding a link to the user's ERA5 file (a directory given is read where it lies)
ERA5_LINK_DIR = "era5"
FORECAST_VARIABLE = "2t"


@dataclass(frozen=True)
class Region:
    """A preprocessing domain: its SW corner [degrees north, degrees east] and ``ny`` rows x ``nx`` columns
    [grid points], as step 1's ``--sw_corner`` and ``--nyx``."""

    sw_lat: float
    sw_lon: float
    ny: int
    nx: int

    def __str__(self) -> str:
        lon = (self.sw_lon + 180.0) % 360.0 - 180.0
        return (f"SW corner {abs(self.sw_lat):g}{'N' if self.sw_lat >= 0 else 'S'} {abs(lon):g}"
                f"{'E' if lon >= 0 else 'W'}, {self.ny} x {self.nx} grid points")

    def values(self) -> dict:
        """The placeholders of step 1's answers."""
        return dict(sw_lat=self.sw_lat, sw_lon=self.sw_lon, ny=self.ny, nx=self.nx)


def parse_region(text: str) -> Region:
    """``--region LAT,LON,NY,NX`` (e.g. ``50.0,-10.0,32,48``) as a :class:`Region`."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        return Region(float(parts[0]), float(parts[1]), int(parts[2]), int(parts[3]))
    except ValueError:
        raise UserError(f"--region {text!r}: expected LAT,LON,NY,NX (the SW corner in degrees north and east, then "
                        f"rows and columns in grid points), e.g. 50.0,-10.0,32,48") from None


def survey_era5(source: Path):
    """The :class:`..data_extraction.archive.Archive` of ``source``, one GRIB or netCDF file or a directory of
    them in any layout extraction reads; UserError when it holds no ERA5 data."""
    from .data_extraction.archive import Archive, file_format, survey

    if source.is_file():
        if file_format(source) is None:
            raise UserError(f"--era5 {source}: not a GRIB or netCDF file")
        archive = Archive(source.parent)
        archive.add_period_file(source)
    elif source.is_dir():
        archive = survey(source)
    else:
        raise UserError(f"--era5 {source}: no such file or directory")
    if not archive.months():
        raise UserError(f"--era5 {source}: holds no GRIB or netCDF data files")
    return archive


def era5_variables(held: dict[str, list[tuple[str, float]]], source: Path) -> tuple[dict, list[str]]:
    """The variable mapping extracting every single-level and pressure-level field of ``held``
    (:meth:`..data_extraction.archive.Archive.variables`) and the channels of step 1 in order: those of
    :data:`GMD_VARIABLES` held, then the others sorted. UserError without 2 m temperature."""
    from .data_extraction.grib import NON_SURFACE_LEVEL_TYPES, PRESSURE_LEVEL_TYPES

    if FORECAST_VARIABLE not in held:
        raise UserError(f"--era5 {source}: holds no 2 m temperature (GRIB shortName 2t, netCDF t2m), the variable "
                        f"forecast; it holds: {', '.join(held) or 'nothing'}")
    surface = [name for name, levels in held.items() if any(kind not in NON_SURFACE_LEVEL_TYPES for kind, _ in levels)]
    multi: dict[str, dict[str, int]] = {}
    for name, levels in held.items():
        for kind, level in levels:
            if kind in PRESSURE_LEVEL_TYPES:
                pascal = int(round(level * PRESSURE_LEVEL_TYPES[kind]))
                multi.setdefault(name, {})[f"pl{pascal // 100}"] = pascal
    names = surface + [f"{name}_{pascal // 100}" for name, levels in multi.items() for pascal in levels.values()]
    channels = [name for name in GMD_VARIABLES if name in names] + sorted(set(names) - set(GMD_VARIABLES))
    return {"surface": surface, **({"multi": multi} if multi else {})}, channels


def era5_dates(months: list[tuple[int, int]], source: Path) -> dict:
    """The extraction's and step 1's years and months (both steps take every month in every year): the months held
    in every year of ``months``; UserError when no month is."""
    years = sorted({year for year, _ in months})
    common = [month for month in range(1, 13) if all((year, month) in months for year in years)]
    if not common:
        raise UserError(f"--era5 {source}: no calendar month is held in every one of its years "
                        f"({_number_list(years)}); the steps take the same months in every year: give data of "
                        f"one year, or of the same months in each year")
    return {"years": _number_list(years), "months": _number_list(common)}


def era5_region(archive, region: Region | None, source: Path) -> Region:
    """``region`` checked against the grid of ``archive`` by step 1's rule, or when None the box the runscript
    generator offers: the GMD domain where the grid holds it, else the largest box from the grid's SW point, at
    most the GMD size (56 x 92 points)."""
    from .runscript_generator.steps import default_box

    grid = checks.grid_of_grib(checks.archive_grid(archive, *archive.months()[0]))
    if region is None:
        (sw_lat, sw_lon), (ny, nx) = default_box(grid)
        return Region(sw_lat, sw_lon, ny, nx)
    try:
        checks.find_domain(*grid, (region.sw_lat, region.sw_lon), (region.ny, region.nx))
    except UserError as err:
        raise UserError(f"--region {region.sw_lat:g},{region.sw_lon:g},{region.ny},{region.nx} for the grid of "
                        f"{source}: {err}") from None
    return region


def describe_split(split: dict[str, list[list[str]]]) -> str:
    """The hour ranges of a split by dates, each mode's hours and share of all hours, one mode a line."""
    counts = {mode: sum(int((np.datetime64(last, "h") - np.datetime64(first, "h")).astype(int)) + 1
                        for first, last in ranges) for mode, ranges in split.items()}
    total = sum(counts.values())
    return "\n".join(f"  {mode:5s} " + ", ".join(f"{first} .. {last}" for first, last in ranges)
                     + f"  ({counts[mode]} h, {100 * counts[mode] / total:.0f} %)" for mode, ranges in split.items())


@dataclass
class Era5Demo(Demo):
    """The chain on the user's own ERA5 ``source`` (a GRIB or netCDF file, or a directory of them): every variable
    it holds (2t required), the box ``region`` (None: :func:`era5_region`'s default), a split by dates (``datasplit``
    None: :func:`..datasets.datasplit.propose_date_split` of the hours step 2 wrote, about 70 / 15 / 15 % whole
    days in time order) and the preset's hyper-parameters and postprocessing batch size. Everything is checked
    when the object is made, before anything is written."""

    source: Path = Path()
    region: Region | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.source = Path(self.source).expanduser().resolve()
        self.archive = survey_era5(self.source)
        self.varmapping, self.variables = era5_variables(self.archive.variables(), self.source)
        self.dates = era5_dates(self.archive.months(), self.source)
        self.region = era5_region(self.archive, self.region, self.source)
        self.block_length = int(self.preset["postprocess"]["block_length"])

    @property
    def source_dir(self) -> Path:
        return self.demo_dir / ERA5_LINK_DIR if self.source.is_file() else self.source

    def prepare_source(self) -> tuple[dict, dict, dict]:
        """Link a file given into :data:`ERA5_LINK_DIR` (the extraction reads a directory); print what is used."""
        if self.source.is_file():
            shutil.rmtree(self.source_dir, ignore_errors=True)  # only links: a link to an earlier file would be read
            self.source_dir.mkdir(parents=True)
            (self.source_dir / self.source.name).symlink_to(self.source)
        print(f"Your ERA5: {self.source}\n  variables: {', '.join(self.variables)}\n  years {self.dates['years']}, "
              f"months {self.dates['months']}\n  region: {self.region}", flush=True)
        return ({"grib_dir": self.source_dir, "varmapping": inline_yaml(self.varmapping)}, self.dates,
                {**self.region.values(), "variables": ",".join(self.variables)})

    def choose_split(self, expname: str) -> None:
        """The split by dates of the hours step 2 wrote (unless given), printed; the bootstrap block of
        postprocessing shortened to fit the test forecasts (at least ``MIN_BLOCKS`` blocks), UserError when they
        are too few."""
        from .data_preprocess.records import DATASET_INFO
        from .datasets.datasplit import load_datasplit, propose_date_split
        from .datasets.era5 import available_hours
        from .postprocess.bootstrap import MIN_BLOCKS

        tfrecords = self.demo_dir / "PreprocessedData" / expname / "tfrecords"
        hours = available_hours(read_json(tfrecords / DATASET_INFO, what="step-2 dataset description"))
        if self.datasplit is None:
            self.datasplit = propose_date_split(hours)
        print(f"\nData split by dates (whole days, in time order):\n{describe_split(self.datasplit)}", flush=True)
        test = load_datasplit(self.datasplit, available=hours)["test"]
        windows = checks.evaluated_windows(tfrecords, test, int(self.hparams["sequence_length"])) or 0
        if windows < MIN_BLOCKS:
            raise UserError(f"the test split holds {windows} forecasts of {self.hparams['sequence_length']} h; "
                            f"postprocessing needs at least {MIN_BLOCKS}: give data of more days")
        self.block_length = min(self.block_length, windows // MIN_BLOCKS)

    def postprocess_values(self, expname: str) -> dict:
        return {**self.preset["postprocess"], "block_length": self.block_length}


# ---------------------------------------------------------------------------------------------------- report
def read_summary(results_dir: Path) -> list[dict]:
    """Rows of ``summary_metrics.csv`` (one per lead hour): the scores as floats, text columns (the metric
    conventions) as they are."""
    path = results_dir / f"{SUMMARY_STEM}.csv"
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
    print(f"  metrics table : {results_dir / SUMMARY_STEM}.md (and .csv)")
    print(f"  metrics netCDF: {results_dir / EVALUATION_FILE}")
    print(f"  plots         : {results_dir}/*.png")
    if meta_dirs:
        print(f"  meta plots    : {meta_dirs[-1]}")
    print_mse_table(rows, model)
    return NOT_BEATEN if losing_leads(rows, model) else 0
