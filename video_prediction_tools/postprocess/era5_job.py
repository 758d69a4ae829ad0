"""The job of an ERA5 postprocessing run: every option, file and input checked and opened before anything is
written (:func:`open_job`, without TensorFlow), then the trained model (:func:`load_model`).

Checked: the options, the metric names and conventions, the checkpoint (a run directory → best checkpoint, else the
newest; a missing or incomplete checkpoint is a UserError: random weights are never evaluated), the data split (the
run's, months or hour ranges: the mode's windows are the reader's, each inside one of the mode's ranges) and
channel, the climatology (ACC-type metrics need ``climatology_file`` covering every month and hour of the forecasts'
valid times: by default they are computed only when a climatology file is given; requested explicitly without one,
or with one that lacks some month/hour, they are a UserError before any forecast), the bootstrap blocks and the
coastlines of the plots. A refused run leaves no results directory, log or file.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import xarray as xr

from ..data_extraction.climatology import check_climatology_covers, load_climatology, require_climatology_file
from ..data_preprocess.records import yyyymmddhh_to_datetime
from ..utils.errors import UserError
from ..utils.log import setup_logging
from .baselines import BASELINES
from .bootstrap import number_of_blocks
from .coastlines import find_coastline_file
from .metrics import ACC, GRIDDED, METRICS, Conventions, check_conventions, check_metric_names, needs_climatology
from .options import PostprocessOptions, check_options, open_evaluated_split
from .results_io import made_from

#: the options that change the forecasts and sample files (recorded with them: a change redoes them)
FORECAST_OPTIONS = ("mode", "seed", "batch_size", "num_stochastic_samples", "sample_compression")

if TYPE_CHECKING:  # the model's module imports TensorFlow, which open_job never needs
    from ..datasets.registry import Reader
    from ..models.base import VideoPredictionModel
    from ..training.checkpoints import TrainedRun


@dataclass
class Era5Job:
    """A validated ERA5 postprocessing job: everything checked and opened, nothing written yet; its model is loaded
    last (:func:`load_model`), the rest needs no TensorFlow."""

    options: PostprocessOptions
    results_dir: Path
    metric_names: list[str]
    run: TrainedRun
    dataset: Reader
    #: the evaluated channel's name (``--channel``)
    variable: str
    #: ``(month, hour, lat, lon)`` on the domain, for ACC-type metrics; None without them
    climatology: xr.DataArray | None
    #: the trained model (:func:`load_model`), None before
    model: VideoPredictionModel | None = None
    #: what the outputs are made from (:func:`.results_io.made_from`)
    inputs: dict = field(default_factory=dict)
    #: ``(step reached, steps planned)`` of a training run stopped before its end, else None
    unfinished: tuple[int, int] | None = None
    #: forecast members per window (1 for a deterministic model)
    members: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def quick(self) -> bool:
        return self.options.lquick_evaluation

    @property
    def products(self) -> list[str]:
        """The scored products: the model, then every baseline (none with ``--lquick_evaluation``)."""
        return [self.run.model_name] if self.quick else [self.run.model_name, *BASELINES]

    @property
    def context_frames(self) -> int:
        return self.run.context_frames

    @property
    def forecast_frames(self) -> int:
        return self.run.forecast_frames

    @property
    def lead_hours(self) -> np.ndarray:
        return np.arange(1, self.forecast_frames + 1)

    @property
    def provenance(self) -> dict:
        """The attributes of every netCDF output: what it was made from (and how far the run was trained)."""
        run = self.run
        return {"model": run.model_name, "variable": self.variable, "checkpoint": str(run.checkpoint_dir),
                "checkpoint_step": run.step, "mode": self.options.mode, "input_dir": str(run.input_dir),
                "weights_sha256": self.inputs["weights_sha256"], "data_fingerprint": self.inputs["data_fingerprint"],
                **self.climatology_attributes, **unfinished_attributes(self.unfinished)}

    @property
    def climatology_attributes(self) -> dict:
        """Which climatology the ACC-type scores used and how it met the data's grid (none without one)."""
        if self.climatology is None:
            return {}
        return {"climatology_file": str(self.options.climatology_file),
                "climatology_regridding": self.options.climatology_regridding}


def unfinished_attributes(unfinished: tuple[int, int] | None) -> dict:
    """The output attributes of a run trained ``(step reached, steps planned)`` (none for a finished run)."""
    if unfinished is None:
        return {}
    return {"training_unfinished": f"stopped at step {unfinished[0]} of {unfinished[1]}",
            "training_step_reached": unfinished[0], "training_steps_planned": unfinished[1]}


def unfinished_warning(run: TrainedRun, unfinished: tuple[int, int] | None) -> str | None:
    """The log warning for a training run stopped before its end (None for a finished run)."""
    if unfinished is None:
        return None
    return (f"training run {run.run_dir} is unfinished: it stopped at step {unfinished[0]} of {unfinished[1]} "
            f"planned; evaluating {run.checkpoint_dir.name} (step {run.step}): its scores are not those of the "
            f"trained model")


def resolve_metric_names(requested: Sequence[str] | None, climatology_file: str | None,
                         members: int = 1) -> list[str]:
    """The metrics to compute: ``requested`` validated, or by default every ERA5 metric, those that need a
    climatology (ACC) only when ``climatology_file`` is given, those that need an ensemble (spread, spread-skill,
    rank histogram) only for ``members`` >= 2. An explicitly requested ACC-type metric without an existing
    ``climatology_file``, or ensemble metric without enough members, is a UserError (never skipped silently)."""
    if requested is None:
        requested = [name for name in METRICS if (climatology_file or not needs_climatology(name))
                     and METRICS[name].min_members <= members]
    names = check_metric_names(list(requested))
    too_few = ", ".join(name for name in names if METRICS[name].min_members > members)
    if too_few:
        raise UserError(f"metric(s) {too_few} need an ensemble: a stochastic model with --num_stochastic_samples "
                        f">= 2 (this run forecasts {members} member(s)); drop {too_few} from --evaluation_metrics")
    wanted = ", ".join(name for name in names if needs_climatology(name))
    if wanted and not climatology_file:
        raise UserError(f"metric(s) {wanted} need a climatology: give --climatology_file or drop {wanted} from "
                        f"--evaluation_metrics")
    if wanted:
        require_climatology_file(climatology_file, f"needed by metric(s) {wanted}: give an existing file or drop "
                                                   f"{wanted} from --evaluation_metrics")
    return names


def forecast_valid_times(dataset: Reader, context_frames: int, forecast_frames: int) -> np.ndarray:
    """Every valid time (datetime64[h], sorted, unique) of the forecasts of ``dataset``'s windows: the rows
    ``context_frames .. context_frames + forecast_frames - 1`` of each gap-free window."""
    rows = np.arange(context_frames, context_frames + forecast_frames)
    parts = [times[starts[:, None] + rows].ravel() for times, starts in zip(dataset.valid_times, dataset.window_starts)]
    return yyyymmddhh_to_datetime(np.unique(np.concatenate(parts)))


def _open_climatology(options: PostprocessOptions, conventions: Conventions, run: TrainedRun, dataset: Reader,
                      variable: str) -> xr.DataArray:
    """The climatology of ``variable`` on the domain, checked to cover the valid times of every forecast (shifted
    as the metric ``conventions`` look the climatology up)."""
    climatology = load_climatology(options.climatology_file, variable, dataset.lat, dataset.lon,
                                   options.climatology_regridding)
    hour_offset = np.timedelta64(conventions.parameters_for(ACC).get("climatology_hour_offset", 0), "h")
    check_climatology_covers(climatology, forecast_valid_times(dataset, run.context_frames, run.forecast_frames)
                             + hour_offset, options.climatology_file)
    return climatology


def _members_at_most(model_name: str, requested: int) -> int:
    """Members per window of a model of its class (one for a deterministic class; a stochastic class's instance
    can still be deterministic: :func:`load_model` knows)."""
    from ..models.registry import model_traits

    return requested if model_traits(model_name).stochastic else 1


def open_job(options: PostprocessOptions) -> Era5Job:
    """Validate everything but the model's weights (see the module docstring) without writing anything and without
    TensorFlow."""
    from ..training.checkpoints import read_trained_run, training_progress

    setup_logging()  # console only until the results directory exists
    check_options(options)
    conventions = check_conventions(options.metric_conventions, options.data_range)
    # names first (as many members as asked), then what the model's class allows, last the model (load_model)
    resolve_metric_names(options.evaluation_metrics, options.climatology_file, options.num_stochastic_samples)
    run = read_trained_run(options.checkpoint, options.input_dir)
    metric_names = resolve_metric_names(options.evaluation_metrics, options.climatology_file,
                                        _members_at_most(run.model_name, options.num_stochastic_samples))
    dataset = open_evaluated_split(run, options, GRIDDED, "gridded fields")
    if not 0 <= options.channel < len(dataset.variables):
        raise UserError(f"--channel {options.channel}: the data has channels 0..{len(dataset.variables) - 1} "
                        f"({', '.join(dataset.variables)})")
    variable = dataset.variables[options.channel]
    climatology = None
    if any(needs_climatology(name) for name in metric_names):
        climatology = _open_climatology(options, conventions, run, dataset, variable)
    number_of_blocks(dataset.num_windows, options.block_length)  # fail now, not after hours of forecasting
    if not options.lquick_evaluation:
        find_coastline_file(0.0)  # likewise a bad $AMBS_COASTLINES
    results_dir = Path(options.results_dir)
    inputs = made_from(results_dir, run, dataset, {name: getattr(options, name) for name in FORECAST_OPTIONS})
    return Era5Job(options, results_dir, metric_names, run, dataset, variable, climatology, inputs=inputs,
                   unfinished=training_progress(run.run_dir))


def load_model(job: Era5Job) -> Era5Job:
    """``job`` with its trained model (weights that do not fit are a UserError), the number of forecast
    members (one for a deterministic model) and the metrics for that many members (:func:`resolve_metric_names`)."""
    from ..training.checkpoints import build_trained_model

    model = build_trained_model(job.run)
    members, warnings = job.options.num_stochastic_samples, []
    if members > 1 and not model.stochastic:
        warnings.append(f"model {job.run.model_name} is deterministic: --num_stochastic_samples {members} "
                        "reduced to 1")
        members = 1
    metric_names = resolve_metric_names(job.options.evaluation_metrics, job.options.climatology_file, members)
    return replace(job, model=model, members=members, metric_names=metric_names, warnings=warnings)
