"""Which figures an ERA5 postprocessing run draws, with their labels and file names:

* ``evaluation_<metric>.png``: every scalar metric against lead time, and ``rank_histogram_<var>_<model>.png``
  for an ensemble (:func:`plot_scores`, drawn by the main process);
* ``forecast_<var>_<YYYYMMDDTHH00>_<metric>_<p>percentile.png``: 11 example forecasts, the samples at the 0, 10,
  ..., 100 % percentiles of the model's lead-averaged first scalar metric (:func:`example_plots`);
* ``cond_quantile_<var>_<model>_fh<lead>_calibration_refinement.png`` and ``..._likelihood-base_rate.png``:
  conditional quantiles per lead hour (:func:`conditional_quantile_plots`).

The last two are tasks of the helper process (:func:`helper_figures`, see :mod:`.helper`), whose figures are laid
out before any forecast exists (:func:`layout_sample`, :func:`quantile_labels`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from . import plots
from .era5_job import Era5Job
from .evaluation import ScoreAccumulator
from .helper import example_task, quantiles_task
from .metrics import RankHistogram, SpreadSkill, calibrated_spread_skill, is_scalar
from .results_io import sample_dataset, variable_attributes


def example_sample_positions(per_sample_score: np.ndarray, percentiles=range(0, 101, 10)) -> dict[int, int]:
    """Percentile → index of the sample whose lead-averaged score is nearest to that percentile (NaNs ignored)."""
    finite = np.flatnonzero(np.isfinite(per_sample_score))
    if not len(finite):
        return {}
    order = finite[np.argsort(per_sample_score[finite], kind="stable")]
    return {int(p): int(order[int(round(p / 100 * (len(order) - 1)))]) for p in percentiles}


def example_plots(raw: xr.Dataset, metric: str, variable: str, model_name: str, sample_files,
                  results_dir: Path) -> list[tuple[Path, str, str, Path]]:
    """(sample file, variable, model, PNG path) of the 11 example forecasts: the samples at the 0, 10, ..., 100 %
    percentiles of the model's lead-averaged ``metric`` in ``raw`` (sorted by init time); ``sample_files``: (init
    time, path) of every per-sample file."""
    per_sample = raw[f"{variable}_{model_name}_{metric}"].mean("fcst_hour").values
    by_time = dict(sample_files)
    init_times = raw["init_time"].values
    examples = []
    for percentile, position in example_sample_positions(per_sample).items():
        init = init_times[position]
        stamp = str(np.datetime64(init, "h")).replace("-", "") + "00"  # YYYYMMDDTHH00
        examples.append((by_time[np.datetime64(init, "h")], variable, model_name,
                         results_dir / f"forecast_{variable}_{stamp}_{metric}_{percentile}percentile.png"))
    return examples


def quantile_labels(job: Era5Job) -> tuple[str, str]:
    """Axis labels of the conditional-quantile plots: the model's forecast, the truth (name and units)."""
    long_name, units = variable_attributes(job.variable)["long_name"], variable_attributes(job.variable)["units"]
    return f"{long_name} from {job.run.model_name} [{units}]", f"{long_name} from ERA5 [{units}]"


def conditional_quantile_plots(scores: ScoreAccumulator,
                               job: Era5Job) -> list[tuple[xr.Dataset, str, str, Path, str]]:
    """Calibration-refinement and likelihood-base rate plots per lead hour: (quantiles, condition label, target
    label, PNG path, title) each (see :func:`.helper.quantiles_task`)."""
    variable, model_name = job.variable, job.run.model_name
    model_label, truth_label = quantile_labels(job)
    figures = []
    for lead in scores.lead_hours:
        stem = job.results_dir / f"cond_quantile_{variable}_{model_name}_fh{lead}"
        figures.append((scores.calibration[lead].result(), model_label, truth_label,
                        stem.with_name(f"{stem.name}_calibration_refinement.png"),
                        f"Calibration-refinement, lead {lead} h"))
        figures.append((scores.likelihood[lead].result(), truth_label, model_label,
                        stem.with_name(f"{stem.name}_likelihood-base_rate.png"), f"Likelihood-base rate, lead {lead} h"))
    return figures


def helper_figures(job: Era5Job, scores: ScoreAccumulator, raw: xr.Dataset, sample_files) -> list[tuple]:
    """The figure tasks of the helper process: the example maps (:func:`example_plots`), then the conditional
    quantiles of every lead hour."""
    examples = example_plots(raw, next(filter(is_scalar, job.metric_names)), job.variable, job.run.model_name, sample_files,
                             job.results_dir)
    return ([example_task(*example) for example in examples]
            + [quantiles_task(*plot) for plot in conditional_quantile_plots(scores, job)])


def plot_scores(job: Era5Job, result: xr.Dataset) -> None:
    """``evaluation_<metric>.png``: each scalar metric of ``result`` (``evaluation_metrics.nc``) against lead time
    for the products that have it (the spread-type scores: the model alone, with the calibrated ensemble's
    spread-skill ratio as a reference line); for an ensemble ``rank_histogram_<var>_<model>.png``."""
    with plots.MetricVsLeadFigure() as figure:
        for metric in filter(is_scalar, job.metric_names):
            products = {product: product for product in job.products
                        if f"{job.variable}_{product}_{metric}_avg" in result}
            reference = (calibrated_spread_skill(job.members), f"calibrated ({job.members} members)") \
                if metric == SpreadSkill.name else None
            figure.save(result, job.variable, metric, products, job.results_dir / f"evaluation_{metric}.png",
                        reference)
    histogram = result.get(f"{job.variable}_{job.run.model_name}_{RankHistogram.name}_avg")
    if histogram is not None:
        plots.plot_rank_histograms(histogram, f"{job.variable}: rank of the truth among the {job.members} members "
                                              f"of {job.run.model_name}",
                                   job.results_dir / f"rank_histogram_{job.variable}_{job.run.model_name}.png")


def layout_sample(job: Era5Job) -> xr.Dataset:
    """A per-sample dataset of the job's grid, variables and lead times with NaN fields: what the example maps
    of the run will look like before any forecast exists."""
    context, forecast_frames = job.context_frames, job.forecast_frames
    frame = job.dataset.frame_shape
    nan = np.full((context + forecast_frames, *frame), np.nan, dtype=np.float32)
    return sample_dataset(job.dataset.variables, job.run.model_name, np.datetime64("2000-01-01T00", "h"),
                          nan[:context], nan[context:], nan[None, context:], nan[context:], job.dataset.lat,
                          job.dataset.lon, {})
