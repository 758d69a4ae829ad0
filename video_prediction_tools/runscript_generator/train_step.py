"""The generator's train step, one class for every dataset: the dataset's :class:`TrainingInputs` say which
experiments it can train on, which models it offers and how its data split is offered and checked.

The questions, in order: experiment, model, experiment id, data split, hyper-parameters, seed. The run directory
``Models/<experiment>/<model>/<exp_id>`` is made by the training when it runs; until then its data split and
hyper-parameters wait next to the runscript (``train_model_<dataset>_<exp_id>_data_split.json``, ...).

Example::

    from video_prediction_tools.runscript_generator.train_step import Train
    step = Train(inputs)                 # inputs: a TrainingInputs, e.g. steps.Era5TrainingInputs()
    result = step.ask(prompter, ctx)     # StepResult of train_model_<dataset>_<exp_id>.sh
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from ..utils.conventions import MAX_SEED
from ..utils.errors import UserError
from . import checks
from .base import Context, Step, StepResult, exp_id_parser, hparams_offered


class TrainingInputs(Protocol):
    """What the train step asks differently for each dataset."""

    #: the dataset key (``era5``, ``moving_mnist``): names the templates and the runscript
    dataset: str
    #: the step's title in the step menu
    title: str
    #: the example of a run id given in the guidance
    example_id: str

    def choose_experiment(self, p, ctx: Context) -> str:
        """Ask for the experiment (``PreprocessedData/<name>``) to train on."""

    def models(self) -> list[str]:
        """The models offered (from the model registry)."""

    def exp_id_default(self, model: str) -> str | None:
        """The run id offered for ``model`` (None: none offered)."""

    def split(self, p, ctx: Context, experiment: str, template: Path) -> Any:
        """Ask for the data split (``template``: the dataset's data-split template), checked against the data."""

    def training_windows(self, ctx: Context, experiment: str, split: Any) -> Callable[[int], int] | None:
        """A function counting the windows of a length (frames) in the training part of ``split``; None while
        the data are not there to count them (chain mode)."""


def split_template(dataset: str) -> Path:
    """The dataset's data-split template (the registry's ``split_template_path``); a UserError when it is
    missing."""
    from ..datasets.registry import get_dataset_class

    path = get_dataset_class(dataset).split_template_path()
    if not path.is_file():
        raise UserError(f"template {path} is missing; cannot propose a data split")
    return path


class Train(Step):
    name = "train"

    def __init__(self, inputs: TrainingInputs):
        self.inputs = inputs
        self.title = inputs.title
        self.template = f"train_model_{inputs.dataset}.sh.j2"

    def ask(self, p, ctx):
        from ..models.registry import hparams_template_path

        dataset = self.inputs.dataset
        experiment = self.inputs.choose_experiment(p, ctx)
        models = self.inputs.models()
        model = p.select("model", "Model to train:", models, default="convLSTM" if "convLSTM" in models else None)
        template = split_template(dataset)
        typed = p.text("exp_id", "Experiment id (extended to <YYYYmmddTHHMMSS>_<USER>_<id>):", exp_id_parser(ctx),
                       default=self.inputs.exp_id_default(model),
                       guidance=f"A short name for this training run, e.g. {self.inputs.example_id}.")
        exp_id = ctx.exp_id(typed)
        run_dir = ctx.base_dir / "Models" / experiment / model / exp_id
        if run_dir.exists() and exp_id != ctx.replayed_exp_id:
            raise UserError(f"run directory {run_dir} exists already; choose another experiment id")
        split = self.inputs.split(p, ctx, experiment, template)
        windows_of = self.inputs.training_windows(ctx, experiment, split)
        hparams_template = hparams_template_path(model, dataset)
        hparams = p.edit_json("hparams", f"hyper-parameters of {model}", hparams_offered(model, hparams_template),
                              lambda content, path: checks.hparams_fit_data(
                                  checks.hparams(content, model, hparams_template), windows_of),
                              hparams_template.name)
        seed = p.text("seed", f"Random seed (0 to {MAX_SEED}):",
                      lambda text: checks.parse_int(text, "seed", 0, MAX_SEED), default="1234")
        stem = f"train_model_{dataset}_{exp_id}"
        split_file, hparams_file = (ctx.runscript_dir / f"{stem}_data_split.json",
                                    ctx.runscript_dir / f"{stem}_model_hparams.json")
        return StepResult(f"{stem}.sh",
                          dict(input_dir=ctx.base_dir / "PreprocessedData" / experiment, output_dir=run_dir,
                               model=model, seed=seed, datasplit_file=split_file, hparams_file=hparams_file),
                          json_files={split_file: split, hparams_file: hparams},
                          derived={"expname": experiment, "model": model, "exp_id": exp_id, "run_dir": str(run_dir)})
