"""Block bootstrap of per-sample metrics, averages, and skill scores against a reference forecast.

Metrics computed per initialisation time are autocorrelated (hourly inits), so uncertainty is estimated with a
block bootstrap: the time-sorted samples are cut into consecutive blocks of ``block_length`` samples (168 = one
week of hourly inits; a trailing remainder is dropped), and each of ``nboots`` replicates is the mean over
``nblocks`` blocks drawn with replacement. The draw uses ``numpy.random.default_rng(seed)`` (the global RNG is
never touched), and the SAME block draw is used for every variable of a dataset, so replicates of the model and
of persistence are paired and skill scores can be computed replicate by replicate.

Example::

    from video_prediction_tools.postprocess.bootstrap import summarize_metrics, skill_score
    evaluation = summarize_metrics(raw)      # raw: Dataset of <var>_<product>_<metric> [init_time, fcst_hour]
    # -> adds <name>_bootstrapped [iboot, fcst_hour] and <name>_avg [fcst_hour]
    skill = skill_score(evaluation["2t_convLSTM_mse_bootstrapped"],
                        evaluation["2t_persistence_mse_bootstrapped"], perfect_score=0.0)
"""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..utils.errors import UserError
from ..utils.io import write_text
from .baselines import BASELINES, skill_name

if TYPE_CHECKING:  # xarray is imported where used: the runscript generator reads the block-length rules
    import xarray as xr

BLOCK_LENGTH = 168
NBOOTS = 1000
SEED = 42
MIN_BLOCKS = 10


def number_of_blocks(nsamples: int, block_length: int = BLOCK_LENGTH) -> int:
    """Number of complete blocks; fewer than :data:`MIN_BLOCKS` → UserError saying what is needed."""
    if block_length < 1:
        raise UserError(f"bootstrap block length must be >= 1, got {block_length}")
    nblocks = nsamples // block_length
    if nblocks < MIN_BLOCKS:
        raise UserError(f"block bootstrap needs at least {MIN_BLOCKS} blocks of {block_length} samples "
                        f"({MIN_BLOCKS * block_length} samples), but only {nsamples} sample(s) are available; "
                        f"evaluate a longer period or pass a smaller --block_length")
    return nblocks


def block_draws(nblocks: int, nboots: int = NBOOTS, seed: int = SEED) -> np.ndarray:
    """Block indices ``[nboots, nblocks]`` drawn uniformly with replacement (each row sorted, as the original)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.integers(0, nblocks, size=(nboots, nblocks)), axis=1)


def block_bootstrap(metrics: xr.Dataset | xr.DataArray, block_length: int = BLOCK_LENGTH, nboots: int = NBOOTS,
                    seed: int = SEED, dim: str = "init_time") -> xr.Dataset | xr.DataArray:
    """Bootstrap replicates of the mean over ``dim``: ``[dim, ...]`` → ``[iboot, ...]`` for every variable
    having ``dim`` (others are dropped). NaN samples are skipped inside block means (nanmean)."""
    import xarray as xr

    metrics = metrics.sortby(dim)
    nsamples = metrics.sizes[dim]
    nblocks = number_of_blocks(nsamples, block_length)
    draws = block_draws(nblocks, nboots, seed)

    def replicate(array: xr.DataArray) -> xr.DataArray:
        array = array.transpose(dim, ...)
        values = array.values[: nblocks * block_length]
        blocks = values.reshape(nblocks, block_length, *values.shape[1:])
        with warnings.catch_warnings():  # an all-NaN block is NaN: numpy's "Mean of empty slice" is noise
            warnings.simplefilter("ignore", category=RuntimeWarning)
            block_means = np.nanmean(blocks, axis=1)
            replicates = np.nanmean(block_means[draws], axis=1)
        other_dims = array.dims[1:]
        coords = {name: coord for name, coord in array.coords.items() if dim not in coord.dims}
        return xr.DataArray(replicates, dims=("iboot", *other_dims),
                            coords={**coords, "iboot": np.arange(nboots)}, attrs=array.attrs)

    if isinstance(metrics, xr.DataArray):
        return replicate(metrics)
    return xr.Dataset({name: replicate(array) for name, array in metrics.data_vars.items() if dim in array.dims},
                      attrs={"block_length": block_length, "nboots": nboots, "seed": seed, "nblocks": nblocks})


def summarize_metrics(raw: xr.Dataset, block_length: int = BLOCK_LENGTH, nboots: int = NBOOTS,
                      seed: int = SEED) -> xr.Dataset:
    """The content of ``evaluation_metrics.nc``: every raw variable ``<name> [init_time, fcst_hour]``, plus
    ``<name>_bootstrapped [iboot, fcst_hour]`` and ``<name>_avg [fcst_hour]`` (plain NaN-skipping mean over
    ``init_time``, as the original)."""
    raw = raw.sortby("init_time")
    boots = block_bootstrap(raw, block_length, nboots, seed)
    result = raw.copy()
    for name in raw.data_vars:
        result[f"{name}_bootstrapped"] = boots[name]
        result[f"{name}_avg"] = raw[name].mean("init_time", skipna=True, keep_attrs=True)
    result.attrs.update(raw.attrs)
    result.attrs.update({f"bootstrap_{key}": value for key, value in boots.attrs.items()})
    return result


def paired_name(model_score: str, baseline: str) -> str:
    """The model's scores ``<var>_<model>_<metric>`` restricted to the forecasts that ``baseline`` has."""
    return f"{model_score}_paired_{baseline}"


def add_paired_scores(raw: xr.Dataset, variable: str, model: str, metrics: Sequence[str],
                      baselines: Sequence[str] = tuple(BASELINES)) -> xr.Dataset:
    """``raw`` (``<var>_<product>_<metric> [init_time, fcst_hour]``) with, for each baseline lacking some of the
    model's forecasts (NaN scores: persistence without a previous day), the model's scores on the forecasts the
    baseline has (:func:`paired_name`; attribute ``paired_forecasts`` per lead hour), so that a skill compares the
    same forecasts. Nothing is added where every forecast is paired already."""
    raw = raw.copy()
    for metric in metrics:
        model_score = raw.get(f"{variable}_{model}_{metric}")
        for baseline in baselines:
            reference = raw.get(f"{variable}_{baseline}_{metric}")
            if model_score is None or reference is None:
                continue
            paired = reference.notnull() & model_score.notnull()
            if bool(paired.all()):
                continue
            raw[paired_name(model_score.name, baseline)] = model_score.where(paired).assign_attrs(
                paired_with=baseline, paired_forecasts=paired.sum("init_time").values.astype(np.int32))
    return raw


def paired_model_scores(evaluation: xr.Dataset, model_score: str, baseline: str, suffix: str) -> xr.DataArray:
    """The model's ``<model_score><suffix>`` (``_avg``, ``_bootstrapped``) to compare with ``baseline``'s: its
    paired scores (:func:`add_paired_scores`) where the baseline lacks some forecasts, else its own."""
    return evaluation.get(paired_name(model_score, baseline) + suffix, evaluation[model_score + suffix])


def skill_score(model: xr.DataArray, reference: xr.DataArray, perfect_score: float) -> xr.DataArray:
    """Skill of ``model`` relative to ``reference`` (e.g. persistence): 1 - |S_model - S_perfect| / |S_ref -
    S_perfect|.

    1 = perfect, 0 = no better than the reference, < 0 = worse. For scores bounded by their perfect value (MSE,
    RMSE: 0; ACC, SSIM: 1) this is the original's (S_model - S_ref) / (S_perfect - S_ref), e.g. 1 - MSE_m / MSE_ref;
    for the gradient ratio (perfect 1, values on both sides) the distance to 1 is what counts.
    Computed element-wise (per bootstrap replicate and lead hour when given ``_bootstrapped`` arrays).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        skill = 1.0 - abs(model - perfect_score) / abs(reference - perfect_score)
    skill.attrs = {"long_name": "skill score against the reference forecast", "units": "1"}
    return skill


def _format(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if not np.isfinite(value) else f"{value:.6g}"
    return str(value)


def write_table(rows: list[dict], path_stem: str | Path) -> tuple[Path, Path]:
    """Write ``rows`` (dicts with the same keys) as ``<stem>.csv`` and a markdown table ``<stem>.md``."""
    path_stem = Path(path_stem)
    columns = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[_format(row[c]) for c in columns] for row in rows])
    csv_path, md_path = path_stem.with_suffix(".csv"), path_stem.with_suffix(".md")
    write_text(csv_path, buffer.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row[c]) for c in columns) + " |" for row in rows]
    write_text(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def skill_summary_rows(evaluation: xr.Dataset, variable: str, model: str, metrics: list[str],
                       perfect_scores: dict[str, float | None],
                       baselines: Sequence[str] = tuple(BASELINES)) -> list[dict]:
    """One row per lead hour: the averaged score of the model and of each of the ``baselines`` present in
    ``evaluation`` for every metric, and the skill of the model against each (columns ``<baseline>_<metric>`` and
    ``baselines.skill_name(<baseline>, <metric>)``) computed from the averages over the same forecasts (where a
    baseline lacks some, ``<skill column>_forecasts`` says over how many)."""
    rows = []
    for index, lead in enumerate(evaluation["fcst_hour"].values):
        row: dict = {"fcst_hour": int(lead)}
        for metric in metrics:
            model_score = f"{variable}_{model}_{metric}"
            if f"{model_score}_avg" not in evaluation:
                continue
            row[f"{model}_{metric}"] = float(evaluation[f"{model_score}_avg"].sel(fcst_hour=lead))
            for baseline in baselines:
                baseline_avg = evaluation.get(f"{variable}_{baseline}_{metric}_avg")
                if baseline_avg is None:
                    continue
                row[f"{baseline}_{metric}"] = float(baseline_avg.sel(fcst_hour=lead))
                if perfect_scores.get(metric) is None:
                    continue
                model_avg = paired_model_scores(evaluation, model_score, baseline, "_avg")
                row[skill_name(baseline, metric)] = float(skill_score(model_avg.sel(fcst_hour=lead),
                                                                      baseline_avg.sel(fcst_hour=lead),
                                                                      perfect_scores[metric]))
                if paired_name(model_score, baseline) in evaluation:
                    counts = evaluation[paired_name(model_score, baseline)].attrs["paired_forecasts"]
                    row[f"{skill_name(baseline, metric)}_forecasts"] = int(np.atleast_1d(counts)[index])
        rows.append(row)
    return rows
