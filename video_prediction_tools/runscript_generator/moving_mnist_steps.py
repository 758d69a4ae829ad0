"""The Moving MNIST steps of the runscript generator: conversion of ``mnist_test_seq.npy``, training (the train
step of :mod:`.train_step` with :class:`MnistTrainingInputs`) and postprocessing, with the same prompters and
results as the ERA5 steps of :mod:`.steps`.

Directory layout under the base directory (as for ERA5, with the experiment name chosen at conversion,
``moving_mnist`` by default): ``PreprocessedData/<experiment>/tfrecords/`` (converted sequences),
``Models/<experiment>/<model>/<exp_id>/``, ``Results/<experiment>/<model>/<exp_id>/``.

An answers file selects these steps with ``dataset: moving_mnist``, e.g.::

    dataset: moving_mnist
    step: convert
    source: /data/mnist_test_seq.npy
    experiment: moving_mnist
"""
from __future__ import annotations

import json
from pathlib import Path

from ..utils.errors import UserError
from . import checks
from .base import Step, StepResult, choose_trained_run, subdirs, trained_runs
from .train_step import Train

DATASET = "moving_mnist"
CONVERT_RUNSCRIPT = "preprocess_data_moving_mnist.sh"


def _dataset_info(experiment_dir: Path) -> dict | None:
    """The ``dataset_info.json`` of a converted Moving MNIST experiment, None if there is none."""
    path = experiment_dir / "tfrecords" / "dataset_info.json"
    try:
        info = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("dataset") == DATASET else None


class MnistConvert(Step):
    name = "convert"
    title = "conversion of mnist_test_seq.npy to the training layout (PreprocessedData/<experiment>/tfrecords)"
    template = "preprocess_data_moving_mnist.sh.j2"

    def ask(self, p, ctx):
        from ..datasets.moving_mnist import open_raw

        source = p.text("source", "The Moving MNIST file (mnist_test_seq.npy, uint8 [20, sequences, 64, 64]):",
                        lambda text: self._source(text, ctx),
                        guidance="The standard benchmark file, or one written by python -m video_prediction_tools."
                                 "main_scripts.main_generate_moving_mnist.")
        experiment = p.text("experiment", "Experiment name (PreprocessedData/<name>):", checks.parse_identifier,
                            default=DATASET)
        derived = {"expname": experiment}
        if source.is_file():
            derived["num_sequences"] = int(open_raw(source).shape[1])
        return StepResult(CONVERT_RUNSCRIPT, dict(source=source, dest_dir=ctx.base_dir / "PreprocessedData" /
                                                  experiment / "tfrecords"), derived=derived)

    @staticmethod
    def _source(text, ctx):
        from ..datasets.moving_mnist import open_raw

        path = Path(str(text).strip()).expanduser().resolve()
        if ctx.chain and not path.exists():
            return path
        open_raw(path)
        return path


class MnistTrainingInputs:
    """The train step on Moving MNIST (:class:`~.train_step.TrainingInputs`): converted experiments, the models
    with a Moving MNIST hyper-parameter template, a data split of sequence-index ranges."""

    dataset = DATASET
    title = "training on converted Moving MNIST (Models/<experiment>/<model>/<exp_id>)"
    example_id = "mnist_reference"

    def choose_experiment(self, p, ctx):
        sizes = self._sizes(ctx)
        if not sizes:
            raise UserError(f"no converted Moving MNIST data in {ctx.base_dir / 'PreprocessedData'}; run the "
                            f"conversion first (or generate its runscript and use --chain)")
        planned = ctx.planned(CONVERT_RUNSCRIPT).get("expname") if ctx.chain else None
        return p.select("experiment", "Converted Moving MNIST data to train on:", sorted(sizes),
                        default=planned or sorted(sizes)[-1])

    def models(self):
        from ..models.registry import models_with_template

        return models_with_template(DATASET)

    def exp_id_default(self, model):
        return None

    def split(self, p, ctx, experiment, template):
        from ..datasets.registry import get_dataset_class

        # checked against the converted sequences once the conversion has run (their number is known then)
        input_dir = ctx.base_dir / "PreprocessedData" / experiment if self._sizes(ctx)[experiment] is not None else None
        load_split = get_dataset_class(DATASET).load_split
        return p.edit_json("datasplit", "data split (train/val/test sequence-index ranges)", template.read_text(),
                           lambda content, path: load_split(content, input_dir), template.name)

    def training_windows(self, ctx, experiment, split):
        return None  # a sequence is one window; its count is checked by the data split's own check

    @staticmethod
    def _sizes(ctx) -> dict[str, int | None]:
        """``{experiment: number of sequences}`` of the converted experiments (chain mode: also the one the
        generated conversion runscript will write, its size None while unknown)."""
        root = ctx.base_dir / "PreprocessedData"
        sizes = {name: int(info["num_sequences"]) for name in subdirs(root)
                 if (info := _dataset_info(root / name)) is not None}
        planned = ctx.planned(CONVERT_RUNSCRIPT) if ctx.chain else {}
        if planned.get("expname") and planned["expname"] not in sizes:
            sizes[planned["expname"]] = planned.get("num_sequences")
        return sizes


class MnistPostprocess(Step):
    name = "postprocess"
    title = ("postprocessing of a Moving MNIST model: per-frame MSE, MAE, SSIM, PSNR against copying the last "
             "frame, example plots (Results/<experiment>/<model>/<exp_id>)")
    template = "visualize_postprocess_moving_mnist.sh.j2"

    def ask(self, p, ctx):
        data_root = ctx.base_dir / "PreprocessedData"
        planned = ctx.planned(CONVERT_RUNSCRIPT).get("expname") if ctx.chain else None
        trained = trained_runs(ctx, DATASET, lambda name: _dataset_info(data_root / name) is not None
                               or name == planned)
        if not trained:
            raise UserError(f"no models trained on Moving MNIST in {ctx.base_dir / 'Models'}; generate and run a "
                            f"training runscript first")
        chosen = choose_trained_run(p, ctx, trained, "Moving MNIST data the model was trained on:",
                                    "Checkpoint to evaluate:")
        mode = p.select("mode", "Data split to evaluate:", ["test", "val"], default="test")
        batch_size = p.text("batch_size", "Batch size:", lambda t: checks.parse_int(t, "batch size", 1), default="8")
        quick = p.confirm("lquick_evaluation", "Quick evaluation (scores of the model only, no baseline or plots)?",
                          default=False)
        return StepResult(f"visualize_postprocess_{DATASET}_{chosen.run}.sh",
                          dict(checkpoint=chosen.checkpoint_path, results_dir=chosen.results_dir, mode=mode,
                               batch_size=batch_size, lquick_evaluation=quick),
                          derived={"results_dir": str(chosen.results_dir)})


MNIST_STEPS: dict[str, Step] = {step.name: step for step in
                                (MnistConvert(), Train(MnistTrainingInputs()), MnistPostprocess())}
