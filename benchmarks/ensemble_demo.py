"""The README's ensemble figure and table: stochastic demo runs scored as K-member ensembles, side by side.

Reads the ``evaluation_metrics.nc`` of postprocessing runs made with ``--num_stochastic_samples K`` (K >= 2; e.g. the
quick start's ``--model savp --num_stochastic_samples 8``) and writes one small figure: CRPS of each model against
lead hour beside the MAE of the two baselines, the MSE of the ensemble mean beside the members' mean MSE, the
spread/skill ratio with the calibrated value sqrt(K / (K + 1)), and the rank histogram of the truth among the
members at three lead hours (summed over the test forecasts, as frequencies). It prints the table (2 m temperature,
+1 / +6 / +12 h).

Example::

    python benchmarks/ensemble_demo.py /tmp/ens_demo/Results/<EXPNAME>/savp/<run> \\
        /tmp/ens_demo/Results/<EXPNAME>/ours_gan/<run> --output benchmarks/figures/ensemble/ensemble_demo.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from video_prediction_tools.postprocess.metrics import calibrated_spread_skill  # noqa: E402

VARIABLE = "2t"
TABLE_LEADS = (1, 6, 12)
HISTOGRAM_LEADS = (1, 6, 12)
#: the baselines scored beside every run (one-member forecasts: their CRPS is their MAE)
BASELINES = ("persistence", "copy_last_frame")


def read_run(results_dir: Path) -> tuple[str, xr.Dataset]:
    """(model name, evaluation_metrics.nc) of one postprocessing run; the model is the product with a CRPS score
    that is not a baseline."""
    scores = xr.load_dataset(results_dir / "evaluation_metrics.nc")
    models = [name[len(VARIABLE) + 1:-len("_spread_avg")] for name in scores.data_vars
              if name.startswith(f"{VARIABLE}_") and name.endswith("_spread_avg")]
    if len(models) != 1:
        raise SystemExit(f"{results_dir}: expected one ensemble model with a spread score, found {models}")
    return models[0], scores


def lead_curve(scores: xr.Dataset, product: str, metric: str) -> xr.DataArray:
    """The mean score per lead hour (the ``_avg`` variable)."""
    return scores[f"{VARIABLE}_{product}_{metric}_avg"]


def rank_frequencies(scores: xr.Dataset, model: str, lead: int) -> np.ndarray:
    """Rank histogram of the model at ``lead`` summed over the forecasts, as frequencies (K + 1 bins)."""
    counts = scores[f"{VARIABLE}_{model}_rank_histogram"].sel(fcst_hour=lead).sum("init_time").values
    return counts / counts.sum()


def plot(runs: dict[str, xr.Dataset], output: Path) -> None:
    """The four panels (see the module docstring) into ``output``."""
    figure, axes = plt.subplots(1, 4, figsize=(13, 2.9))
    first = next(iter(runs.values()))
    leads = first["fcst_hour"].values
    for style, baseline in zip(("k--", "k:"), BASELINES):
        axes[0].plot(leads, lead_curve(first, baseline, "crps"), style, label=f"{baseline} (MAE)")
    for colour, (model, scores) in zip(("C0", "C3"), runs.items()):
        members = scores[f"{VARIABLE}_{model}_crps"].attrs.get("ensemble_members")
        axes[0].plot(leads, lead_curve(scores, model, "crps"), colour, label=f"{model} (K = {members})")
        axes[1].plot(leads, lead_curve(scores, model, "ensemble_mean_mse"), colour, label=f"{model} ens. mean")
        axes[1].plot(leads, lead_curve(scores, model, "mse"), colour, ls=":", label=f"{model} member mean")
        axes[2].plot(leads, lead_curve(scores, model, "spread_skill"), colour, label=model)
        for offset, lead in enumerate(HISTOGRAM_LEADS):
            frequencies = rank_frequencies(scores, model, lead)
            ranks = np.arange(len(frequencies)) + (offset - 1) * 0.27 + (0.09 if colour == "C3" else -0.09)
            axes[3].bar(ranks, frequencies, width=0.12, color=colour, alpha=0.4 + 0.3 * offset,
                        label=f"{model} +{lead} h")
    members = len(rank_frequencies(first, next(iter(runs)), HISTOGRAM_LEADS[0])) - 1
    axes[2].axhline(calibrated_spread_skill(members), color="k", ls="--", label="calibrated")
    axes[3].axhline(1 / (members + 1), color="k", ls="--")
    titles = ("CRPS [K]", "MSE [K$^2$]", "spread / skill", "rank histogram (frequency)")
    for axis, title in zip(axes, titles):
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("rank" if axis is axes[3] else "lead [h]", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.legend(fontsize=6)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=80)


def table(runs: dict[str, xr.Dataset]) -> str:
    """Markdown table: per model, CRPS, ensemble-mean MSE, member-mean MSE and spread/skill at the table leads."""
    columns = (("CRPS [K]", "crps"), ("ensemble-mean MSE [K²]", "ensemble_mean_mse"),
               ("member-mean MSE [K²]", "mse"), ("spread/skill", "spread_skill"))
    leads = " / ".join(f"+{lead}" for lead in TABLE_LEADS)
    lines = ["| model | " + " | ".join(f"{name} {leads} h" for name, _ in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    first = next(iter(runs.values()))
    products = {**runs, **{baseline: first for baseline in BASELINES}}
    for product, scores in products.items():
        cells = []
        for _, metric in columns:
            name = f"{VARIABLE}_{product}_{metric}_avg"
            cells.append(" / ".join(f"{scores[name].sel(fcst_hour=lead).item():.2f}" for lead in TABLE_LEADS)
                         if name in scores else "")
        lines.append(f"| {product} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results_dirs", nargs="+", type=Path, help="postprocessing directories of ensemble runs")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/figures/ensemble/ensemble_demo.png"))
    args = parser.parse_args(argv)
    runs = dict(read_run(path) for path in args.results_dirs)
    plot(runs, args.output)
    print(table(runs))


if __name__ == "__main__":
    main()
