"""Postprocessing of a trained run by the pipeline of the kind of data it was trained on.

The run's ``options.json`` names its dataset (``read_trained_run(...).dataset``); the dataset's registered class
says how its data are evaluated (``Reader.evaluation``, see ``datasets.registry.EVALUATIONS``), and
:data:`PIPELINES` maps that kind to the function that evaluates such runs: :mod:`.forecast` for gridded fields
(ERA5: forecasts, persistence, metrics, bootstrap, sample files, maps), :mod:`.moving_mnist` for independent
sequences (per-frame scores against the copy-last-frame baseline). A new dataset of an existing kind needs nothing
here; a new kind of evaluation is one entry::

    from video_prediction_tools.postprocess.options import PostprocessOptions
    from video_prediction_tools.postprocess.pipeline import run_postprocess
    run_postprocess(PostprocessOptions(checkpoint="Models/<EXPNAME>/convLSTM/<exp_id>", results_dir="Results/..."))
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..datasets.registry import get_dataset_class
from ..training.checkpoints import read_trained_run
from ..utils.errors import UserError
from ..utils.locks import unlock_directory
from . import forecast, moving_mnist
from .options import PostprocessOptions

#: evaluation kind of the trained run's dataset → the pipeline that evaluates it (returns the results directory)
PIPELINES: dict[str, Callable[[PostprocessOptions], Path]] = {
    forecast.EVALUATION: forecast.run_era5_postprocess,
    moving_mnist.EVALUATION: moving_mnist.run_moving_mnist_postprocess,
}
#: the pipeline of a checkpoint whose run cannot be read: its validation reports what is wrong, in its order
DEFAULT_EVALUATION = forecast.EVALUATION


def trained_dataset(checkpoint: str | Path, input_dir: str | None = None) -> str | None:
    """The dataset a training run (or one of its checkpoints) was trained on; None when the run cannot be read
    (no complete checkpoint, no readable options, no step-2 data where recorded or at ``input_dir``)."""
    try:
        return read_trained_run(checkpoint, input_dir).dataset
    except UserError:
        return None


def run_postprocess(options: PostprocessOptions) -> Path:
    """Evaluate the run of ``options.checkpoint`` with the pipeline of its data; return the results directory."""
    dataset = trained_dataset(options.checkpoint, options.input_dir)
    evaluation = DEFAULT_EVALUATION if dataset is None else get_dataset_class(dataset).evaluation
    if evaluation not in PIPELINES:
        raise UserError(f"--checkpoint {options.checkpoint}: no postprocessing for runs on {dataset!r} "
                        f"(evaluation {evaluation!r}; known: {', '.join(PIPELINES)})")
    try:
        return PIPELINES[evaluation](options)
    finally:  # the results directory was locked when it was started
        unlock_directory(options.results_dir)
