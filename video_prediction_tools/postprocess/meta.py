"""Meta-postprocessing: compare the bootstrapped scores of any number of postprocessed runs.

The analysis configuration (template ``templates/meta_postprocess/meta_config_template.json``)::

    {"results": {"convLSTM cv1": "Results/<EXPNAME>/convLSTM/<exp_id>", "SAVP cv1": "/abs/path/..."},
     "markers": ["X", "P"], "colors": ["r", "b"]}

names each run's results directory (absolute, or relative to ``--root_dir``) with its label; ``markers`` and
``colors`` give one matplotlib marker/colour per run (optional: default cycles otherwise). Each results
directory holds the ``evaluation_metrics.nc`` written by postprocessing.

Outputs in ``<root_dir>/meta_postprocess/<exp_id>/``: ``meta_config.json`` (the configuration used),
``<metric>_abs_values.png`` (median over bootstrap replicates and 5-95 % band per lead hour, optionally the
curves of the baselines: persistence and the last input frame held, see :mod:`.baselines`),
``<metric>_skill_scores.png`` (box plots of the skill against persistence per lead hour) and
``<metric>_skill_scores_<baseline>.png`` (against each other baseline, e.g. ``copy_last_frame``),
``<metric>_summary.csv`` / ``.md`` (every run, every lead hour: the model's scores, each baseline's median and the
skill against it).

Skill scores need every run's persistence scores; a run without the scores of another baseline (postprocessed
before that baseline existed) is left out of that baseline's figure, with a warning, and has NaN in its columns.

Example::

    from video_prediction_tools.postprocess.meta import run_meta_postprocess
    run_meta_postprocess("/scratch/ambs", "meta_config.json", metric="mse", exp_id="cv_comparison",
                         enable_skill_scores=True)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..utils.errors import UserError
from ..utils.io import read_json, write_json
from ..utils.log import setup_logging
from .baselines import BASELINES, REFERENCE, skill_name
from .bootstrap import paired_name, skill_score, write_table
from .metrics import CONVENTIONS, DEFAULT_CONVENTIONS, METRICS, is_scalar
from .plots import BAND_QUANTILES, metric_axis_label, plt, save_figure
from .results_io import EVALUATION_FILE

log = logging.getLogger("ambs")
DEFAULT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DEFAULT_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive")
#: (marker, line style) of the baselines' curves, in the order of ``BASELINES`` (the run's colour)
BASELINE_STYLES = (("D", "--"), ("s", ":"), ("v", "-."))


@dataclass
class RunScores:
    """Bootstrapped scores of one run: ``model`` and ``baselines`` (baseline name → scores, for the baselines
    the run's file holds) ``[iboot, fcst_hour]``."""

    label: str
    results_dir: Path
    model_name: str
    variable: str
    model: xr.DataArray
    model_avg: xr.DataArray
    baselines: dict[str, xr.DataArray]
    marker: str
    colour: str
    #: the metric definitions the run was evaluated with (a ``CONVENTIONS`` name)
    conventions: str = DEFAULT_CONVENTIONS
    #: baseline name → the model's scores ``[iboot, fcst_hour]`` on the forecasts that baseline has, where it
    #: lacks some (``bootstrap.add_paired_scores``); a skill against it compares these
    paired: dict[str, xr.DataArray] = field(default_factory=dict)

    def compared_with(self, baseline: str) -> xr.DataArray:
        """The model's scores to compare with ``baseline``'s: on the same forecasts."""
        return self.paired.get(baseline, self.model)


def load_meta_config(path: str | Path) -> dict:
    """Read and validate the analysis configuration (UserError naming the file and the problem)."""
    config = read_json(path, what="meta-postprocessing analysis config")
    results = config.get("results") if isinstance(config, dict) else None
    if not isinstance(results, dict) or not results:
        raise UserError(f"{path}: expected a non-empty object \"results\": {{\"<label>\": \"<results dir>\"}}")
    for key in ("markers", "colors"):
        values = config.get(key, [])
        if not isinstance(values, list) or (values and len(values) < len(results)):
            raise UserError(f"{path}: \"{key}\" must be a list with one entry per result ({len(results)}), "
                            f"got {values!r}")
    return config


def _run_identity(dataset: xr.Dataset, results_dir: Path, metric: str) -> tuple[str, str]:
    """(model name, evaluated variable) from the file's attributes (written by postprocessing)."""
    model = dataset.attrs.get("model")
    variable = dataset.attrs.get("variable")
    if model and variable:
        return model, variable
    suffix = f"_{metric}_bootstrapped"
    candidates = [name for name in dataset.data_vars
                  if name.endswith(suffix) and not any(f"_{baseline}_" in name for baseline in BASELINES)]
    raise UserError(f"{results_dir / EVALUATION_FILE}: attributes 'model' and 'variable' are missing (was it written "
                    f"by this version of postprocessing?); candidate variables: {', '.join(candidates) or 'none'}")


def load_run(label: str, results_dir: Path, metric: str, marker: str, colour: str) -> RunScores:
    path = results_dir / EVALUATION_FILE
    if not path.is_file():
        raise UserError(f"results of {label!r}: {path} not found (run postprocessing first)")
    with xr.open_dataset(path) as dataset:
        model, variable = _run_identity(dataset, results_dir, metric)
        name = f"{variable}_{model}_{metric}"
        if f"{name}_bootstrapped" not in dataset:
            available = sorted({n.split("_")[-2] for n in dataset.data_vars
                                if n.endswith("_bootstrapped") and "_paired_" not in n})
            raise UserError(f"{path} has no bootstrapped metric {metric!r} for model {model} (variable "
                            f"{name}_bootstrapped missing); metrics present: {', '.join(available) or 'none'}")
        baselines = {baseline: dataset[f"{variable}_{baseline}_{metric}_bootstrapped"].load()
                     for baseline in BASELINES if f"{variable}_{baseline}_{metric}_bootstrapped" in dataset}
        # files written before conventions could be chosen used the AMBS definitions
        conventions = dataset.attrs.get("metric_conventions", DEFAULT_CONVENTIONS)
        if conventions not in CONVENTIONS:
            raise UserError(f"{path}: unknown metric_conventions {conventions!r}; known: {', '.join(CONVENTIONS)}")
        paired = {baseline: dataset[paired_name(name, baseline) + "_bootstrapped"].load() for baseline in baselines
                  if paired_name(name, baseline) + "_bootstrapped" in dataset}
        return RunScores(label, results_dir, model, variable, dataset[f"{name}_bootstrapped"].load(),
                         dataset[f"{name}_avg"].load(), baselines, marker, colour, conventions, paired)


def check_same_definition(runs: Sequence[RunScores], metric: str) -> None:
    """Refuse to compare runs whose ``metric`` was computed under conventions that define it differently (e.g. ACC
    of ``ambs`` and ``gmd2022`` runs); runs differing only in conventions that agree on ``metric`` (MSE) pass."""
    definitions: dict[str, list[str]] = {}
    for run in runs:
        parameters = CONVENTIONS[run.conventions].parameters_for(METRICS[metric])
        definitions.setdefault(repr(sorted(parameters.items())), []).append(f"{run.label} ({run.conventions})")
    if len(definitions) > 1:
        groups = "; ".join(", ".join(labels) for labels in definitions.values())
        raise UserError(f"--metric {metric} is defined differently in the runs' metric conventions: {groups}; "
                        f"postprocess them with the same --metric_conventions to compare them")


def _band(replicates: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = replicates.transpose("iboot", "fcst_hour").values
    low, median, high = np.nanquantile(values, (BAND_QUANTILES[0], 0.5, BAND_QUANTILES[1]), axis=0)
    return low, median, high


def plot_absolute_scores(runs: Sequence[RunScores], metric: str, path: Path, with_baselines: bool) -> Path:
    """Each run's median and 5-95 % band per lead hour; ``with_baselines``: the medians of its baselines too."""
    figure, axis = plt.subplots(figsize=(8, 6))
    units = runs[0].model.attrs.get("units", "")
    for run in runs:
        lead = run.model["fcst_hour"].values
        low, median, high = _band(run.model)
        axis.plot(lead, median, marker=run.marker, color=run.colour, label=run.label)
        axis.fill_between(lead, low, high, color=run.colour, alpha=0.2)
        for baseline, (marker, style) in zip(BASELINES, BASELINE_STYLES):
            if with_baselines and baseline in run.baselines:
                axis.plot(lead, _band(run.baselines[baseline])[1], marker=marker, linestyle=style, color=run.colour,
                          label=f"{run.label} {baseline}")
    axis.set_xlabel("Lead time [h]")
    axis.set_ylabel(metric_axis_label(metric, units))
    axis.set_title(f"{metric}: median and 5-95 % range over bootstrap replicates")
    axis.grid(alpha=0.3)
    axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save_figure(figure, path)


def plot_skill_scores(runs: Sequence[RunScores], skills: Sequence[xr.DataArray], metric: str, baseline: str,
                      path: Path) -> Path:
    """Box plots of each run's skill against ``baseline`` (``skills``, one per run) per lead hour."""
    figure, axis = plt.subplots(figsize=(8, 6))
    width = 0.8 / len(runs)
    for index, (run, skill) in enumerate(zip(runs, skills)):
        lead = skill["fcst_hour"].values
        positions = lead - 0.4 + width * (index + 0.5)
        values = skill.transpose("iboot", "fcst_hour").values
        columns = [column[np.isfinite(column)] for column in values.T]
        boxes = axis.boxplot(columns, positions=positions, widths=width * 0.9, showfliers=False,
                             patch_artist=True, manage_ticks=False)
        for box in boxes["boxes"]:
            box.set(facecolor=run.colour, alpha=0.4)
        axis.plot(positions, np.nanmedian(values, axis=0), color=run.colour, marker=run.marker, label=run.label)
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xlabel("Lead time [h]")
    axis.set_ylabel(f"Skill score of {metric} against {baseline} [1]")
    axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


def summary_rows(runs: Sequence[RunScores], skills: dict[str, list[xr.DataArray | None]], metric: str) -> list[dict]:
    """One row per run and lead hour: mean, median and 5/95 % of the bootstrap, then per baseline its median
    (``<baseline>_median``) and the median skill against it (``skill_median`` against persistence,
    ``skill_<baseline>_median`` against the others; NaN where not computed)."""
    rows = []
    for index, run in enumerate(runs):
        low, median, high = _band(run.model)
        leads = run.model["fcst_hour"].values
        per_baseline = {}  # column → value per lead hour
        for baseline in BASELINES:
            scores, skill = run.baselines.get(baseline), skills.get(baseline, [None] * len(runs))[index]
            per_baseline[f"{baseline}_median"] = _band(scores)[1] if scores is not None else np.full(len(leads), np.nan)
            per_baseline[skill_name(baseline, "median")] = np.full(len(leads), np.nan) if skill is None else \
                np.nanmedian(skill.transpose("iboot", "fcst_hour").values, axis=0)
        for i, lead in enumerate(leads):
            rows.append({"run": run.label, "model": run.model_name, "fcst_hour": int(lead),
                         f"{metric}_mean": float(run.model_avg.sel(fcst_hour=lead)), f"{metric}_median": median[i],
                         f"{metric}_q05": low[i], f"{metric}_q95": high[i],
                         **{column: values[i] for column, values in per_baseline.items()}})
    return rows


def with_ensemble_columns(rows: list[dict], runs: Sequence[RunScores], metric: str) -> list[dict]:
    """``rows`` of :func:`summary_rows` with, for an ensemble metric, the members of each run (``members``) and
    what its score is (``scored_as``): e.g. the CRPS of a stochastic run of K members and the mean absolute error
    of a deterministic run (its CRPS as a one-member ensemble), the fair comparison of the two."""
    cls = METRICS[metric]
    if not cls.core_dims:
        return rows
    members = {run.label: int(run.model.attrs.get("ensemble_members", 1)) for run in runs}

    def scored_as(label: str) -> str:
        if members[label] == 1 and getattr(cls, "one_member_name", ""):
            return f"{cls.one_member_name} (one member)"
        return f"{cls.long_name} ({members[label]} members)"

    return [{**row, "members": members[row["run"]], "scored_as": scored_as(row["run"])} for row in rows]


def skill_scores(runs: Sequence[RunScores], metric: str, out_dir: Path) -> dict[str, list[xr.DataArray | None]]:
    """The skill of each run against each baseline, replicate by replicate (None for a run without that
    baseline's scores), and a figure per baseline that some run has (``<metric>_skill_scores.png`` against
    persistence, ``<metric>_skill_scores_<baseline>.png`` against the others)."""
    perfect = METRICS[metric].perfect_score
    skills = {}
    for baseline in BASELINES:
        skills[baseline] = [skill_score(run.compared_with(baseline), run.baselines[baseline], perfect)
                            if baseline in run.baselines else None for run in runs]
        having = [(run, skill) for run, skill in zip(runs, skills[baseline]) if skill is not None]
        if len(having) < len(runs):
            log.warning("no skill against %s for %s: their %s lacks the %s scores (postprocessed before it was a "
                        "baseline?)", baseline, ", ".join(run.label for run in runs if baseline not in run.baselines),
                        EVALUATION_FILE, baseline)
        if having:
            stem = f"{metric}_skill_scores" + ("" if baseline == REFERENCE else f"_{baseline}")
            plot_skill_scores(*zip(*having), metric, baseline, out_dir / f"{stem}.png")
    return skills


def load_runs(root_dir: Path, config: dict, metric: str) -> list[RunScores]:
    """The scores of every run of the analysis configuration ``config`` (directories relative to ``root_dir``)."""
    markers = config.get("markers") or DEFAULT_MARKERS
    colours = config.get("colors") or DEFAULT_COLOURS
    runs = []
    for index, (label, directory) in enumerate(config["results"].items()):
        directory = Path(directory)
        if not directory.is_absolute():
            directory = root_dir / directory
        runs.append(load_run(label, directory, metric, markers[index % len(markers)],
                             colours[index % len(colours)]))
    check_same_definition(runs, metric)
    return runs


def run_meta_postprocess(root_dir: str | Path, analysis_config: str | Path, metric: str = "mse",
                         exp_id: str = "exp1", enable_skill_scores: bool = False,
                         enable_persit_plot: bool = False) -> Path:
    """Compare the runs of ``analysis_config``; return the output directory. ``enable_skill_scores``: the skill
    against every baseline (persistence required); ``enable_persit_plot``: the baselines' curves beside the runs'.
    Everything (options, configuration, every run's scores) is validated before the output directory is created:
    a refused run writes nothing."""
    setup_logging()  # console only until the output directory exists
    root_dir = Path(root_dir)
    if not root_dir.is_dir():
        raise UserError(f"--root_dir {root_dir}: directory does not exist")
    if metric not in METRICS:
        raise UserError(f"--metric {metric!r}: unknown; known metrics: {', '.join(METRICS)}")
    if not is_scalar(metric):
        raise UserError(f"--metric {metric}: not one number per forecast, so not compared here; each run's "
                        f"postprocessing draws it (rank_histogram_<var>_<model>.png, summary_rank_histogram.md)")
    if enable_skill_scores and METRICS[metric].perfect_score is None:
        raise UserError(f"--metric {metric} has no perfect score, so no skill score; drop --enable_skill_scores")
    config = load_meta_config(analysis_config)
    runs = load_runs(root_dir, config, metric)
    missing = [run.label for run in runs if REFERENCE not in run.baselines]
    if enable_skill_scores and missing:
        raise UserError(f"skill scores need the {REFERENCE} scores, missing for {', '.join(missing)} (their "
                        f"{EVALUATION_FILE} lacks <var>_{REFERENCE}_{metric}_bootstrapped)")
    # everything is validated: only now the output directory is created
    out_dir = root_dir / "meta_postprocess" / exp_id
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(out_dir / "meta_postprocess.log")
    write_json(out_dir / "meta_config.json", config)
    plot_absolute_scores(runs, metric, out_dir / f"{metric}_abs_values.png", enable_persit_plot)
    lacking = [run.label for run in runs if set(BASELINES) - set(run.baselines)]
    if enable_persit_plot and lacking:
        log.warning("baseline curves missing for runs without every baseline's scores (quick evaluation, or "
                    "postprocessed before a baseline existed): %s", ", ".join(lacking))
    skills = skill_scores(runs, metric, out_dir) if enable_skill_scores else {}
    write_table(with_ensemble_columns(summary_rows(runs, skills, metric), runs, metric),
                out_dir / f"{metric}_summary")
    log.info("meta-postprocessing of %d run(s) written to %s", len(runs), out_dir)
    return out_dir
