"""Postprocessing of a trained run by the pipeline of the dataset it was trained on.

:data:`PIPELINES` maps the dataset named in the run's ``options.json`` (``read_trained_run(...).dataset``) to the
function that evaluates such runs: :mod:`.forecast` for ERA5 (forecasts, persistence, metrics, bootstrap, sample
files, maps), :mod:`.moving_mnist` for Moving MNIST (per-frame scores against the copy-last-frame baseline).
Adding a dataset to postprocessing is one entry here::

    from video_prediction_tools.postprocess.options import PostprocessOptions
    from video_prediction_tools.postprocess.pipeline import run_postprocess
    run_postprocess(PostprocessOptions(checkpoint="Models/<EXPNAME>/convLSTM/<exp_id>", results_dir="Results/..."))
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..training.checkpoints import read_trained_run
from ..utils.errors import UserError
from . import forecast, moving_mnist
from .options import PostprocessOptions

#: dataset of the trained run → the pipeline that evaluates it (returns the results directory)
PIPELINES: dict[str, Callable[[PostprocessOptions], Path]] = {
    forecast.DATASET: forecast.run_era5_postprocess,
    moving_mnist.DATASET: moving_mnist.run_moving_mnist_postprocess,
}
#: the pipeline of a checkpoint whose run cannot be read: its validation reports what is wrong, in its order
DEFAULT_DATASET = forecast.DATASET


def trained_dataset(checkpoint: str | Path) -> str | None:
    """The dataset a training run (or one of its checkpoints) was trained on; None when the run cannot be read
    (no complete checkpoint, no readable options)."""
    try:
        return read_trained_run(checkpoint).dataset
    except UserError:
        return None


def run_postprocess(options: PostprocessOptions) -> Path:
    """Evaluate the run of ``options.checkpoint`` with the pipeline of its dataset; return the results directory."""
    dataset = trained_dataset(options.checkpoint) or DEFAULT_DATASET
    if dataset not in PIPELINES:
        raise UserError(f"--checkpoint {options.checkpoint}: no postprocessing for runs trained on {dataset!r} "
                        f"(known: {', '.join(PIPELINES)})")
    return PIPELINES[dataset](options)
