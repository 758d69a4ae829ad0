"""The workflow steps of the runscript generator: for each step its questions, checks and template variables.

Each step class asks its questions through a *prompter* (interactive questionary front end or answers file,
see :mod:`.wizard`), checks every answer against what earlier steps produced (:mod:`.checks`), and returns a
:class:`StepResult`: the runscript name, template variables, JSON files to write and a run directory to create.

With ``Context.chain`` set, the data of earlier steps need not exist yet (runscripts chained with
``sbatch --dependency=afterok``): a step then accepts what an earlier generated runscript will produce (read from
its saved answers) and leaves the data checks to the runscript and the step itself at run time.

Steps, in workflow order, with the original generator's names: ``extract``, ``preprocess1``, ``preprocess2``,
``train``, ``postprocess``, ``meta_postprocess``.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..utils.errors import UserError
from ..utils.settings import Settings, templates_dir
from . import checks
from .render import answers_path

DATASET = "era5"


@dataclass
class Context:
    """What every step needs to know about the user's set-up."""

    settings: Settings
    venv_dir: Path
    runscript_dir: Path
    hpc: bool
    chain: bool = False
    now: datetime = field(default_factory=datetime.now)
    user: str = field(default_factory=lambda: os.environ.get("USER") or getpass.getuser())

    @property
    def base_dir(self) -> Path:
        return Path(self.settings.base_dir)

    def exp_id(self, typed: str) -> str:
        """``<YYYYmmddTHHMMSS>_<USER>_<typed id>``: the id of a training run, as the original named it."""
        return f"{self.now:%Y%m%dT%H%M%S}_{self.user}_{typed}"

    def planned(self, runscript_name: str) -> dict[str, Any]:
        """The ``derived`` values saved with an earlier generated runscript (empty if there is none)."""
        path = answers_path(self.runscript_dir / runscript_name)
        if not path.is_file():
            return {}
        try:
            return (yaml.safe_load(path.read_text()) or {}).get("derived", {}) or {}
        except yaml.YAMLError:
            return {}


@dataclass
class StepResult:
    runscript_name: str
    variables: dict[str, Any]
    json_files: dict[Path, Any] = field(default_factory=dict)
    new_directory: Path | None = None
    #: values computed from the answers, saved under ``derived`` in the answers file (for later steps)
    derived: dict[str, Any] = field(default_factory=dict)


class Step:
    name = ""
    title = ""
    template = ""
    #: runs as an MPI job over months (mpiexec -n N without SLURM)
    mpi = False

    def ask(self, prompter, ctx: Context) -> StepResult:
        raise NotImplementedError


def _subdirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if path.is_dir() else []


def _exp_id_parser(ctx: Context):
    """Typed ids become part of file names; under SLURM also of the #SBATCH log paths, which sbatch reads unquoted."""
    def parse(text: str) -> str:
        typed = checks.parse_identifier(text)
        if ctx.hpc:
            checks.sbatch_path(ctx.runscript_dir / typed)
        return typed

    return parse


# --------------------------------------------------------------------------------------------------- extract
class Extract(Step):
    name = "extract"
    title = "data extraction: ERA5 GRIB files → netCDF (ExtractedData)"
    template = "data_extraction_era5.sh.j2"
    mpi = True

    def ask(self, p, ctx):
        source_dir = p.text("source_dir", "Directory of the ERA5 GRIB files (laid out <YYYY>/<MM>/*.grb):",
                            checks.grib_root,
                            guidance="The archive root: one folder per year, one per month, GRIB files inside "
                                     "(e.g. /p/fastdata/slmet/slmet111/met_data/ecmwf/era5/grib, or the output "
                                     "of python -m video_prediction_tools.main_scripts.main_synthetic_archive).")
        found = checks.years_with_data(source_dir, lambda d: bool(checks.grib_files(d)))
        years = p.text("years", f"Years to extract (found: {checks.format_numbers(found)}):",
                       checks.parse_years, default=checks.format_numbers(found) or None,
                       guidance="Comma-separated years or ranges, e.g. 2017,2018 or 2007-2019.")
        months = p.text("months", "Months to extract:", lambda text: self._months(text, source_dir, years),
                        default="1-12", guidance="Comma-separated months or ranges, e.g. 1-12 or 1,2,3. Every "
                                                 "chosen year must hold GRIB files for every chosen month.")
        template = templates_dir() / "data_extraction" / "era5_varmapping_template.json"
        runscript = "data_extraction_era5.sh"
        varmap_file = ctx.runscript_dir / "data_extraction_era5_varmapping.json"
        mapping = p.edit_json("varmapping", "variable mapping (which GRIB fields to extract)", template,
                              lambda content, path: checks.varmapping(content, path))
        # the grid of the extracted data, for a chained preprocess1 (which names its experiment after the grid
        # point nearest the corner it is given)
        grid = checks.grib_grid(source_dir / f"{years[0]:04d}" / f"{months[0]:02d}")
        return StepResult(runscript, dict(source_dir=source_dir, target_dir=ctx.base_dir / "ExtractedData",
                                          varmap_file=varmap_file, years=years, months=months),
                          json_files={varmap_file: mapping},
                          derived={"years": years, "months": months, "grib_grid": grid})

    @staticmethod
    def _months(text, source_dir, years):
        months = checks.parse_months(text)
        checks.require_months(source_dir, years, months, lambda d: bool(checks.grib_files(d)), "GRIB files")
        return months


# --------------------------------------------------------------------------------------------------- preprocess1
class Preprocess1(Step):
    name = "preprocess1"
    title = "preprocessing step 1: crop the domain, per-month statistics (PreprocessedData/<EXPNAME>)"
    template = "preprocess_data_era5_step1.sh.j2"
    mpi = True

    def ask(self, p, ctx):
        from ..data_preprocess.metadata import expname

        default_source = ctx.base_dir / "ExtractedData"
        source_dir = p.text("source_dir", "Directory of the extracted netCDF files:",
                            lambda text: self._source(text, ctx), default=str(default_source),
                            guidance="ExtractedData of the base directory unless you extracted elsewhere; laid out "
                                     "<YYYY>/<MM>/*.nc.")
        has_nc = (lambda d: True) if ctx.chain else (lambda d: bool(checks.netcdf_files(d)))
        planned = ctx.planned("data_extraction_era5.sh") if ctx.chain else {}
        found = checks.years_with_data(source_dir, has_nc) or planned.get("years", [])
        years = p.text("years", f"Years to preprocess (found: {checks.format_numbers(found) or 'none'}):",
                       lambda text: self._years(text, source_dir, found, ctx),
                       default=checks.format_numbers(found) or None,
                       guidance="Comma-separated years or ranges among those extracted.")
        months = p.text("months", "Months to preprocess:",
                        lambda text: self._months(text, source_dir, years, ctx), default="1-12",
                        guidance="Every chosen year must have extracted files for every chosen month.")
        # variables and grid come from a file of the first chosen month of every chosen year (none yet in chain mode)
        reference_files = [] if ctx.chain else [
            checks.netcdf_files(source_dir / f"{year:04d}" / f"{months[0]:02d}")[0] for year in years]
        per_file = {path: checks.dataset_variables(path) for path in reference_files}
        reference = next(iter(per_file), None)
        known = per_file[reference] if reference is not None else []
        default_vars = [v for v in ("2t", "tcc", "t_850") if v in known] if known else ["2t", "tcc", "t_850"]
        variables = p.text("variables", f"Variables (channels, in order; known: {', '.join(known) or 'not yet'}):",
                           lambda text: checks.parse_variables(text, per_file), default=",".join(default_vars),
                           guidance="One or more comma-separated names from the list; order = channel order; "
                                    "a name may repeat. The GMD experiment uses 2t,tcc,t_850.")
        grid = checks.grid_of(reference) if reference is not None else self._planned_grid(ctx)
        sw_corner = p.text("sw_corner", "SW corner of the domain as 'lat, lon' in degrees (e.g. 38.4, 0.0):",
                           lambda text: self._sw_corner(text, grid), default="38.4, 0.0",
                           guidance="Latitude in [-90, 90] (negative = south), longitude in degrees east "
                                    "([0, 360) or negative for west); the nearest grid point is used.")
        nyx = p.text("nyx", "Grid points of the domain as 'ny, nx' (rows north of, columns east of the corner):",
                     lambda text: self._nyx(text, grid, sw_corner), default="56, 92",
                     guidance="Both at least 2; the box must fit into the grid of the extracted data "
                              "(the GMD domain is 56, 92 at 0.3°).")
        # step 1's own rule (nearest grid point) names the experiment, also in chain mode
        domain = checks.find_domain(*grid, sw_corner, nyx)
        derived = {"years": years, "months": months, "expname": expname(years, months, domain, variables)}
        return StepResult("preprocess_data_era5_step1.sh",
                          dict(source_dir=source_dir, destination_dir=ctx.base_dir / "PreprocessedData",
                               years=years, months=months, variables=variables, sw_corner=list(sw_corner),
                               nyx=list(nyx), expname=derived["expname"]),
                          derived=derived)

    @staticmethod
    def _planned_grid(ctx):
        """Chain mode: the grid of the data the generated extraction runscript will write (from its saved answers)."""
        keys = ctx.planned("data_extraction_era5.sh").get("grib_grid")
        if not keys:
            raise UserError(f"no extracted data and no generated extraction runscript in {ctx.runscript_dir} to "
                            f"take the grid from: generate the extraction runscript first, so that the experiment "
                            f"is named after the grid point nearest the SW corner as step 1 will name it")
        return checks.grid_of_grib(keys)

    @staticmethod
    def _source(text, ctx):
        path = Path(str(text).strip()).expanduser()
        if ctx.chain and str(text).strip():
            return path.resolve()
        return checks.existing_dir(text, "extracted-data directory")

    @staticmethod
    def _years(text, source_dir, found, ctx):
        years = checks.parse_years(text)
        missing = [str(y) for y in years if y not in found]
        if missing and not ctx.chain:
            raise UserError(f"no extracted data for year(s) {', '.join(missing)} in {source_dir} "
                            f"(found: {checks.format_numbers(found) or 'none'})")
        return years

    @staticmethod
    def _months(text, source_dir, years, ctx):
        months = checks.parse_months(text)
        if not ctx.chain:
            checks.require_months(source_dir, years, months, lambda d: bool(checks.netcdf_files(d)),
                                  "extracted netCDF files")
        return months

    @staticmethod
    def _sw_corner(text, grid):
        lat, lon = checks.parse_pair(text, "SW corner", float)
        if not -90.0 <= lat <= 90.0 or not -180.0 <= lon < 360.0:
            raise UserError(f"SW corner ({lat}, {lon}): latitude must be in [-90, 90], longitude in [-180, 360)")
        checks.find_domain(*grid, (lat, lon), (2, 2))
        return lat, lon

    @staticmethod
    def _nyx(text, grid, sw_corner):
        ny, nx = checks.parse_pair(text, "grid size", int)
        if ny < 2 or nx < 2:
            raise UserError(f"grid size ny={ny}, nx={nx}: both must be at least 2")
        checks.find_domain(*grid, sw_corner, (ny, nx))
        return ny, nx


# --------------------------------------------------------------------------------------------------- preprocess2
def _experiment(p, ctx, question: str, usable, what: str) -> str:
    """Choose ``PreprocessedData/<EXPNAME>``: a select list of usable experiments (chain mode: also the one
    that the generated step-1 runscript will write)."""
    root = ctx.base_dir / "PreprocessedData"
    choices = [name for name in _subdirs(root) if usable(root / name)]
    planned = ctx.planned("preprocess_data_era5_step1.sh").get("expname") if ctx.chain else None
    if planned and planned not in choices:
        choices.append(planned)
    if not choices:
        raise UserError(f"no experiment in {root} has {what}; run the earlier steps first "
                        f"(or generate their runscripts and use --chain)")
    return p.select("experiment", question, choices, default=planned or choices[-1])


class Preprocess2(Step):
    name = "preprocess2"
    title = "preprocessing step 2: TFRecords and statistics.json"
    template = "preprocess_data_era5_step2.sh.j2"
    mpi = True

    def ask(self, p, ctx):
        experiment = _experiment(p, ctx, "Experiment (PreprocessedData/<EXPNAME>) to convert to TFRecords:",
                                 lambda d: (d / "metadata.json").is_file(), "metadata.json from step 1")
        sequence_length = p.text("sequence_length", "Window length in hours to check the data for (context + "
                                                    "forecast frames):",
                                 lambda text: checks.parse_int(text, "sequence length", 2, 744), default="24",
                                 guidance="GMD: 24 (12 context + 12 forecast hours). Step 2 only checks that "
                                          "windows this long fit into the data; the training window length is "
                                          "the train step's hyper-parameter sequence_length.")
        return StepResult("preprocess_data_era5_step2.sh",
                          dict(source_dir=ctx.base_dir / "PreprocessedData" / experiment,
                               sequence_length=sequence_length),
                          derived={"expname": experiment})


# --------------------------------------------------------------------------------------------------- train
class Train(Step):
    name = "train"
    title = "training: one model on one preprocessed experiment (Models/<EXPNAME>/<model>/<exp_id>)"
    template = "train_model_era5.sh.j2"

    def ask(self, p, ctx):
        from ..models.registry import known_models

        experiment = _experiment(p, ctx, "Experiment whose TFRecords to train on:",
                                 lambda d: bool(checks.tfrecord_months(d / "tfrecords")) or ctx.chain,
                                 "TFRecords from step 2")
        experiment_dir = ctx.base_dir / "PreprocessedData" / experiment
        models = known_models()
        model = p.select("model", "Model to train:", models, default="convLSTM" if "convLSTM" in models else None)
        hparams_template = templates_dir() / "hparams" / DATASET / model / "model_hparams_template.json"
        split_template = templates_dir() / "data_split" / DATASET / "datasplit_template.json"
        for template in (hparams_template, split_template):
            if not template.is_file():
                raise UserError(f"template {template} is missing; cannot configure model {model}")
        typed = p.text("exp_id", "Experiment id (extended to <YYYYmmddTHHMMSS>_<USER>_<id>):",
                       _exp_id_parser(ctx), guidance="A short name for this training run, e.g. gmd_reference.")
        exp_id = ctx.exp_id(typed)
        run_dir = ctx.base_dir / "Models" / experiment / model / exp_id
        if run_dir.exists():
            raise UserError(f"run directory {run_dir} exists already; choose another experiment id")
        available = self._available_months(ctx, experiment, experiment_dir)
        split = p.edit_json("datasplit", "data split (train/val/test years and months)", split_template,
                            lambda content, path: checks.datasplit(content, available))
        hparams = p.edit_json("hparams", f"hyper-parameters of {model}", hparams_template,
                              lambda content, path: checks.hparams(content, model, hparams_template))
        seed = p.text("seed", "Random seed:", lambda text: checks.parse_int(text, "seed", 0), default="1234")
        return StepResult(f"train_model_{DATASET}_{exp_id}.sh",
                          dict(input_dir=experiment_dir, output_dir=run_dir, model=model, seed=seed),
                          json_files={run_dir / "data_split.json": split, run_dir / "model_hparams.json": hparams},
                          new_directory=run_dir,
                          derived={"expname": experiment, "model": model, "exp_id": exp_id, "run_dir": str(run_dir)})

    @staticmethod
    def _available_months(ctx, experiment, experiment_dir):
        found = checks.tfrecord_months(experiment_dir / "tfrecords")
        if found or not ctx.chain:
            return found
        planned = ctx.planned("preprocess_data_era5_step1.sh")
        if planned.get("expname") == experiment:
            return {(y, m) for y in planned["years"] for m in planned["months"]}
        return None


# --------------------------------------------------------------------------------------------------- postprocess
AUTO_CHECKPOINT = "best (or newest) checkpoint at run time"


class Postprocess(Step):
    name = "postprocess"
    title = "postprocessing: forecasts, metrics and plots of a trained model (Results/<EXPNAME>/<model>/<exp_id>)"
    template = "visualize_postprocess_era5.sh.j2"

    def ask(self, p, ctx):
        models_root = ctx.base_dir / "Models"
        experiments = [name for name in _subdirs(models_root) if _subdirs(models_root / name)]
        if not experiments:
            raise UserError(f"no trained models in {models_root}; generate and run a training runscript first")
        experiment = p.select("experiment", "Experiment the model was trained on:", experiments)
        model = p.select("model", "Trained model:", _subdirs(models_root / experiment))
        runs = _subdirs(models_root / experiment / model)
        if not runs:
            raise UserError(f"no training runs in {models_root / experiment / model}")
        run = p.select("run", "Training run (<YYYYmmddTHHMMSS>_<USER>_<id>):", runs, default=runs[-1])
        run_dir = models_root / experiment / model / run
        checkpoint_choices = [AUTO_CHECKPOINT] + checks.checkpoints(run_dir)
        checkpoint = p.select("checkpoint", "Checkpoint to evaluate:", checkpoint_choices, default=AUTO_CHECKPOINT)
        if checkpoint == AUTO_CHECKPOINT and not ctx.chain and not checks.checkpoints(run_dir):
            raise UserError(f"run {run_dir} has no checkpoint_<step> directory yet; train it first "
                            f"(or use --chain when its training runscript is still to run)")
        mode = p.select("mode", "Data split to evaluate:", ["test", "val"], default="test")
        batch_size = p.text("batch_size", "Batch size:", lambda t: checks.parse_int(t, "batch size", 1), default="4")
        samples = p.text("num_stochastic_samples", "Stochastic samples per forecast (1 for deterministic models):",
                         lambda t: checks.parse_int(t, "number of stochastic samples", 1), default="1")
        from ..postprocess.metrics import CLIMATOLOGY_METRICS

        metrics = p.text("evaluation_metrics", f"Evaluation metrics ({', '.join(checks.known_metrics())}):",
                         checks.parse_metrics, default=",".join(checks.known_metrics()),
                         guidance=f"Comma-separated; {', '.join(CLIMATOLOGY_METRICS)} need a climatology file.")
        climatology = p.text("climatology_file", "Climatology netCDF for ACC (empty: none, ACC is skipped):",
                             checks.climatology_file, default="",
                             guidance="Made by python -m video_prediction_tools.main_scripts.main_climatology; "
                                      "dims (month, hour, lat, lon).")
        if climatology is None and set(metrics) & set(CLIMATOLOGY_METRICS):
            metrics = checks.parse_metrics(",".join(name for name in metrics if name not in CLIMATOLOGY_METRICS))
            p.info("Note: no climatology file given, so ACC is left out (postprocessing refuses it without one).")
        block_length = p.text("block_length", "Bootstrap block length in samples (168 = one week of hourly "
                                               "forecasts; at least 10 blocks are needed):",
                              lambda t: checks.parse_int(t, "block length", 1), default="168")
        quick = p.confirm("lquick_evaluation", "Quick evaluation (metrics of the model only, no plots or "
                                               "per-sample files)?", default=False)
        results_dir = ctx.base_dir / "Results" / experiment / model / run
        return StepResult(f"visualize_postprocess_{DATASET}_{run}.sh",
                          dict(checkpoint=run_dir if checkpoint == AUTO_CHECKPOINT else run_dir / checkpoint,
                               results_dir=results_dir, mode=mode, batch_size=batch_size,
                               num_stochastic_samples=samples, evaluation_metrics=metrics,
                               climatology_file=climatology or "", lquick_evaluation=quick,
                               block_length=block_length),
                          derived={"results_dir": str(results_dir)})


# --------------------------------------------------------------------------------------------------- meta
_COLORS = ("r", "b", "g", "m", "c", "y", "k")
_MARKERS = ("X", "P", "o", "s", "D", "^", "v")


class MetaPostprocess(Step):
    name = "meta_postprocess"
    title = "meta-postprocessing: compare the metrics of several postprocessed runs (meta_postprocess/<exp_id>)"
    template = "meta_postprocess_era5.sh.j2"

    def ask(self, p, ctx):
        results_root = ctx.base_dir / "Results"
        runs = {"/".join(path.parts[-4:-1]): path.parent
                for path in sorted(results_root.glob("*/*/*/evaluation_metrics.nc"))}
        if ctx.chain:
            for answers in sorted(ctx.runscript_dir.glob(f"visualize_postprocess_{DATASET}_*.sh.answers.yaml")):
                planned = ctx.planned(answers.name[: -len(".answers.yaml")]).get("results_dir")
                if planned:
                    path = Path(planned)
                    runs.setdefault("/".join(path.parts[-3:]), path)
        if not runs:
            raise UserError(f"no postprocessed runs (evaluation_metrics.nc) under {results_root}; run the "
                            f"postprocessing step first")
        chosen = p.checkbox("runs", "Runs to compare (<EXPNAME>/<model>/<exp_id>):", sorted(runs))
        metric = p.select("metric", "Metric to compare:", list(checks.known_metrics()), default="mse")
        typed = p.text("exp_id", "Id of this comparison (extended to <YYYYmmddTHHMMSS>_<USER>_<id>):",
                       _exp_id_parser(ctx))
        skill = p.confirm("enable_skill_scores", "Plot skill scores against persistence?", default=True)
        persistence = p.confirm("enable_persit_plot", "Also plot the persistence curves?", default=False)
        exp_id = ctx.exp_id(typed)
        labels = [f"{run.split('/')[1]}_{run.split('/')[2]}" for run in chosen]
        config = {"results": {label: str(runs[run]) for label, run in zip(labels, chosen)},
                  "markers": [_MARKERS[i % len(_MARKERS)] for i in range(len(chosen))],
                  "colors": [_COLORS[i % len(_COLORS)] for i in range(len(chosen))]}
        runscript = f"meta_postprocess_{DATASET}_{exp_id}.sh"
        config_file = ctx.runscript_dir / f"meta_postprocess_{DATASET}_{exp_id}_config.json"
        return StepResult(runscript,
                          dict(root_dir=ctx.base_dir, analysis_config=config_file, metric=metric, exp_id=exp_id,
                               result_dirs=[runs[run] for run in chosen], enable_skill_scores=skill,
                               enable_persit_plot=persistence),
                          json_files={config_file: config})


STEPS: dict[str, Step] = {step.name: step for step in
                          (Extract(), Preprocess1(), Preprocess2(), Train(), Postprocess(), MetaPostprocess())}

