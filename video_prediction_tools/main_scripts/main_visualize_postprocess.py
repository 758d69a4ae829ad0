"""Postprocess a trained model: forecasts of the test split, baselines, metrics, netCDF files and plots.

Example (after training)::

    python -m video_prediction_tools.main_scripts.main_visualize_postprocess \\
        --checkpoint Models/<EXPNAME>/convLSTM/<exp_id> --results_dir Results/<EXPNAME>/convLSTM/<exp_id> \\
        --mode test --batch_size 8 --evaluation_metrics mse rmse psnr ssim acc texture \\
        --climatology_file climatology_2t.nc

``--checkpoint`` is a training run directory (best checkpoint, else the newest) or one ``checkpoint_<step>``
directory. By default every metric is computed, ``acc`` and ``weighted_acc`` only when ``--climatology_file`` is
given; requesting them without a climatology file, or with one lacking a month or hour of the forecasts' valid
times, is an error before any forecasting. The climatology is the file of ``main_climatology`` or the original's
CDO file (``climatology_t2m_1991-2020.nc``: ``var167``, 288 steps month x hour). ``--lquick_evaluation``
computes the model's metrics only. ``--metric_conventions gmd2022`` reproduces the original's (published) metric
definitions. Metric definitions: ``video_prediction_tools/postprocess/metrics.py``. The step-2 data are read
where training recorded them (``input_dir`` of the run's ``options.json``) or, after the whole base directory
moved, at the same place relative to the run directory; ``--input_dir`` names them when neither holds.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
from typing import Sequence

from video_prediction_tools.postprocess.bootstrap import BLOCK_LENGTH, NBOOTS
from video_prediction_tools.postprocess.metrics import CLIMATOLOGY_METRICS, CONVENTIONS, DEFAULT_CONVENTIONS, METRICS
from video_prediction_tools.postprocess.options import PostprocessOptions
from video_prediction_tools.postprocess.pipeline import run_postprocess
from video_prediction_tools.postprocess.results_io import SAMPLE_COMPRESSION
from video_prediction_tools.main_scripts import legacy_options
from video_prediction_tools.main_scripts.main_train_models import GPU_MEMORY_NOTE
from video_prediction_tools.utils.errors import run_cli
from video_prediction_tools.utils.parallel import on_root


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="training run directory or checkpoint_<step> directory")
    parser.add_argument("--results_dir", required=True, help="directory for the results")
    parser.add_argument("--mode", default="test", choices=["test", "val", "train"], help="data split to evaluate")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_stochastic_samples", type=int, default=1,
                        help="forecast members per window (stochastic models only)")
    parser.add_argument("--evaluation_metrics", "-eval_metrics", nargs="+", default=None, metavar="METRIC",
                        help=f"metrics to compute, among: {', '.join(METRICS)} (default: all; "
                             f"{', '.join(CLIMATOLOGY_METRICS)} only with --climatology_file)")
    parser.add_argument("--climatology_file", "-clim_fl", default=None,
                        help="month x hour climatology netCDF (needed by acc and weighted_acc)")
    parser.add_argument("--climatology_regridding", default="none", choices=["none", "nearest"],
                        help="none (default): the climatology must have the data's grid points (within 1 %% of a "
                             "grid step); nearest: take the nearest climatology point (recorded in the outputs)")
    parser.add_argument("--lquick_evaluation", "-lquick", action="store_true",
                        help="model metrics only: no baselines, no per-sample files, no plots")
    parser.add_argument("--seed", type=int, default=7, help="seed of the stochastic forecast members")
    parser.add_argument("--channel", "-channel", type=int, default=0, help="channel (variable index) evaluated")
    parser.add_argument("--block_length", type=int, default=BLOCK_LENGTH,
                        help="bootstrap block length in samples (>= 10 blocks needed)")
    parser.add_argument("--nboots", type=int, default=NBOOTS, help="number of bootstrap replicates")
    parser.add_argument("--data_range", type=float, default=None,
                        help="data range of PSNR and SSIM in the variable's units (default: range of each truth field)")
    parser.add_argument("--metric_conventions", default=DEFAULT_CONVENTIONS, choices=list(CONVENTIONS),
                        help="metric definitions (default %(default)s): " + "; ".join(
                            f"{name}: {conventions.description}" for name, conventions in CONVENTIONS.items()))
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing per-sample files")
    parser.add_argument("--input_dir", default=None,
                        help="the run's step-2 data (PreprocessedData/<EXPNAME>) when they are no longer where "
                             "training recorded them nor at the same place relative to the run directory")
    parser.add_argument("--sample_compression", default="none", choices=list(SAMPLE_COMPRESSION),
                        help="compression of the per-sample files (default %(default)s): zlib makes them about 40 %% "
                             "smaller for 4-5x the CPU time of writing them")
    legacy_options.ignored(parser, "--gpu_mem_frac", reason=GPU_MEMORY_NOTE)
    legacy_options.renamed(parser, "--evaluation_metric_quick", "-metric_quick", dest="evaluation_metrics",
                           convert=lambda name: [name], new="--evaluation_metrics {}")
    legacy_options.renamed(parser, "--test_mode", "-test", dest="block_length", value=1, new="--block_length 1")
    legacy_options.refused(parser, "--frac_data", "-f_dt",
                           replacement="the whole --mode split is evaluated (the original crashed on this option); "
                                       "choose the split with --mode")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # one unit of work: under MPI rank 0 does it (the others wait), so the output is the same for any N
    on_root(lambda: run_postprocess(PostprocessOptions(**vars(args))))
    return 0


if __name__ == "__main__":
    run_cli(main)
