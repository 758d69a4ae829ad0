"""The answers-file front end of the runscript generator (``--answers``): every question answered from a mapping
read from a YAML or JSON file.

An invalid answer, a key no question asks for (or one of the other mode: ``slurm`` without SLURM,
``mpi_processes`` with it) or an unfilled ``${...}`` placeholder is a :class:`UserError` naming the question; a
missing answer takes the offered default (listed in the output) or, without one, is an error. A saved
``<runscript>.answers.yaml`` holds the answers and, under ``derived``, values the generation computed (the
``exp_id`` of a training run, so that replaying it regenerates the same runscript).

Example (an answers file for ``preprocess2``)::

    step: preprocess2
    experiment: era5-Y2017-2017M01to03-12x8-4200N0300E-2t_tcc_t_850
    sequence_length: 24
    mpi_processes: 2                       # without SLURM
    slurm: {profile: generic, ntasks: 2}   # with SLURM (any key of profiles.SLURM_KEYS)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..utils.errors import UserError
from .prompter import JsonValidator, Parser, as_text, get_answer, set_answer, validated_json


def _defaulted(key: str, value: Any) -> str:
    return f"{key}=" + ("(the offered content)" if isinstance(value, dict) else as_text(value))


class AnswersPrompter:
    """Answers every question from a mapping read from a YAML/JSON file."""

    interactive = False

    def __init__(self, given: dict[str, Any], source: str | Path):
        self.given = given
        self.source = Path(source)
        self.answers: dict[str, Any] = {}
        self.asked: set[str] = set()
        #: keys the file does not answer and whose offered default was taken (listed in the output)
        self.defaulted: list[str] = []

    def finish(self, hpc: bool) -> None:
        """Name an answer no question took (:meth:`check_all_used`), list the defaults taken for the answers
        the file does not give."""
        self.check_all_used(hpc)
        defaulted = [key for key in self.defaulted if get_answer(self.answers, key) is not None]  # not set aside
        if defaulted:
            print(f"Defaults used for answers the file does not give: "
                  f"{', '.join(_defaulted(key, get_answer(self.answers, key)) for key in defaulted)} (saved with "
                  f"the runscript's answers)", file=sys.stderr)

    def where_to_write(self, runscript: Path) -> tuple[Path, bool]:
        return runscript, False  # replacing needs --overwrite

    def info(self, message: str, wrap: bool = False) -> None:
        print(message, file=sys.stderr)

    def check_all_used(self, hpc: bool) -> None:
        """An answer no question asked for is most likely a typo, or belongs to the other mode (``slurm:`` without
        SLURM, ``mpi_processes`` with it): name it rather than ignore it."""
        other_mode = {"mpi_processes": "is for runscripts without SLURM (with SLURM set slurm: {ntasks: N})",
                      "slurm": "is for SLURM runscripts (this venv is set up without SLURM; give --hpc or "
                               "mpi_processes)"}
        for key, why in other_mode.items():
            if key in self.given and key not in self.asked and not any(a.startswith(key + ".") for a in self.asked):
                raise UserError(f"answers file {self.source}: '{key}' {why}")
        def keys(mapping: dict, prefix: str = ""):
            for key, value in mapping.items():
                dotted = f"{prefix}{key}"
                if dotted in self.asked:
                    continue
                if isinstance(value, dict) and any(a.startswith(dotted + ".") for a in self.asked):
                    yield from keys(value, dotted + ".")
                else:
                    yield dotted

        unused = list(keys(self.given))
        if unused:
            raise UserError(f"answers file {self.source}: no question has the key(s) {', '.join(unused)}; "
                            f"asked: {', '.join(sorted(self.asked))}")

    def _fail(self, key: str, message: str, reason: str):
        raise UserError(f"answers file {self.source}: '{key}' ({message.rstrip(':')}): {reason}")

    def _raw(self, key: str, message: str, default: Any) -> Any:
        self.asked.add(key)
        value = get_answer(self.given, key)
        if value is None:
            if default is None:
                self._fail(key, message, "no answer given")
            self.defaulted.append(key)
            return default
        return value

    def text(self, key: str, message: str, parse: Parser, default: str | None = None, guidance: str = "",
             separator: str = ",") -> Any:
        raw = as_text(self._raw(key, message, default), separator)
        try:
            value = parse(raw)
        except UserError as err:
            self._fail(key, message, str(err))
        set_answer(self.answers, key, raw)
        return value

    def select(self, key: str, message: str, choices: Sequence[str], default: str | None = None,
               guidance: str = "") -> str:
        raw = as_text(self._raw(key, message, default))
        if raw not in choices:
            self._fail(key, message, f"{raw!r} is not one of: {', '.join(choices) or '(none found)'}")
        set_answer(self.answers, key, raw)
        return raw

    def checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str] = ()) -> list[str]:
        raw = self._raw(key, message, list(default) or None)
        items = raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",") if item.strip()]
        unknown = [str(item) for item in items if item not in choices]
        if unknown or not items:
            self._fail(key, message, f"expected a list among: {', '.join(choices)}; not found: "
                                     f"{', '.join(unknown) or '(empty list)'}")
        set_answer(self.answers, key, list(items))
        return list(items)

    def confirm(self, key: str, message: str, default: bool, guidance: str = "") -> bool:
        raw = self._raw(key, message, default)
        if isinstance(raw, str) and raw.strip().lower() in ("yes", "y", "true", "1", "no", "n", "false", "0"):
            raw = raw.strip().lower() in ("yes", "y", "true", "1")
        if not isinstance(raw, bool):
            self._fail(key, message, f"expected true or false, got {raw!r}")
        set_answer(self.answers, key, raw)
        return raw

    def edit_json(self, key: str, what: str, offered: str, validate: JsonValidator,
                  name: str = "") -> Any:
        """The content is the answer itself (a mapping), ``template`` (the offered content, also used when the key
        is missing) or the path of a JSON file (relative to the answers file)."""
        raw = self._raw(key, what, "template")
        if raw == "template":
            text = offered
        elif isinstance(raw, str):
            path = (self.source.parent / raw).expanduser()
            if not path.is_file():
                self._fail(key, what, f"JSON file {path} does not exist")
            text = path.read_text()
        else:
            text = json.dumps(raw)
        try:
            content = validated_json(text, what, validate)
        except UserError as err:
            self._fail(key, what, str(err))
        set_answer(self.answers, key, content)
        return content


def _placeholders(value: Any, key: str = ""):
    """``(key, text)`` of every answer still holding a ``${...}`` placeholder (an unfilled template)."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _placeholders(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _placeholders(item, key)
    elif isinstance(value, str) and "${" in value:
        yield key, value


def load_answers(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answers of a YAML/JSON file and its ``derived`` section (values a generation computed and saved)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"answers file {path} not found")
    try:
        given = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise UserError(f"answers file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{' '.join(str(err).split())}")
    if not isinstance(given, dict):
        raise UserError(f"answers file {path} must hold a mapping of question keys to answers")
    unfilled = list(_placeholders(given))
    if unfilled:
        raise UserError(f"answers file {path}: '{unfilled[0][0]}' holds the unfilled placeholder "
                        f"{unfilled[0][1]!r}; replace it by a value")
    derived = given.pop("derived", None)
    return given, derived if isinstance(derived, dict) else {}
