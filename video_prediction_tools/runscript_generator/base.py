"""What every step of the runscript generator shares: the user's set-up (:class:`Context`), a step's result
(:class:`StepResult`), the :class:`Step` base class and the questions that several steps ask (a typed run id, a
trained run and its checkpoint).

A step asks its questions through a prompter (:class:`.prompter.Prompter`: the questionary front end or an answers
file), checks every answer against what earlier steps produced (:mod:`.checks`) and returns a :class:`StepResult`.

With ``Context.chain`` set, the data of earlier steps need not exist yet (runscripts chained with
``sbatch --dependency=afterok``): a step then accepts what an earlier generated runscript will produce (read from
its saved answers) and leaves the data checks to the runscript and the step itself at run time.

Example::

    from video_prediction_tools.runscript_generator.base import Context
    ctx = Context(settings, venv_dir, runscript_dir, hpc=False)
    ctx.exp_id("ref")                        # '20240101T120000_alice_ref'
    ctx.planned("data_extraction_era5.sh")   # the values the generated extraction runscript saved
"""
from __future__ import annotations

import dataclasses
import getpass
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..utils.settings import Settings
from . import checks
from .render import answers_path

#: the checkpoint answer that lets postprocessing take the best (or newest) checkpoint of the run at run time
AUTO_CHECKPOINT = "best"


@dataclass
class Context:
    """What every step needs to know about the user's set-up."""

    settings: Settings
    venv_dir: Path
    runscript_dir: Path
    hpc: bool
    chain: bool = False
    now: datetime = field(default_factory=datetime.now)
    user: str = field(default_factory=lambda: os.environ.get("USER") or getpass.getuser())
    #: the full id saved with a replayed answers file: replaying regenerates the same runscript (same run)
    replayed_exp_id: str | None = None

    @property
    def base_dir(self) -> Path:
        return Path(self.settings.base_dir)

    def exp_id(self, typed: str) -> str:
        """``<YYYYmmddTHHMMSS>_<USER>_<typed id>``: the id of a training run, as the original named it (the
        replayed id when it ends with the typed one)."""
        if self.replayed_exp_id and self.replayed_exp_id.endswith(f"_{typed}"):
            return self.replayed_exp_id
        return f"{self.now:%Y%m%dT%H%M%S}_{self.user}_{typed}"

    def planned(self, runscript_name: str) -> dict[str, Any]:
        """The ``derived`` values saved with an earlier generated runscript (empty if there is none)."""
        path = answers_path(self.runscript_dir / runscript_name)
        if not path.is_file():
            return {}
        try:
            return (yaml.safe_load(path.read_text()) or {}).get("derived", {}) or {}
        except yaml.YAMLError:
            return {}


@dataclass
class StepResult:
    runscript_name: str
    variables: dict[str, Any]
    json_files: dict[Path, Any] = field(default_factory=dict)
    #: values computed from the answers, saved under ``derived`` in the answers file (for later steps)
    derived: dict[str, Any] = field(default_factory=dict)
    #: the months a step running over months (``Step.mpi``) shares out among its processes (None: not known yet)
    months_of_work: int | None = None


class Step:
    """One workflow step: its name (the ``--step`` choice), a title, its runscript template, and its questions."""

    name = ""
    title = ""
    template = ""
    #: runs as an MPI job over months (mpiexec -n N without SLURM)
    mpi = False

    def ask(self, p, ctx: Context) -> StepResult:
        raise NotImplementedError


def subdirs(path: Path) -> list[str]:
    """The names of the directories in ``path`` (hidden ones left out), sorted; none if it does not exist."""
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if path.is_dir() else []


def exp_id_parser(ctx: Context):
    """Typed ids become part of file names; under SLURM also of the #SBATCH log paths, which sbatch reads unquoted."""
    def parse(text: str) -> str:
        typed = checks.parse_identifier(text)
        if ctx.hpc:
            checks.sbatch_id(typed)
        return typed

    return parse


def hparams_offered(model: str, template: Path) -> str:
    """The hyper-parameters offered for ``model``: its JSON template, or (a model without one) its own defaults."""
    if template.is_file():
        return template.read_text()
    from ..models.registry import default_hparams

    return json.dumps(default_hparams(model), indent=2) + "\n"


@dataclass(frozen=True)
class ChosenRun:
    """A training run chosen for postprocessing: ``Models/<experiment>/<model>/<run>`` and its checkpoint answer."""

    base_dir: Path
    experiment: str
    model: str
    run: str
    checkpoint: str

    @property
    def run_dir(self) -> Path:
        return self.base_dir / "Models" / self.experiment / self.model / self.run

    @property
    def checkpoint_path(self) -> Path:
        """What postprocessing gets: the run directory (its best checkpoint at run time) or one checkpoint."""
        return self.run_dir if self.checkpoint == AUTO_CHECKPOINT else self.run_dir / self.checkpoint

    @property
    def results_dir(self) -> Path:
        return self.base_dir / "Results" / self.experiment / self.model / self.run

    def trained_model(self) -> str:
        """The model the run trained, from its ``options.json`` as postprocessing reads it; for a run not trained
        yet (chain mode), the model its training runscript will train (the run directory's model)."""
        from ..training.checkpoints import OPTIONS_FILE

        try:
            options = json.loads((self.run_dir / OPTIONS_FILE).read_text())
        except (OSError, ValueError):
            return self.model
        return str(options.get("model") or self.model) if isinstance(options, dict) else self.model


def trained_runs(ctx: Context, dataset: str, usable_experiment=lambda name: True) -> set[tuple[str, str, str]]:
    """``(experiment, model, run)`` of the runs that can be evaluated: the run directories under ``Models/`` whose
    experiment is usable and that hold a complete checkpoint (a run that died before its first one has nothing to
    evaluate), and in chain mode the runs that generated (not yet run) training runscripts of ``dataset`` will
    make."""
    models_root = ctx.base_dir / "Models"
    trained = {tuple(path.relative_to(models_root).parts) for path in models_root.glob("*/*/*")
               if path.is_dir() and usable_experiment(path.parent.parent.name) and checks.checkpoints(path)}
    if ctx.chain:
        for answers in ctx.runscript_dir.glob(f"train_model_{dataset}_*.sh.answers.yaml"):
            planned = ctx.planned(answers.name[: -len(".answers.yaml")])
            if planned.get("exp_id"):
                trained.add((planned["expname"], planned["model"], planned["exp_id"]))
    return trained


def unfinished_runs_note(model_dir: Path, runs: list[str]) -> str:
    """What the run question says of the ``runs`` of ``model_dir`` whose training stopped before its planned end
    (postprocessing evaluates them, with a warning)."""
    from ..training.checkpoints import training_progress

    stopped = {run: training_progress(model_dir / run) for run in runs}
    notes = [f"{run}: unfinished, trained to step {progress[0]} of {progress[1]}"
             for run, progress in stopped.items() if progress]
    return "; ".join(notes)


def choose_trained_run(p, ctx: Context, trained: set[tuple[str, str, str]], experiment_question: str,
                       checkpoint_question: str) -> ChosenRun:
    """Ask for the experiment, model, run and checkpoint among ``trained`` (:func:`trained_runs`, not empty),
    offering those of the newest run (run ids start with their time)."""
    def newest(runs) -> tuple[str, str, str]:
        return max(runs, key=lambda t: (t[2], t))

    experiment = p.select("experiment", experiment_question, sorted({t[0] for t in trained}),
                          default=newest(trained)[0])
    of_experiment = [t for t in trained if t[0] == experiment]
    model = p.select("model", "Trained model:", sorted({t[1] for t in of_experiment}),
                     default=newest(of_experiment)[1])
    runs = sorted(t[2] for t in of_experiment if t[1] == model)
    unfinished = unfinished_runs_note(ctx.base_dir / "Models" / experiment / model, runs)
    run = p.select("run", "Training run (<YYYYmmddTHHMMSS>_<USER>_<id>)" + (f" [{unfinished}]" if unfinished else "")
                   + ":", runs, default=runs[-1])
    chosen = ChosenRun(ctx.base_dir, experiment, model, run, AUTO_CHECKPOINT)
    checkpoint = p.select("checkpoint", checkpoint_question, [AUTO_CHECKPOINT] + checks.checkpoints(chosen.run_dir),
                          default=AUTO_CHECKPOINT)
    return dataclasses.replace(chosen, checkpoint=checkpoint)
