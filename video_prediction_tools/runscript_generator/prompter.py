"""The prompter protocol: how a step of the runscript generator asks its questions, whoever answers them.

Two front ends implement it: :class:`.interactive.InteractivePrompter` (questionary prompts on a terminal) and
:class:`.answers_file.AnswersPrompter` (every answer from a YAML/JSON file, ``--answers``). Each question has a
key (dotted for nested answers: ``slurm.ntasks``); the answers given are collected in ``answers`` as the answers
file saved next to the runscript holds them, so that replaying that file asks nothing and gives the same
runscript.

Example (a step's question)::

    years = p.text("years", "Years to extract:", checks.parse_years, default="2017",
                   guidance="Comma-separated years or ranges.")
    model = p.select("model", "Model to train:", ["convLSTM", "mcnet"], default="convLSTM")
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from . import checks

#: parses a typed answer into its value, or raises UserError saying what was expected
Parser = Callable[[str], Any]
#: checks a JSON content (given also as a file holding it), or raises UserError
JsonValidator = Callable[[Any, Path], None]


class Prompter(Protocol):
    """Asks the questions of a step; each method records the answer under ``key`` in :attr:`answers`."""

    #: True for the terminal front end (questions may be asked again, menus are shown)
    interactive: bool
    #: the answers given so far, as the saved answers file holds them
    answers: dict[str, Any]

    def text(self, key: str, message: str, parse: Parser, default: str | None = None, guidance: str = "",
             separator: str = ",") -> Any:
        """A typed answer, parsed (``separator`` joins an answer given as a list)."""

    def select(self, key: str, message: str, choices: Sequence[str], default: str | None = None,
               guidance: str = "") -> str:
        """One of ``choices`` (``guidance``: what ``help`` shows besides the choices)."""

    def checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str] = ()) -> list[str]:
        """At least one of ``choices``."""

    def confirm(self, key: str, message: str, default: bool, guidance: str = "") -> bool:
        """Yes or no."""

    def edit_json(self, key: str, what: str, offered: str, validate: JsonValidator, name: str = "") -> Any:
        """A JSON content: the ``offered`` text, or one the user gives instead, valid by ``validate``."""

    def info(self, message: str, wrap: bool = False) -> None:
        """A note between questions (``wrap``: fitted to the terminal width)."""

    def finish(self, hpc: bool) -> None:
        """After the last question: the answers file names answers no question took and defaults taken."""

    def where_to_write(self, runscript: Path) -> tuple[Path, bool]:
        """Where to write a runscript whose path ``runscript`` exists already, and whether it may replace the file
        there (the terminal asks: replace, another name, or the previous question; an answers file keeps the path
        and needs ``--overwrite``)."""


def set_answer(answers: dict, key: str, value: Any) -> None:
    """Record ``value`` under a dotted key (``slurm.ntasks`` → ``answers["slurm"]["ntasks"]``)."""
    *parents, last = key.split(".")
    for parent in parents:
        answers = answers.setdefault(parent, {})
    answers[last] = value


def get_answer(answers: dict, key: str) -> Any:
    """The answer under a dotted key (None if there is none)."""
    for part in key.split("."):
        if not isinstance(answers, dict) or part not in answers:
            return None
        answers = answers[part]
    return answers


def as_text(value: Any, separator: str = ",") -> str:
    """An answer given as a list (``[2017, 2018]``) is read as the text a user would type (``2017,2018``)."""
    if isinstance(value, (list, tuple)):
        return separator.join(str(item) for item in value)
    return str(value)


def strip_comment_lines(text: str) -> str:
    """Lines starting with '#' are notes for the editing user (as in the original templates), not JSON."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def validated_json(text: str, what: str, validate: JsonValidator) -> Any:
    """Parse and validate JSON text; the validator gets the content and a file holding it."""
    content = checks.parse_json_text(strip_comment_lines(text), what)
    with tempfile.TemporaryDirectory(prefix="ambs-json-") as tmp:
        path = Path(tmp) / "content.json"
        path.write_text(json.dumps(content, indent=2))
        validate(content, path)
    return content

