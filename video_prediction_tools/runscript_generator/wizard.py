"""The command line of the runscript generator: the interactive wizard, or every answer from a file.

The dataset's workflow (:mod:`.workflows`) gives the steps; the chosen step asks its questions through a prompter
(:mod:`.interactive` or :mod:`.answers_file`); :mod:`.generation` renders and writes the runscript.

Example (what ``env_setup/generate_runscript.py`` runs)::

    python env_setup/generate_runscript.py --venv_path dev                       # interactive
    python env_setup/generate_runscript.py --venv_path dev --step preprocess2 \\
        --answers preprocess2.yaml --dry-run                                     # print, write nothing
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Sequence

from ..utils.errors import UserError
from ..utils.settings import read_settings, resolve_venv
from .answers_file import AnswersPrompter, load_answers
from .base import Context
from .generation import generate
from .interactive import BACK_CHOICE, Aborted, GoBack, InteractivePrompter
from .workflows import ALL_STEP_NAMES, WORKFLOWS, ask_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_runscript.py",
        description="Generate the runscript of one AMBS workflow step, asking step by step (or from --answers).",
        epilog="Example: python env_setup/generate_runscript.py --venv_path dev --step train")
    parser.add_argument("--venv_path", "-venv", required=True,
                        help="virtual environment made by env_setup/create_env.sh: a name under virtual_envs/ "
                             "or a path")
    parser.add_argument("--step", choices=ALL_STEP_NAMES, help="workflow step (skips the step question)")
    parser.add_argument("--dataset", choices=list(WORKFLOWS),
                        help="dataset of the workflow (default: asked, or implied by --step; era5 for a step "
                             "both have)")
    parser.add_argument("--answers", help="YAML or JSON file answering every question (no terminal needed); "
                                          "each runscript's answers are saved as <runscript>.answers.yaml")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the runscript and JSON files, write nothing")
    parser.add_argument("--hpc", action=argparse.BooleanOptionalAction, default=None,
                        help="SLURM runscript in HPC_scripts/ (--no-hpc: plain bash in no_HPC_scripts/); "
                             "default: as recorded by create_env.sh")
    parser.add_argument("--base_dir", help="base data directory (default: as recorded by create_env.sh)")
    parser.add_argument("--runscript_dir", help="where runscripts go (default: HPC_scripts/ or no_HPC_scripts/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing runscript of the same name")
    parser.add_argument("--new-run", "--new_run", dest="new_run", action="store_true",
                        help="with --answers of a saved <runscript>.answers.yaml: a new training run or comparison "
                             "(new timestamped exp_id) instead of regenerating the same runscript")
    parser.add_argument("--chain", action="store_true",
                        help="allow input that earlier generated but not yet run runscripts will produce (for "
                             "sbatch --dependency chains); their data is then checked at run time")
    return parser


def make_context(args) -> Context:
    settings = read_settings(args.venv_path)
    if args.base_dir:
        settings = dataclasses.replace(settings, base_dir=str(Path(args.base_dir).expanduser().resolve()))
    if args.hpc is not None:
        settings = dataclasses.replace(settings, hpc=args.hpc)
    if not Path(settings.base_dir).is_dir():
        raise UserError(f"base directory {settings.base_dir} does not exist (set it with create_env.sh "
                        f"-base_dir=<dir> or --base_dir)")
    runscript_dir = Path(args.runscript_dir).expanduser().resolve() if args.runscript_dir else settings.runscript_dir
    return Context(settings=settings, venv_dir=resolve_venv(args.venv_path), runscript_dir=runscript_dir,
                   hpc=settings.hpc, chain=args.chain, now=datetime.now())


def answers_prompter(args, ctx: Context) -> tuple[AnswersPrompter, str]:
    """The prompter of ``--answers`` and the step the file (or ``--step``) names; replaying a saved answers file
    keeps its run id unless ``--new-run``."""
    given, derived = load_answers(args.answers)
    if not args.new_run:
        ctx.replayed_exp_id = derived.get("exp_id")
    step = args.step or given.get("step")
    if step is None:
        raise UserError(f"answers file {args.answers} has no 'step' and --step was not given")
    if step not in ALL_STEP_NAMES or (args.step and given.get("step", step) != args.step):
        raise UserError(f"answers file {args.answers}: step {given.get('step')!r} does not match "
                        f"--step {args.step!r} (known steps: {', '.join(ALL_STEP_NAMES)})")
    return AnswersPrompter({k: v for k, v in given.items() if k != "step"}, args.answers), step


def interactive_prompter(input=None, output=None) -> InteractivePrompter:  # noqa: A002
    """The wizard's prompter (it needs a terminal unless ``input`` is given), after a line on how to use it."""
    if input is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("the wizard needs a terminal: run it in one, or answer every question from a file with "
                        "--answers <file.yaml> (see --help; each runscript's answers are saved as "
                        "<runscript>.answers.yaml)")
    prompter = InteractivePrompter(input=input, output=output)
    prompter.info("AMBS runscript generator. Enter takes the offered answer, 'help' shows guidance, 'back' (in "
                  f"menus {BACK_CHOICE}, at every question Ctrl-B) asks the previous question again, Ctrl-C "
                  f"leaves (nothing is written).", wrap=True)
    return prompter


def keeps_session(prompter, err: UserError) -> bool:
    """Whether the wizard asks the previous question again after ``err`` rather than ending: on a terminal, unless
    the user aborted on purpose or no question was answered yet. What a step finds only after an answer (no
    trained model for the chosen step, a run directory that exists, a file that cannot be written) then never
    costs the answers given so far."""
    return prompter.interactive and bool(prompter.history) and not isinstance(err, Aborted)


def main(argv: Sequence[str] | None = None, input=None, output=None) -> int:  # noqa: A002
    """Entry point of ``env_setup/generate_runscript.py``; ``input``/``output`` drive the prompts in tests."""
    args = build_parser().parse_args(argv)
    # a module that does import TensorFlow (a hyper-parameter outside the model's template) must not print its
    # start-up log lines into the dialogue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ctx = make_context(args)
    prompter, named_step = answers_prompter(args, ctx) if args.answers else \
        (interactive_prompter(input, output), args.step)
    try:
        while True:
            try:
                workflow = WORKFLOWS[ask_dataset(prompter, args.dataset, named_step)]
                step = named_step or prompter.select(
                    "step", "Workflow step for which a runscript should be created (the first not done yet is "
                            "offered):", list(workflow.steps), default=workflow.offered_step(ctx.base_dir),
                    guidance="\n".join(f"{name}: {step.title}" for name, step in workflow.steps.items()))
                prompter.answers.pop("step", None)
                generate(ctx, workflow.steps[step], prompter, dry_run=args.dry_run, overwrite=args.overwrite)
                break
            except GoBack:  # the earlier questions are answered again from the history, the previous one asked
                prompter.go_back()
            except UserError as err:
                if not keeps_session(prompter, err):
                    raise
                prompter.info(f"{err}\nThe previous question again (Ctrl-C leaves; nothing is written):", wrap=True)
                prompter.go_back()
    except (KeyboardInterrupt, EOFError):
        print("\nAborted: nothing was written.", file=sys.stderr)
        return 130
    return 0
