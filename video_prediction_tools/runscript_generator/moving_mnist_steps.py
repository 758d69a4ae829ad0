"""The Moving MNIST steps of the runscript generator: conversion of ``mnist_test_seq.npy``, training and
postprocessing, with the same prompters and results as the ERA5 steps of :mod:`.steps`.

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
from ..utils.settings import templates_dir
from . import checks
from .steps import AUTO_CHECKPOINT, STEPS, Step, StepResult, _exp_id_parser, _subdirs

DATASET = "moving_mnist"
#: dataset key → the label offered by the dataset question
DATASETS = {"era5": "ERA5 reanalysis", DATASET: "Moving MNIST"}
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


class MnistTrain(Step):
    name = "train"
    title = "training on converted Moving MNIST (Models/<experiment>/<model>/<exp_id>)"
    template = "train_model_moving_mnist.sh.j2"

    def ask(self, p, ctx):
        from ..datasets.datasplit import load_index_split

        root = ctx.base_dir / "PreprocessedData"
        sizes = {name: int(info["num_sequences"]) for name in _subdirs(root)
                 if (info := _dataset_info(root / name)) is not None}
        planned = ctx.planned(CONVERT_RUNSCRIPT) if ctx.chain else {}
        if planned.get("expname") and planned["expname"] not in sizes:
            sizes[planned["expname"]] = planned.get("num_sequences")
        if not sizes:
            raise UserError(f"no converted Moving MNIST data in {root}; run the conversion first "
                            f"(or generate its runscript and use --chain)")
        experiment = p.select("experiment", "Converted Moving MNIST data to train on:", sorted(sizes),
                              default=planned.get("expname") or sorted(sizes)[-1])
        models = [path.name for path in sorted((templates_dir() / "hparams" / DATASET).iterdir())
                  if (path / "model_hparams_template.json").is_file()]
        model = p.select("model", "Model to train:", models, default="convLSTM" if "convLSTM" in models else None)
        typed = p.text("exp_id", "Experiment id (extended to <YYYYmmddTHHMMSS>_<USER>_<id>):",
                       _exp_id_parser(ctx), guidance="A short name for this training run, e.g. mnist_reference.")
        exp_id = ctx.exp_id(typed)
        run_dir = ctx.base_dir / "Models" / experiment / model / exp_id
        if run_dir.exists() and exp_id != ctx.replayed_exp_id:
            raise UserError(f"run directory {run_dir} exists already; choose another experiment id")
        split_template = templates_dir() / "data_split" / DATASET / "datasplit_template.json"
        split = p.edit_json("datasplit", "data split (train/val/test sequence-index ranges)",
                            split_template.read_text(),
                            lambda content, path: load_index_split(content, num_sequences=sizes[experiment]),
                            split_template.name)
        hparams_template = templates_dir() / "hparams" / DATASET / model / "model_hparams_template.json"
        hparams = p.edit_json("hparams", f"hyper-parameters of {model}", hparams_template.read_text(),
                              lambda content, path: checks.hparams(content, model, hparams_template),
                              hparams_template.name)
        seed = p.text("seed", "Random seed:", lambda text: checks.parse_int(text, "seed", 0), default="1234")
        stem = f"train_model_{DATASET}_{exp_id}"
        # the run directory is made by the training when it runs; until then the files wait next to the runscript
        split_file, hparams_file = (ctx.runscript_dir / f"{stem}_data_split.json",
                                    ctx.runscript_dir / f"{stem}_model_hparams.json")
        return StepResult(f"{stem}.sh",
                          dict(input_dir=root / experiment, output_dir=run_dir, model=model, seed=seed,
                               datasplit_file=split_file, hparams_file=hparams_file),
                          json_files={split_file: split, hparams_file: hparams},
                          derived={"expname": experiment, "model": model, "exp_id": exp_id, "run_dir": str(run_dir)})


class MnistPostprocess(Step):
    name = "postprocess"
    title = ("postprocessing of a Moving MNIST model: per-frame MSE, MAE, SSIM, PSNR against copying the last "
             "frame, example plots (Results/<experiment>/<model>/<exp_id>)")
    template = "visualize_postprocess_moving_mnist.sh.j2"

    def ask(self, p, ctx):
        models_root = ctx.base_dir / "Models"
        data_root = ctx.base_dir / "PreprocessedData"
        planned = ctx.planned(CONVERT_RUNSCRIPT).get("expname") if ctx.chain else None
        experiments = [name for name in _subdirs(models_root) if _subdirs(models_root / name)
                       and (_dataset_info(data_root / name) is not None or name == planned)]
        if not experiments:
            raise UserError(f"no models trained on Moving MNIST in {models_root}; generate and run a training "
                            f"runscript first")
        experiment = p.select("experiment", "Moving MNIST data the model was trained on:", experiments)
        model = p.select("model", "Trained model:", _subdirs(models_root / experiment))
        runs = _subdirs(models_root / experiment / model)
        if not runs:
            raise UserError(f"no training runs in {models_root / experiment / model}")
        run = p.select("run", "Training run (<YYYYmmddTHHMMSS>_<USER>_<id>):", runs, default=runs[-1])
        run_dir = models_root / experiment / model / run
        checkpoint = p.select("checkpoint", "Checkpoint to evaluate:", [AUTO_CHECKPOINT] + checks.checkpoints(run_dir),
                              default=AUTO_CHECKPOINT)
        if checkpoint == AUTO_CHECKPOINT and not ctx.chain and not checks.checkpoints(run_dir):
            raise UserError(f"run {run_dir} has no checkpoint_<step> directory yet; train it first "
                            f"(or use --chain when its training runscript is still to run)")
        mode = p.select("mode", "Data split to evaluate:", ["test", "val"], default="test")
        batch_size = p.text("batch_size", "Batch size:", lambda t: checks.parse_int(t, "batch size", 1), default="8")
        quick = p.confirm("lquick_evaluation", "Quick evaluation (scores of the model only, no baseline or plots)?",
                          default=False)
        results_dir = ctx.base_dir / "Results" / experiment / model / run
        return StepResult(f"visualize_postprocess_{DATASET}_{run}.sh",
                          dict(checkpoint=run_dir if checkpoint == AUTO_CHECKPOINT else run_dir / checkpoint,
                               results_dir=results_dir, mode=mode, batch_size=batch_size, lquick_evaluation=quick),
                          derived={"results_dir": str(results_dir)})


MNIST_STEPS: dict[str, Step] = {step.name: step for step in (MnistConvert(), MnistTrain(), MnistPostprocess())}
#: every step name of any dataset (for the --step choices)
ALL_STEP_NAMES = list(dict.fromkeys([*STEPS, *MNIST_STEPS]))


def steps_of(dataset: str) -> dict[str, Step]:
    """The generator's steps for ``dataset`` (``era5`` or ``moving_mnist``)."""
    return MNIST_STEPS if dataset == DATASET else STEPS


def dataset_of_step(step: str | None) -> str | None:
    """The dataset a step name implies when it exists for one dataset only (``convert``: Moving MNIST)."""
    if step in MNIST_STEPS and step not in STEPS:
        return DATASET
    if step in STEPS and step not in MNIST_STEPS:
        return "era5"
    return None


def ask_dataset(p, given: str | None, step: str | None) -> str:
    """The dataset: from an answers file its ``dataset`` key (default: the one ``--dataset`` or the step implies,
    else era5); interactively ``--dataset`` or the one the step implies, ERA5 for a ``--step`` both datasets
    have (the generator's behaviour before Moving MNIST), else asked. A Moving MNIST choice is saved with the
    answers, so that regenerating from them gives the same runscript."""
    implied = given or dataset_of_step(step)
    if not p.interactive:
        dataset = p.select("dataset", "Dataset:", list(DATASETS), default=implied or "era5")
        if implied and dataset != implied:
            raise UserError(f"dataset {dataset} of the answers file does not match "
                            f"{'--dataset ' + given if given else 'step ' + str(step)} ({implied})")
    elif implied or step is not None:
        dataset = implied or "era5"
    else:
        dataset = p.select("dataset", "Dataset (" + ", ".join(f"{k}: {v}" for k, v in DATASETS.items()) + "):",
                           list(DATASETS), default="era5")
    if dataset == DATASET:
        p.answers["dataset"] = dataset
    else:
        p.answers.pop("dataset", None)
    if step is not None and step not in steps_of(dataset):
        raise UserError(f"step {step!r} does not exist for dataset {dataset} (its steps: "
                        f"{', '.join(steps_of(dataset))})")
    return dataset
