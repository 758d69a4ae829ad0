"""Render runscripts from the Jinja2 templates in ``templates/runscripts/`` and write a generation's files.

Every user value goes through the ``q`` filter (always single-quoted, as :func:`shlex.quote` does for unsafe
strings), lists through ``qlist``, so paths and ids holding blanks, quotes, ``$()``, backticks or ``;`` stay inert
(the one exception: the SLURM job set-up lines, shell the user wrote to run as written, each checked by
``bash -n``); values written into comments go through ``oneline`` (a line break would end the comment), paths
there through ``qline`` (also quoted, so that a path copied from a comment runs no ``$(...)``). Undefined
template variables are errors (``StrictUndefined``). Writing is all-or-nothing: files are written atomically,
what was written is removed again when a later file fails, and an existing runscript is never replaced unless
asked.

Example::

    from video_prediction_tools.runscript_generator.render import render_runscript
    text = render_runscript("preprocess_data_era5_step2.sh.j2", {...template variables...})
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from ..utils.errors import UserError
from ..utils.io import write_json, write_text
from ..utils.settings import templates_dir


def _quote(value) -> str:
    """Always single-quoted (unlike shlex.quote, so that e.g. MODE='test' is not read as a command by linters)."""
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


def _qlist(values) -> str:
    return " ".join(_quote(value) for value in values)


def _qwords(text: str) -> str:
    """Split a string of options (e.g. ``--mpi=pmi2 --cpu-bind=none``) into quoted words."""
    return _qlist(shlex.split(str(text)))


def _oneline(value) -> str:
    """For comments: a value with line breaks would end the comment, so they become blanks."""
    return " ".join(str(value).splitlines())


def _qline(value) -> str:
    """For paths in comments: quoted as well, so that a copied line runs no ``$(...)``."""
    return _quote(_oneline(value))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / "runscripts")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(q=_quote, qlist=_qlist, qwords=_qwords, oneline=_oneline, qline=_qline)
    return env


def render_runscript(template: str, variables: dict[str, Any]) -> str:
    try:
        return environment().get_template(template).render(**variables)
    except jinja2.UndefinedError as err:  # a programming error in a step class: keep the traceback
        raise RuntimeError(f"template {template}: {err}") from err


@dataclass
class Plan:
    """Everything one generation writes: the runscript, its answers file and JSON files."""

    runscript: Path
    text: str
    answers: dict[str, Any]
    json_files: dict[Path, Any] = field(default_factory=dict)

    @property
    def answers_file(self) -> Path:
        return answers_path(self.runscript)


def answers_path(runscript: Path) -> Path:
    return runscript.with_name(runscript.name + ".answers.yaml")


def dump_answers(answers: dict[str, Any]) -> str:
    return yaml.safe_dump(answers, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_plan(plan: Plan, overwrite: bool = False) -> None:
    """Write the plan; on any failure remove what this call wrote."""
    if plan.runscript.exists() and not overwrite:
        raise UserError(f"runscript {plan.runscript} exists already; pass --overwrite (or confirm in the wizard) "
                        f"to replace it")
    written: list[Path] = []
    try:
        for path, content in plan.json_files.items():
            write_json(path, content)
            written.append(path)
        write_text(plan.answers_file, dump_answers(plan.answers))
        written.append(plan.answers_file)
        write_text(plan.runscript, plan.text)
        os.chmod(plan.runscript, 0o755)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
