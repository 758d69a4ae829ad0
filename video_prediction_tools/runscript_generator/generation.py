"""Generating one runscript: a step's questions (through any :class:`.prompter.Prompter`), then rendering
(:func:`plan_runscript`, no question asked) and writing (:func:`emit`: the runscript, its answers file and its
JSON files, or with ``dry_run`` only printed).

Example::

    from video_prediction_tools.runscript_generator.generation import generate
    plan = generate(ctx, STEPS["preprocess2"], prompter, dry_run=True)   # prints the runscript, writes nothing
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

from . import checks
from .base import Context, Step, StepResult
from .render import Plan, answers_path, render_runscript, write_plan
from .resources import ask_resources


def plan_runscript(ctx: Context, step: Step, result: StepResult, resources: dict[str, Any],
                   answers: dict[str, Any]) -> Plan:
    """The runscript of ``step`` for its ``result`` and ``resources`` (SLURM settings or MPI processes), with the
    ``answers`` to save next to it (the step and the values derived for later steps added)."""
    runscript = ctx.runscript_dir / result.runscript_name
    variables = dict(step=step.name, hpc=ctx.hpc, mpi=step.mpi, generated=f"{ctx.now:%Y-%m-%d %H:%M:%S}",
                     runscript=runscript, answers_file=answers_path(runscript), venv_dir=ctx.venv_dir,
                     container=ctx.settings.container or "",
                     wrapper=Path(ctx.settings.repo_root) / "env_setup" / "wrapper_container.sh",
                     job_name=f"ambs_{step.name}", log_prefix=runscript.with_suffix(""), **resources,
                     **result.variables)
    saved = {"step": step.name, **answers}
    if result.derived:
        saved["derived"] = result.derived
    return Plan(runscript=runscript, text=render_runscript(step.template, variables), answers=saved,
                json_files=result.json_files)


def renamed(result: StepResult, name: str) -> StepResult:
    """``result`` written as runscript ``name``: its JSON files, named ``<runscript stem>_<what>.json``, follow it
    (those of the runscript kept under the old name stay as its runscript reads them)."""
    old, new = Path(result.runscript_name).stem, Path(name).stem
    moved = {path: path.with_name(new + path.name[len(old):]) for path in result.json_files
             if path.name.startswith(old + "_")}
    return dataclasses.replace(
        result, runscript_name=name,
        variables={key: moved.get(value, value) if isinstance(value, Path) else value
                   for key, value in result.variables.items()},
        json_files={moved.get(path, path): content for path, content in result.json_files.items()})


def emit(plan: Plan, hpc: bool, dry_run: bool = False, overwrite: bool = False) -> None:
    """Write the plan's files (an existing runscript replaced only with ``overwrite``) and say how to run it; with
    ``dry_run`` print the runscript and its JSON files instead."""
    if dry_run:
        print(plan.text, end="")
        for path, content in plan.json_files.items():
            print(f"# --- {path} ---\n# " + "\n# ".join(json.dumps(content, indent=2).splitlines()))
        return
    write_plan(plan, overwrite=overwrite)
    print(f"Runscript written: {plan.runscript}\nAnswers saved: {plan.answers_file}\n"
          f"Run it with: {'sbatch' if hpc else 'bash'} {shlex.quote(str(plan.runscript))}")


def generate(ctx: Context, step: Step, p, dry_run: bool = False, overwrite: bool = False) -> Plan:
    """Ask the step's questions and its resources, render its runscript and (unless ``dry_run``) write it with
    its answers. A :class:`.interactive.GoBack` of the interactive prompter goes to the caller, which asks the
    questions again (answered from the prompter's history up to the previous question)."""
    result = step.ask(p, ctx)
    resources = ask_resources(p, ctx, step, result)
    p.finish(ctx.hpc)
    runscript = ctx.runscript_dir / result.runscript_name
    if ctx.hpc:
        checks.sbatch_path(runscript.with_suffix(""))
    if not dry_run and runscript.exists() and not overwrite:
        runscript, overwrite = p.where_to_write(runscript)
        result = renamed(result, runscript.name)
    plan = plan_runscript(ctx, step, result, resources, p.answers)
    emit(plan, ctx.hpc, dry_run, overwrite)
    return plan
