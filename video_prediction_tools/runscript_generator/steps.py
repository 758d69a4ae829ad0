"""The ERA5 workflow steps of the runscript generator: for each step its questions, checks and template variables.

Each step class asks its questions through a prompter (:class:`.prompter.Prompter`), checks every answer against
what earlier steps produced (:mod:`.checks`), and returns a :class:`~.base.StepResult`: the runscript name,
template variables, JSON files to write and values saved for later steps. Defaults come from the data too (the
months found, a domain box that fits the grid, a data split of the months with TFRecords, a block length the
evaluated split supports), so that accepting them leads to runscripts that run.

Steps, in workflow order, with the original generator's names: ``extract``, ``preprocess1``, ``preprocess2``,
``train`` (:class:`~.train_step.Train` with :class:`Era5TrainingInputs`), ``postprocess``, ``meta_postprocess``.

Example::

    from video_prediction_tools.runscript_generator.steps import STEPS, next_step
    next_step(base_dir)                      # 'preprocess1' once ExtractedData holds files
    result = STEPS["extract"].ask(prompter, ctx)
"""
from __future__ import annotations

import json
from pathlib import Path

from ..postprocess.file_names import EVALUATION_FILE
from ..utils.errors import UserError
from ..utils.settings import templates_dir
from . import checks
from .base import AUTO_CHECKPOINT, Step, StepResult, choose_trained_run, exp_id_parser, subdirs, trained_runs
from .train_step import Train

DATASET = "era5"


#: the GMD domain: its SW corner (degrees) and size (rows, columns), the default where it fits the data
GMD_SW_CORNER = (38.4, 0.0)
GMD_NYX = (56, 92)


def _grid_extent(grid) -> str:
    """``lat 43.5 to 48 (16 points), lon 0 to 6.9 (24 points)``: what a user needs to choose a box."""
    lat, lon = grid
    return (f"lat {min(lat):g} to {max(lat):g} ({len(lat)} points), "
            f"lon {lon[0]:g} to {lon[-1]:g} ({len(lon)} points, west to east)")


def default_box(grid, corner: tuple[float, float] | None = None):
    """A SW corner and ``(ny, nx)`` that fit the grid: the GMD box where it fits, else the grid's SW point (or the
    given ``corner``) with as many rows and columns as step 1's own rule lets fit, at most the GMD size."""
    import numpy as np

    lat, lon = np.asarray(grid[0], float), np.asarray(grid[1], float)
    if corner is None:
        try:
            checks.find_domain(lat, lon, GMD_SW_CORNER, GMD_NYX)
            return GMD_SW_CORNER, GMD_NYX
        except UserError:
            corner = (float(lat.min()), _western_edge(lon))

    def fits(ny: int, nx: int) -> bool:
        try:
            checks.find_domain(lat, lon, corner, (ny, nx))
            return True
        except UserError:
            return False

    return corner, (_largest(lambda ny: fits(ny, 2), GMD_NYX[0]), _largest(lambda nx: fits(2, nx), GMD_NYX[1]))


def _western_edge(lon) -> float:
    """The westernmost longitude of a grid [degrees east, 0..360): the one east of the widest gap between
    neighbouring longitudes round the globe (a grid crossing the 0 meridian, e.g. 10W-2E, starts at 350), the
    smallest of an evenly spaced global grid."""
    import numpy as np

    ordered = np.sort(np.mod(np.asarray(lon, float), 360.0))
    gaps = np.diff(np.concatenate([ordered, ordered[:1] + 360.0]))
    if np.ptp(gaps) < 1e-6:
        return float(ordered[0])
    return float(ordered[(int(np.argmax(gaps)) + 1) % len(ordered)])


def _largest(fits, most: int) -> int:
    """The largest size in 2..``most`` that ``fits`` (2 if none does): a box that fits still fits when smaller,
    so a bisection finds it."""
    low, high = 2, most
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


# --------------------------------------------------------------------------------------------------- extract
class Extract(Step):
    name = "extract"
    title = "data extraction: ERA5 GRIB files → netCDF (ExtractedData)"
    template = "data_extraction_era5.sh.j2"
    mpi = True

    def ask(self, p, ctx):
        target_dir = ctx.base_dir / "ExtractedData"
        source_dir = p.text("source_dir", "Directory of the ERA5 GRIB files or CDS netCDF files (any layout):",
                            lambda text: checks.era5_archive(text, target_dir),
                            guidance="Files of any period (an hour, a month, a year) with any names anywhere under "
                                     "it, GRIB or netCDF as the Climate Data Store delivers them, or the original's "
                                     "archive <YYYY>/<MM>/<YYYYMMDDHH>_sf.grb (e.g. /p/fastdata/slmet/slmet111/"
                                     "met_data/ecmwf/era5/grib, or the output of python -m "
                                     "video_prediction_tools.main_scripts.main_synthetic_archive).")
        held = checks.archive_survey(source_dir, target_dir).months()
        found = sorted({year for year, _ in held})
        years = p.text("years", f"Years to extract (found: {checks.format_numbers(found)}):",
                       lambda text: checks.require_years(checks.parse_years(text), found, source_dir, "ERA5 data"),
                       default=checks.format_numbers(found) or None,
                       guidance="Comma-separated years or ranges, e.g. 2017,2018 or 2007-2019, among the years "
                                "found in the ERA5 directory.")
        months_found = [month for month in range(1, 13) if all((year, month) in held for year in years)]
        months = p.text("months", f"Months to extract (found in every chosen year: "
                                  f"{checks.format_numbers(months_found) or 'none'}):",
                        lambda text: self._months(text, held, source_dir, years),
                        default=checks.format_numbers(months_found) or None,
                        guidance="Comma-separated months or ranges, e.g. 1-12 or 1,2,3. Every chosen year must hold "
                                 "data for every chosen month.")
        template = templates_dir() / "data_extraction" / "era5_varmapping_template.json"
        runscript = "data_extraction_era5.sh"
        varmap_file = ctx.runscript_dir / "data_extraction_era5_varmapping.json"
        mapping = p.edit_json("varmapping", "variable mapping (which GRIB fields to extract)", template.read_text(),
                              lambda content, path: checks.varmapping(content, path, source_dir, target_dir),
                              template.name)
        # the grid of the extracted data, for a chained preprocess1 (which names its experiment after the grid
        # point nearest the corner it is given)
        grid = checks.archive_grid(checks.archive_survey(source_dir, target_dir), years[0], months[0])
        return StepResult(runscript, dict(source_dir=source_dir, target_dir=target_dir,
                                          varmap_file=varmap_file, years=years, months=months),
                          json_files={varmap_file: mapping},
                          derived={"years": years, "months": months, "grib_grid": grid},
                          months_of_work=len(years) * len(months))

    @staticmethod
    def _months(text, held, source_dir, years):
        months = checks.parse_months(text)
        missing = [f"{year}-{month:02d}" for year in years for month in months if (year, month) not in held]
        if missing:
            raise UserError(f"{source_dir} has no ERA5 data for {', '.join(missing)}")
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
        months_found = checks.months_with_data(source_dir, years, has_nc) if not ctx.chain else \
            planned.get("months", [])
        months = p.text("months", f"Months to preprocess (found in every chosen year: "
                                  f"{checks.format_numbers(months_found) or 'none'}):",
                        lambda text: self._months(text, source_dir, years, ctx),
                        default=checks.format_numbers(months_found) or None,
                        guidance="Comma-separated months or ranges, e.g. 1-3. Every chosen year must have "
                                 "extracted files for every chosen month.")
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
        extent = _grid_extent(grid)
        corner_default, _ = default_box(grid)
        sw_corner = p.text("sw_corner", f"SW corner of the domain as 'lat, lon' in degrees ({extent}):",
                           lambda text: self._sw_corner(text, grid), default=f"{corner_default[0]:g}, "
                                                                             f"{corner_default[1]:g}",
                           guidance="Latitude in [-90, 90] (negative = south), longitude in degrees east "
                                    "([0, 360) or negative for west); the nearest grid point is used.\n"
                                    f"The extracted grid: {extent}.\nThe GMD domain starts at 38.4, 0.0.")
        _, nyx_default = default_box(grid, sw_corner)
        nyx = p.text("nyx", f"Grid points of the domain as 'ny, nx' (rows north of, columns east of the corner; "
                            f"at most {nyx_default[0]}, {nyx_default[1]} from this corner up to the GMD size):",
                     lambda text: self._nyx(text, grid, sw_corner), default=f"{nyx_default[0]}, {nyx_default[1]}",
                     guidance="Both at least 2; the box must fit into the grid of the extracted data.\n"
                              f"The extracted grid: {extent}.\nThe GMD domain is 56, 92 at 0.3°.")
        # step 1's own rule (nearest grid point) names the experiment, also in chain mode
        domain = checks.find_domain(*grid, sw_corner, nyx)
        derived = {"years": years, "months": months, "expname": expname(years, months, domain, variables)}
        return StepResult("preprocess_data_era5_step1.sh",
                          dict(source_dir=source_dir, destination_dir=ctx.base_dir / "PreprocessedData",
                               years=years, months=months, variables=variables, sw_corner=list(sw_corner),
                               nyx=list(nyx), expname=derived["expname"]),
                          derived=derived, months_of_work=len(years) * len(months))

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
        source = checks.existing_dir(text, "extracted-data directory")
        if not checks.years_with_data(source, lambda d: bool(checks.netcdf_files(d))):
            grib = checks.years_with_data(source, lambda d: bool(checks.grib_files(d)))
            raise UserError(f"{source} holds no extracted netCDF files (<YYYY>/<MM>/*.nc)"
                            + ("; it is a GRIB archive, the source of the extraction step: give the extraction's "
                               f"output, {ctx.base_dir / 'ExtractedData'}, once extracted" if grib else ""))
        return source

    @staticmethod
    def _years(text, source_dir, found, ctx):
        years = checks.parse_years(text)
        return years if ctx.chain else checks.require_years(years, found, source_dir, "extracted data")

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
    choices = [name for name in subdirs(root) if usable(root / name)]
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
        experiment_dir = ctx.base_dir / "PreprocessedData" / experiment
        longest = checks.longest_month_hours(experiment_dir)
        sequence_length = p.text("sequence_length", "Window length in hours to check the data for (context + "
                                                    "forecast frames"
                                 + (f"; the longest month step 1 wrote holds {longest} hours" if longest else "")
                                 + "):",
                                 lambda text: checks.parse_int(text, "sequence length", 2, longest or 744),
                                 default=str(min(24, longest or 24)),
                                 guidance="GMD: 24 (12 context + 12 forecast hours). Step 2 only checks that "
                                          "windows this long fit into the data; the training window length is "
                                          "the train step's hyper-parameter sequence_length.")
        return StepResult("preprocess_data_era5_step2.sh",
                          dict(source_dir=experiment_dir, sequence_length=sequence_length),
                          derived={"expname": experiment},
                          months_of_work=len(list(experiment_dir.glob("[0-9][0-9][0-9][0-9]/X_[0-9][0-9].nc")))
                          or None)


# --------------------------------------------------------------------------------------------------- train
class Era5TrainingInputs:
    """The train step on ERA5 (:class:`~.train_step.TrainingInputs`): experiments with TFRecords, every model of
    the registry, a data split of years and months or of hour ranges, checked against the hours with TFRecords by
    the dataset's own ``load_split``."""

    dataset = DATASET
    title = "training: one model on one preprocessed experiment (Models/<EXPNAME>/<model>/<exp_id>)"
    example_id = "gmd_reference"

    def choose_experiment(self, p, ctx):
        return _experiment(p, ctx, "Experiment whose TFRecords to train on:",
                           lambda d: bool(checks.tfrecord_months(d / "tfrecords")) or ctx.chain,
                           "TFRecords from step 2")

    def models(self):
        from ..models.registry import known_models

        return known_models()

    def exp_id_default(self, model):
        return model

    def split(self, p, ctx, experiment, template):
        from ..datasets.registry import get_dataset_class

        available = self._available_hours(ctx, experiment)
        load_split = get_dataset_class(DATASET).load_split
        return p.edit_json("datasplit", "data split (train/val/test: years and months, or hour ranges "
                                        "[[\"YYYY-MM-DDTHH\", \"YYYY-MM-DDTHH\"], ...])",
                           proposed_split(template, available),
                           lambda content, path: load_split(content, available=available), template.name)

    def training_windows(self, ctx, experiment, split):
        from ..datasets.registry import get_dataset_class

        tfrecords = ctx.base_dir / "PreprocessedData" / experiment / "tfrecords"
        ranges = get_dataset_class(DATASET).load_split(split).get("train", [])
        if checks.evaluated_windows(tfrecords, ranges, 1) is None:
            return None
        return lambda length: checks.evaluated_windows(tfrecords, ranges, length)

    @staticmethod
    def _available_hours(ctx, experiment):
        """The hours with TFRecords of ``experiment`` (``datetime64[h]``); in chain mode before step 2 ran, every
        hour of the months the step 1 runscript will write; None when unknown."""
        from ..data_preprocess.records import DATASET_INFO
        from ..datasets.datasplit import hours_of_months
        from ..datasets.era5 import available_hours
        from ..utils.io import read_json

        tfrecords = ctx.base_dir / "PreprocessedData" / experiment / "tfrecords"
        if checks.tfrecord_months(tfrecords):
            # only the months' blocks are needed of step 2's description
            return available_hours({"months": read_json(tfrecords / DATASET_INFO,
                                                        what="step-2 dataset description").get("months", {})})
        if not ctx.chain:
            return hours_of_months(())
        planned = ctx.planned("preprocess_data_era5_step1.sh")
        if planned.get("expname") == experiment:
            return hours_of_months((y, m) for y in planned["years"] for m in planned["months"])
        return None


def proposed_split(template: Path, available) -> str:
    """The data split offered for the hours with TFRecords ``available`` (``datetime64[h]``; JSON text): the
    template where it fits them (or none are known yet); else, over two months or more, the first tenth of the
    months (at least one) for validation, the last tenth for testing and the rest for training (two months: train
    and val); within one month, a split by whole days in time order (about 70 / 15 / 15 %,
    :func:`..datasets.datasplit.propose_date_split`)."""
    from ..datasets.datasplit import propose_date_split
    from ..datasets.registry import get_dataset_class

    text = template.read_text()
    try:
        get_dataset_class(DATASET).load_split(checks.parse_json_text(text, "data split template"), available=available)
        return text
    except UserError:
        pass
    months = sorted({(day.year, day.month) for day in available.astype("datetime64[M]").astype(object)})
    if len(months) == 1:
        try:
            return json.dumps(propose_date_split(available), indent=2) + "\n"
        except UserError:
            pass
    share = max(1, len(months) // 10)
    if len(months) >= 3:
        parts = {"train": months[share:-share], "val": months[:share], "test": months[-share:]}
    else:
        parts = {"train": months[:1], "val": months[1:]}
    split: dict[str, dict[str, list[int]]] = {}
    for mode, chosen in parts.items():
        for year, month in chosen:
            split.setdefault(mode, {}).setdefault(str(year), []).append(month)
    return json.dumps(split, indent=2) + "\n"


# --------------------------------------------------------------------------------------------------- postprocess
class Postprocess(Step):
    name = "postprocess"
    title = "postprocessing: forecasts, metrics and plots of a trained model (Results/<EXPNAME>/<model>/<exp_id>)"
    template = "visualize_postprocess_era5.sh.j2"

    def ask(self, p, ctx):
        trained = trained_runs(ctx, DATASET)
        if not trained:
            raise UserError(f"no trained models in {ctx.base_dir / 'Models'}; generate and run a training runscript "
                            f"first")
        chosen = choose_trained_run(p, ctx, trained, "Experiment the model was trained on:",
                                    f"Checkpoint to evaluate ({AUTO_CHECKPOINT}: the best, or newest, checkpoint when "
                                    f"the runscript runs):")
        split = self._split(chosen.run_dir)
        modes = [mode for mode in ("test", "val") if split is None or split.get(mode)]
        if not modes:
            raise UserError(f"the data split of run {chosen.run_dir} has neither test nor val months to evaluate")
        mode = p.select("mode", "Data split to evaluate (those the run's data split has):", modes, default=modes[0])
        batch_size = p.text("batch_size", "Batch size:", lambda t: checks.parse_int(t, "batch size", 1), default="4")
        samples = p.text("num_stochastic_samples", "Stochastic samples per forecast (1 for deterministic models):",
                         lambda t: checks.parse_int(t, "number of stochastic samples", 1), default="1")
        if samples > 1:
            self._warn_if_deterministic(p, chosen.trained_model(), samples)
        metrics, climatology = self._metrics(p, self._members(chosen.trained_model(), samples))
        windows = self._windows(ctx, chosen.experiment, chosen.run_dir, split, mode)
        block_length = self._ask_block_length(p, windows, mode)
        quick = p.confirm("lquick_evaluation", "Quick evaluation (metrics of the model only, no plots or "
                                               "per-sample files)?", default=False)
        return StepResult(f"visualize_postprocess_{DATASET}_{chosen.run}.sh",
                          dict(checkpoint=chosen.checkpoint_path, results_dir=chosen.results_dir, mode=mode,
                               batch_size=batch_size, num_stochastic_samples=samples, evaluation_metrics=metrics,
                               climatology_file=climatology or "", lquick_evaluation=quick,
                               block_length=block_length),
                          derived={"results_dir": str(chosen.results_dir)})

    @staticmethod
    def _warn_if_deterministic(p, model: str, samples: int) -> None:
        from ..models.registry import known_models, model_traits

        if model in known_models() and not model_traits(model).stochastic:
            p.info(f"Warning: {model} is deterministic; its {samples} samples per forecast will all be the same.")

    @staticmethod
    def _members(model: str, samples: int) -> int:
        """Forecast members per window: ``samples`` for a stochastic model, one for a deterministic one."""
        from ..models.registry import known_models, model_traits

        return samples if model not in known_models() or model_traits(model).stochastic else 1

    @staticmethod
    def _metrics(p, members: int) -> tuple[list[str], Path | None]:
        """The evaluation metrics and the climatology file (ACC is left out without one, the ensemble metrics
        with fewer than their ``min_members`` members)."""
        from ..postprocess.metrics import CLIMATOLOGY_METRICS, METRICS

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
        ensemble_only = [name for name in metrics if METRICS[name].min_members > members]
        if ensemble_only:
            metrics = [name for name in metrics if name not in ensemble_only]
            p.info(f"Note: {', '.join(ensemble_only)} need an ensemble (a stochastic model with 2 or more samples "
                   f"per forecast), so they are left out (postprocessing refuses them otherwise).")
        return metrics, climatology

    def _ask_block_length(self, p, windows: int | None, mode: str) -> int:
        from ..postprocess.bootstrap import BLOCK_LENGTH, MIN_BLOCKS

        block_default = BLOCK_LENGTH if windows is None else max(1, min(BLOCK_LENGTH, windows // MIN_BLOCKS))
        return p.text("block_length", f"Bootstrap block length in forecasts ({BLOCK_LENGTH} = one week of hourly "
                                      f"forecasts; at least {MIN_BLOCKS} blocks are needed"
                                      + (f"; the {mode} split holds {windows} forecasts" if windows is not None
                                         else "") + "):",
                      lambda t: self._block_length(t, windows, mode), default=str(block_default))

    @staticmethod
    def _split(run_dir) -> dict | None:
        """The run's data split (None before its training ran, or if unreadable: then nothing is assumed)."""
        try:
            split = json.loads((run_dir / "data_split.json").read_text())
        except (OSError, ValueError):
            return None
        return split if isinstance(split, dict) else None

    @staticmethod
    def _windows(ctx, experiment, run_dir, split, mode) -> int | None:
        """Forecasts of the evaluated split: its windows in the step-2 files (None while the run's data split,
        hyper-parameters or the step-2 summary are not there, e.g. before its training ran)."""
        from ..datasets.registry import get_dataset_class

        try:
            length = json.loads((run_dir / "model_hparams.json").read_text())["sequence_length"]
            ranges = get_dataset_class(DATASET).load_split(split).get(mode, [])
        except (OSError, ValueError, KeyError, TypeError, UserError):
            return None
        return checks.evaluated_windows(ctx.base_dir / "PreprocessedData" / experiment / "tfrecords", ranges,
                                        int(length))

    @staticmethod
    def _block_length(text, windows, mode):
        from ..postprocess.bootstrap import MIN_BLOCKS

        length = checks.parse_int(text, "block length", 1)
        if windows is not None and length * MIN_BLOCKS > windows:
            raise UserError(f"block length {length}: the {mode} split holds {windows} forecasts, so at most "
                            f"{max(windows // MIN_BLOCKS, 0)} (at least {MIN_BLOCKS} blocks are needed)")
        return length


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
                for path in sorted(results_root.glob(f"*/*/*/{EVALUATION_FILE}"))}
        if ctx.chain:
            for answers in sorted(ctx.runscript_dir.glob(f"visualize_postprocess_{DATASET}_*.sh.answers.yaml")):
                planned = ctx.planned(answers.name[: -len(".answers.yaml")]).get("results_dir")
                if planned:
                    path = Path(planned)
                    runs.setdefault("/".join(path.parts[-3:]), path)
        if not runs:
            raise UserError(f"no postprocessed runs ({EVALUATION_FILE}) under {results_root}; run the "
                            f"postprocessing step first")
        chosen = p.checkbox("runs", "Runs to compare (<EXPNAME>/<model>/<exp_id>; all are ticked):", sorted(runs),
                            default=sorted(runs))
        metrics, persistence_in_all = list(checks.known_metrics()), True
        for run in chosen:
            if (runs[run] / EVALUATION_FILE).is_file():  # chain mode: planned runs are not there yet
                present, has_persistence = checks.evaluated_metrics(runs[run])
                metrics = [name for name in metrics if present is None or name in present]
                persistence_in_all &= has_persistence
        if not metrics:
            raise UserError(f"the chosen runs have no metric in common ({', '.join(chosen)}); choose other runs")
        metric = p.select("metric", "Metric to compare (those every chosen run has):", metrics,
                          default="mse" if "mse" in metrics else metrics[0])
        typed = p.text("exp_id", "Id of this comparison (extended to <YYYYmmddTHHMMSS>_<USER>_<id>):",
                       exp_id_parser(ctx), default="comparison")
        skill = self._ask_skill_scores(p, persistence_in_all)
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
                          json_files={config_file: config}, derived={"exp_id": exp_id})


    @staticmethod
    def _ask_skill_scores(p, persistence_in_all: bool) -> bool:
        """Skill scores against persistence: offered only when every chosen run has persistence scores (the
        meta-postprocessing refuses them otherwise); a yes then is refused and the question asked again."""
        if persistence_in_all:
            return p.confirm("enable_skill_scores", "Plot skill scores against persistence?", default=True)
        refusal = ("skill scores need the persistence scores of every chosen run, and some runs were evaluated "
                   "without persistence (postprocess them again without --lquick_evaluation, or choose others)")
        while True:
            skill = p.confirm("enable_skill_scores", "Plot skill scores against persistence? (no: some runs were "
                                                     "evaluated without persistence)", default=False)
            if not skill:
                return False
            if not p.interactive:
                raise UserError(f"answers file: 'enable_skill_scores': {refusal}")
            p.info(f"Refused: {refusal}.", wrap=True)


STEPS: dict[str, Step] = {step.name: step for step in
                          (Extract(), Preprocess1(), Preprocess2(), Train(Era5TrainingInputs()), Postprocess(),
                           MetaPostprocess())}

#: what each step leaves in the base directory (a glob), to offer the first step not done yet
STEP_OUTPUTS = {"extract": "ExtractedData/*/*/*.nc", "preprocess1": "PreprocessedData/*/metadata.json",
                "preprocess2": "PreprocessedData/*/tfrecords/*.tfrecords",
                "train": "Models/*/*/*/checkpoint_*", "postprocess": f"Results/*/*/*/{EVALUATION_FILE}"}


def next_step(base_dir: Path) -> str:
    """The first workflow step whose outputs are not in ``base_dir`` yet (meta-postprocessing when all are)."""
    for name in STEPS:
        if name in STEP_OUTPUTS and next(base_dir.glob(STEP_OUTPUTS[name]), None) is None:
            return name
    return "meta_postprocess"

