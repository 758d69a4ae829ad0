"""The generator's workflows, one per dataset: its steps, the step the menu offers, and the dataset question.

An answers file selects the Moving MNIST workflow with ``dataset: moving_mnist`` (ERA5 is the default and is not
saved, as before Moving MNIST existed); a step that exists for one dataset only (``convert``) implies it.

Example::

    from video_prediction_tools.runscript_generator.workflows import WORKFLOWS, ask_dataset
    workflow = WORKFLOWS[ask_dataset(prompter, given=None, step="convert")]   # the Moving MNIST workflow
    workflow.offered_step(base_dir)                                           # 'convert'
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..utils.errors import UserError
from .base import Step
from .moving_mnist_steps import MNIST_STEPS
from .steps import STEPS, next_step


@dataclass(frozen=True)
class Workflow:
    """The steps of one dataset, in workflow order."""

    dataset: str
    #: what the dataset question shows for it
    label: str
    steps: dict[str, Step]
    #: the step the step menu offers for a base directory
    offered_step: Callable[[Path], str]


WORKFLOWS: dict[str, Workflow] = {
    "era5": Workflow("era5", "ERA5 reanalysis", STEPS, next_step),
    "moving_mnist": Workflow("moving_mnist", "Moving MNIST", MNIST_STEPS, lambda base_dir: next(iter(MNIST_STEPS))),
}
DEFAULT_DATASET = "era5"
#: every step name of any dataset (for the --step choices)
ALL_STEP_NAMES = list(dict.fromkeys(name for workflow in WORKFLOWS.values() for name in workflow.steps))


def dataset_of_step(step: str | None) -> str | None:
    """The dataset a step name implies when it exists for one dataset only (``convert``: Moving MNIST)."""
    having = [dataset for dataset, workflow in WORKFLOWS.items() if step in workflow.steps]
    return having[0] if len(having) == 1 else None


def ask_dataset(p, given: str | None, step: str | None) -> str:
    """The dataset: from an answers file its ``dataset`` key (default: the one ``--dataset`` or the step implies,
    else era5); interactively ``--dataset`` or the one the step implies, ERA5 for a ``--step`` both datasets
    have (the generator's behaviour before Moving MNIST), else asked. A Moving MNIST choice is saved with the
    answers, so that regenerating from them gives the same runscript."""
    implied = given or dataset_of_step(step)
    if not p.interactive:
        dataset = p.select("dataset", "Dataset:", list(WORKFLOWS), default=implied or DEFAULT_DATASET)
        if implied and dataset != implied:
            raise UserError(f"dataset {dataset} of the answers file does not match "
                            f"{'--dataset ' + given if given else 'step ' + str(step)} ({implied})")
    elif implied or step is not None:
        dataset = implied or DEFAULT_DATASET
    else:
        dataset = p.select("dataset", "Dataset (" + ", ".join(f"{key}: {workflow.label}" for key, workflow in
                                                              WORKFLOWS.items()) + "):",
                           list(WORKFLOWS), default=DEFAULT_DATASET)
    if dataset != DEFAULT_DATASET:
        p.answers["dataset"] = dataset
    else:
        p.answers.pop("dataset", None)
    steps = WORKFLOWS[dataset].steps
    if step is not None and step not in steps:
        raise UserError(f"step {step!r} does not exist for dataset {dataset} (its steps: {', '.join(steps)})")
    return dataset
