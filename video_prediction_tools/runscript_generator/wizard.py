"""Front ends of the runscript generator and the generation itself.

Two prompters answer the questions of a step (:mod:`.steps`):

* :class:`InteractivePrompter` — questionary prompts: select lists for known choices, text with validation that
  re-asks (the reason below the question, wrapped to the terminal width), defaults; ``help`` shows guidance over
  several lines; the previous question is asked again by ``back`` at a text question, the "« back" choice of a
  menu, or Ctrl-B at any question (lists, ticks and yes/no included);
  JSON contents shown first ("use as is" or edit in ``$EDITOR``, validated, re-opened or aborted on error; an
  editor exiting with an error aborts);
* :class:`AnswersPrompter` — every answer from a YAML/JSON mapping (``--answers``); an invalid answer, a key no
  question asks for (or one of the other mode: ``slurm`` without SLURM, ``mpi_processes`` with it) or an unfilled
  ``${...}`` placeholder is a :class:`UserError` naming the question; a missing answer takes the offered default
  (listed in the output) or, without one, is an error. Replaying a saved ``<runscript>.answers.yaml`` keeps its
  ``exp_id`` (``--new-run``: a new one).

Example (what ``env_setup/generate_runscript.py`` runs)::

    python env_setup/generate_runscript.py --venv_path dev                       # interactive
    python env_setup/generate_runscript.py --venv_path dev --step preprocess2 \\
        --answers preprocess2.yaml --dry-run                                     # print, write nothing

An answers file holds the question keys, e.g. for ``preprocess2``::

    step: preprocess2
    experiment: era5-Y2017-2017M01to03-12x8-4200N0300E-2t_tcc_t_850
    sequence_length: 24
    mpi_processes: 2                       # without SLURM
    slurm: {profile: generic, ntasks: 2}   # with SLURM (any key of profiles.SLURM_KEYS)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..utils.errors import UserError
from ..utils.settings import read_settings, resolve_venv
from . import checks
from .profiles import SLURM_KEYS, known_profiles, slurm_defaults
from .render import Plan, render_runscript, write_plan
from .moving_mnist_steps import ALL_STEP_NAMES, DATASETS, ask_dataset, steps_of
from .steps import STEPS, Context, Step, next_step

Parser = Callable[[str], Any]


class GoBack(Exception):
    """The user asked for the previous question (``back`` typed, the "« back" choice of a menu, or Ctrl-B)."""


#: the last choice of a select menu when there is a previous question to go back to
BACK_CHOICE = "« back"
#: the key that asks the previous question again at every question (lists, yes/no and text alike)
BACK_KEY = "c-b"
BACK_HINT = "Ctrl-B: previous question"


def _set(answers: dict, key: str, value: Any) -> None:
    """Record ``value`` under a dotted key (``slurm.ntasks`` → ``answers["slurm"]["ntasks"]``)."""
    *parents, last = key.split(".")
    for parent in parents:
        answers = answers.setdefault(parent, {})
    answers[last] = value


def _get(answers: dict, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(answers, dict) or part not in answers:
            return None
        answers = answers[part]
    return answers


def _as_text(value: Any, separator: str = ",") -> str:
    """An answer given as a list (``[2017, 2018]``) is read as the text a user would type (``2017,2018``)."""
    if isinstance(value, (list, tuple)):
        return separator.join(str(item) for item in value)
    return str(value)


def _strip_comment_lines(text: str) -> str:
    """Lines starting with '#' are notes for the editing user (as in the original templates), not JSON."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _validated_json(text: str, what: str, validate: Callable[[Any, Path], None]) -> Any:
    """Parse and validate JSON text; the validator gets the content and a file holding it."""
    content = checks.parse_json_text(_strip_comment_lines(text), what)
    with tempfile.TemporaryDirectory(prefix="ambs-json-") as tmp:
        path = Path(tmp) / "content.json"
        path.write_text(json.dumps(content, indent=2))
        validate(content, path)
    return content


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
        value = _get(self.given, key)
        if value is None:
            if default is None:
                self._fail(key, message, "no answer given")
            self.defaulted.append(key)
            return default
        return value

    def text(self, key: str, message: str, parse: Parser, default: str | None = None, guidance: str = "",
             separator: str = ",") -> Any:
        raw = _as_text(self._raw(key, message, default), separator)
        try:
            value = parse(raw)
        except UserError as err:
            self._fail(key, message, str(err))
        _set(self.answers, key, raw)
        return value

    def select(self, key: str, message: str, choices: Sequence[str], default: str | None = None) -> str:
        raw = _as_text(self._raw(key, message, default))
        if raw not in choices:
            self._fail(key, message, f"{raw!r} is not one of: {', '.join(choices) or '(none found)'}")
        _set(self.answers, key, raw)
        return raw

    def checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str] = ()) -> list[str]:
        raw = self._raw(key, message, list(default) or None)
        items = raw if isinstance(raw, list) else [item.strip() for item in str(raw).split(",") if item.strip()]
        unknown = [str(item) for item in items if item not in choices]
        if unknown or not items:
            self._fail(key, message, f"expected a list among: {', '.join(choices)}; not found: "
                                     f"{', '.join(unknown) or '(empty list)'}")
        _set(self.answers, key, list(items))
        return list(items)

    def confirm(self, key: str, message: str, default: bool) -> bool:
        raw = self._raw(key, message, default)
        if isinstance(raw, str) and raw.strip().lower() in ("yes", "y", "true", "1", "no", "n", "false", "0"):
            raw = raw.strip().lower() in ("yes", "y", "true", "1")
        if not isinstance(raw, bool):
            self._fail(key, message, f"expected true or false, got {raw!r}")
        _set(self.answers, key, raw)
        return raw

    def edit_json(self, key: str, what: str, offered: str, validate: Callable[[Any, Path], None],
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
            content = _validated_json(text, what, validate)
        except UserError as err:
            self._fail(key, what, str(err))
        _set(self.answers, key, content)
        return content

    def info(self, message: str) -> None:
        print(message, file=sys.stderr)


USE_AS_IS, EDIT = "use as is", "edit in $EDITOR"


def _terminal_output():
    """The terminal's prompt_toolkit output, without cursor-position requests. A terminal that does not answer
    them in time (a pseudo-terminal driven by a script, some emulators, a slow link) made prompt_toolkit print a
    warning into the dialogue and draw the question once more, so that a rejected answer showed its question again;
    without them the reason for a rejection appears right below the question rather than at the bottom of the
    screen."""
    from prompt_toolkit.output import create_output

    output = create_output()
    output.enable_cpr = False
    return output


class InteractivePrompter:
    """questionary prompts; ``input``/``output`` (prompt_toolkit objects) make it testable through a pipe."""

    interactive = True

    def __init__(self, input=None, output=None):  # noqa: A002 - the names questionary uses
        self.io = {key: value for key, value in (("input", input), ("output", output or _terminal_output()))
                   if value is not None}
        self.answers: dict[str, Any] = {}
        #: ``(key, value, saved answer)`` of the questions answered so far (dataset and step menus included), in order
        self.history: list[tuple[str, Any, Any]] = []
        #: after ``back``: the answers to give again without asking
        self.replay: list[tuple[str, Any, Any]] = []
        #: the answers given before going back, offered as defaults when their questions come again
        self.previous: dict[str, Any] = {}

    def _remember(self, key: str, ask: Callable[[], Any]) -> Any:
        """Answer from the replay after ``back`` (while the same questions come), else ask; record the answer."""
        if self.replay:
            replayed_key, value, saved = self.replay[0]
            if replayed_key == key:
                self.history.append(self.replay.pop(0))
                _set(self.answers, key, saved)
                return value
            self.replay = []  # another question than before: ask from here on
        start = len(self.history)
        value = ask()
        del self.history[start:]  # questions asked inside this one (e.g. "use as is / edit") are part of it
        self.history.append((key, value, _get(self.answers, key)))
        return value

    def _ask(self, question) -> Any:
        """Ask a questionary ``question``; where there is a previous question, Ctrl-B ends it with :class:`GoBack`.
        A validation error is shown in full below the question (prompt_toolkit's own line is cut at the terminal
        width)."""
        from prompt_toolkit.filters import to_filter
        from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
        from prompt_toolkit.layout import Window

        app = question.application
        if self.history:
            bindings = KeyBindings()

            @bindings.add(BACK_KEY, eager=True)
            def _back(event):
                event.app.exit(exception=GoBack())

            app.key_bindings = merge_key_bindings([app.key_bindings, bindings])
        for container in app.layout.walk():
            text = getattr(getattr(container, "content", None), "text", None)
            if isinstance(container, Window) and "ValidationToolbar" in getattr(text, "__qualname__", ""):
                container.height, container.wrap_lines = None, to_filter(True)
        return question.unsafe_ask()

    def _hint(self, hint: str) -> str:
        """A question's key hint, with Ctrl-B where there is a previous question."""
        return f"({hint}; {BACK_HINT})" if self.history else f"({hint})"

    def go_back(self) -> None:
        """Ask the previous question again (its old answer as the default); the ones before it are replayed."""
        key, _, saved = self.history.pop()
        self.previous[key] = saved
        self.replay, self.history, self.answers = self.history, [], {}

    def text(self, key: str, message: str, parse: Parser, default: str | None = None, guidance: str = "",
             separator: str = ",") -> Any:
        return self._remember(key, lambda: self._text(key, message, parse, default, guidance))

    def _text(self, key: str, message: str, parse: Parser, default: str | None, guidance: str) -> Any:
        import questionary

        if isinstance(self.previous.get(key), str):
            default = self.previous[key]

        def asks_help(text: str) -> bool:
            return text.strip().lower() in ("help", "?")

        def asks_back(text: str) -> bool:
            return text.strip().lower() in ("back", "<")

        def validate(text: str):
            if asks_help(text) or asks_back(text):
                return True
            try:
                parse(text)
            except UserError as err:
                return str(err)
            return True

        while True:
            raw = self._ask(questionary.text(
                message, default=default or "", validate=validate, **self.io,
                instruction="(help: guidance, back: previous question)" if self.history else "(help: guidance)"))
            if asks_back(raw):
                if self.history:
                    raise GoBack
                self.info("This is the first question; Ctrl-C leaves (nothing is written).")
            elif asks_help(raw):
                self.info(guidance or message, wrap=True)  # over several lines, then the question again
            else:
                break
        _set(self.answers, key, raw)
        return parse(raw)

    def select(self, key: str, message: str, choices: Sequence[str], default: str | None = None) -> str:
        return self._remember(key, lambda: self._select(key, message, choices, self.previous.get(key, default)))

    def _select(self, key: str, message: str, choices: Sequence[str], default: str | None) -> str:
        import questionary

        if not choices:
            raise UserError(f"nothing to choose for: {message}")
        back = [questionary.Separator(), BACK_CHOICE] if self.history else []
        answer = self._ask(questionary.select(message, choices=[*choices, *back],
                                              default=default if default in choices else None,
                                              instruction=self._hint("arrow keys, Enter"), **self.io))
        if answer == BACK_CHOICE:
            raise GoBack
        _set(self.answers, key, answer)
        return answer

    def checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str] = ()) -> list[str]:
        return self._remember(key, lambda: self._checkbox(key, message, choices,
                                                          self.previous.get(key) or default))

    def _checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str]) -> list[str]:
        import questionary

        answer = self._ask(questionary.checkbox(
            message, choices=[questionary.Choice(choice, checked=choice in default) for choice in choices],
            validate=lambda chosen: bool(chosen) or "choose at least one (space toggles)",
            instruction=self._hint("space: tick, a: all, i: invert, Enter"), **self.io))
        _set(self.answers, key, answer)
        return answer

    def confirm(self, key: str, message: str, default: bool) -> bool:
        return self._remember(key, lambda: self._confirm(key, message, self.previous.get(key, default)))

    def _confirm(self, key: str, message: str, default: bool) -> bool:
        import questionary

        answer = self._ask(questionary.confirm(message, default=default, **self.io,
                                               instruction=self._hint("Y/n" if default else "y/N") + " "))
        _set(self.answers, key, answer)
        return answer

    def edit_json(self, key: str, what: str, offered: str, validate: Callable[[Any, Path], None],
                  name: str = "") -> Any:
        self.previous.pop(key, None)  # going back to an edited content offers the template again
        return self._remember(key, lambda: self._edit_json(key, what, offered, validate, name))

    def _edit_json(self, key: str, what: str, offered: str, validate: Callable[[Any, Path], None],
                   name: str = "") -> Any:
        """Show the offered content and ask whether to use it as is or edit it in $EDITOR; an edit is re-opened
        until it is valid, declining to re-open or an editor that fails (vim's ``:cq``) aborts (nothing written)."""
        self.info(f"Offered {what}:\n{_strip_comment_lines(offered).strip()}")
        try:
            valid_offer = _validated_json(offered, what, validate)
        except UserError as err:
            self.info(f"The offered {what} does not fit the data: {err}")
            valid_offer = None
        if valid_offer is not None and self.select(f"{key}_how", f"Use this {what}?",
                                                   [USE_AS_IS, EDIT], default=USE_AS_IS) == USE_AS_IS:
            self.answers.pop(f"{key}_how", None)
            _set(self.answers, key, valid_offer)
            return valid_offer
        self.answers.pop(f"{key}_how", None)
        editor = shlex.split(os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi")
        tmp_dir = Path(tempfile.mkdtemp(prefix="ambs-edit-"))
        try:
            path = tmp_dir / ((name or key).replace("_template", "") or "content.json")
            path.write_text(offered)
            while True:
                self.info(f"*** Please configure the {what} in {' '.join(editor)} ***")
                if shutil.which(editor[0]) is None and not Path(editor[0]).is_file():
                    raise UserError(f"editor {editor[0]!r} not found; set $EDITOR")
                status = subprocess.run([*editor, str(path)], check=False).returncode
                if status != 0:
                    raise UserError(f"editor {editor[0]} ended with exit status {status} while editing the {what}; "
                                    f"aborted, nothing was written")
                try:
                    content = _validated_json(path.read_text(), what, validate)
                    break
                except UserError as err:
                    self.info(f"Invalid {what}: {err}")
                    if not self.confirm(f"{key}_reopen", "Open the editor again (no: abort, nothing is written)?",
                                        True):
                        raise UserError(f"{what} not valid; aborted, nothing was written") from None
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        self.answers.pop(f"{key}_reopen", None)
        _set(self.answers, key, content)
        return content

    def info(self, message: str, wrap: bool = False) -> None:
        """A note between questions (on the prompts' output); ``wrap``: fitted to the terminal width."""
        from prompt_toolkit import print_formatted_text

        if wrap:
            columns = self.io["output"].get_size().columns if "output" in self.io else \
                shutil.get_terminal_size().columns
            width = max(40, columns - 4)
            message = "\n".join(textwrap.fill(line, width, initial_indent="  ", subsequent_indent="  ")
                                 for line in message.splitlines())
        if "output" in self.io:
            print_formatted_text(message, output=self.io["output"])
        else:
            print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- resources
_SLURM_PARSERS: dict[str, Parser] = {
    "account": lambda t: checks.slurm_word(t, "account"),
    "partition": lambda t: checks.slurm_word(t, "partition"),
    "nodes": lambda t: checks.parse_int(t, "SLURM nodes", 1),
    "ntasks": lambda t: checks.parse_int(t, "SLURM ntasks", 1),
    "cpus_per_task": lambda t: checks.parse_int(t, "SLURM cpus-per-task", 1),
    "time": checks.slurm_time,
    "gpus": lambda t: checks.parse_int(t, "GPUs per node", 0),
    "mail_user": lambda t: checks.slurm_word(t, "mail user"),
    "mail_type": checks.slurm_mail_type,
    "srun_options": checks.srun_options,
    "extra": checks.slurm_extra,
}


def _defaulted(key: str, value: Any) -> str:
    return f"{key}=" + ("(the offered content)" if isinstance(value, dict) else _as_text(value))


def ask_slurm(p, step: Step) -> dict[str, Any]:
    """SLURM settings: a site profile's defaults, each overridable (answers file: ``slurm: {profile:, <key>:}``)."""
    profile = p.select("slurm.profile", "SLURM site profile:", known_profiles(), default="generic")
    defaults = slurm_defaults(profile, step.name)
    summary = ", ".join(f"{key}={_as_text(defaults[key])}" for key in SLURM_KEYS if defaults.get(key) not in ("", []))
    customise = not p.interactive or p.confirm("slurm.customise", f"SLURM settings: {summary}. Change them?", False)
    p.answers.get("slurm", {}).pop("customise", None)
    settings = dict(defaults)
    if customise:
        for key in SLURM_KEYS:
            separator = "; " if key == "extra" else ","
            settings[key] = p.text(f"slurm.{key}", f"SLURM {key}:", _SLURM_PARSERS[key],
                                   default=_as_text(defaults[key], separator), separator=separator,
                                   guidance="extra: '; '-separated #SBATCH options like --exclusive" if key == "extra"
                                   else "")
    settings["extra"] = checks.slurm_extra(settings["extra"])
    return settings


def ask_resources(p, ctx: Context, step: Step, result) -> dict[str, Any]:
    """SLURM settings, or the MPI processes of a step without SLURM (a warning when there are more than cores
    here or months to share out)."""
    if ctx.hpc:
        return {"slurm": ask_slurm(p, step), "nprocs": 1}
    nprocs = 1
    if step.mpi:
        cores = len(os.sched_getaffinity(0))
        nprocs = p.text("mpi_processes", f"Number of MPI processes (mpiexec -n N; months are shared out; "
                                         f"{cores} cores here):",
                        lambda t: checks.parse_int(t, "number of MPI processes", 1), default="2")
        months = len(result.variables.get("years", [1])) * len(result.variables.get("months", [])) or None
        if nprocs > cores:
            p.info(f"Warning: {nprocs} MPI processes on {cores} cores here; they will share cores.")
        if months is not None and nprocs > months:
            p.info(f"Warning: {nprocs} MPI processes for {months} month(s); {nprocs - months} will have no month.")
    return {"slurm": {}, "nprocs": nprocs}


# ---------------------------------------------------------------------------------------------------- generation
def _offered_step(ctx: Context, steps: dict[str, Step]) -> str:
    """The step the menu offers: for ERA5 the first whose outputs are not there yet, else the dataset's first."""
    if steps is STEPS:
        return next_step(ctx.base_dir)
    return next(iter(steps))


def generate(ctx: Context, step_name: str, p, dry_run: bool = False, overwrite: bool = False,
             steps: dict[str, Step] = STEPS) -> Plan:
    """Ask the step's questions, render its runscript and (unless ``dry_run``) write it with its answers;
    ``steps``: those of the chosen dataset. A :class:`GoBack` of the interactive prompter goes to the caller,
    which asks the questions again from the dataset on (answered from the prompter's history up to the previous
    question)."""
    step = steps[step_name]
    result = step.ask(p, ctx)
    resources = ask_resources(p, ctx, step, result)
    if not p.interactive:
        p.check_all_used(ctx.hpc)
        defaulted = [key for key in p.defaulted if _get(p.answers, key) is not None]  # not those set aside again
        if defaulted:
            print(f"Defaults used for answers the file does not give: "
                  f"{', '.join(_defaulted(key, _get(p.answers, key)) for key in defaulted)} (saved with the "
                  f"runscript's answers)", file=sys.stderr)
    runscript = ctx.runscript_dir / result.runscript_name
    log_prefix = runscript.with_suffix("")
    if ctx.hpc:
        checks.sbatch_path(log_prefix)
    if not dry_run and runscript.exists() and not overwrite and p.interactive:
        overwrite = p.confirm("overwrite", f"{runscript} exists. Replace it?", False)
        p.answers.pop("overwrite", None)
        if not overwrite:
            raise UserError(f"runscript {runscript} kept; nothing was written")
    variables = dict(step=step.name, hpc=ctx.hpc, mpi=step.mpi, generated=f"{ctx.now:%Y-%m-%d %H:%M:%S}",
                     runscript=runscript, answers_file=runscript.with_name(runscript.name + ".answers.yaml"),
                     venv_dir=ctx.venv_dir, container=ctx.settings.container or "",
                     wrapper=Path(ctx.settings.repo_root) / "env_setup" / "wrapper_container.sh",
                     job_name=f"ambs_{step.name}", log_prefix=log_prefix, **resources, **result.variables)
    answers = {"step": step.name, **p.answers}
    if result.derived:
        answers["derived"] = result.derived
    plan = Plan(runscript=runscript, text=render_runscript(step.template, variables), answers=answers,
                json_files=result.json_files)
    if dry_run:
        print(plan.text, end="")
        for path, content in plan.json_files.items():
            print(f"# --- {path} ---\n# " + "\n# ".join(json.dumps(content, indent=2).splitlines()))
        return plan
    write_plan(plan, overwrite=overwrite)
    print(f"Runscript written: {runscript}\nAnswers saved: {plan.answers_file}\n"
          f"Run it with: {'sbatch' if ctx.hpc else 'bash'} {shlex.quote(str(runscript))}")
    return plan


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_runscript.py",
        description="Generate the runscript of one AMBS workflow step, asking step by step (or from --answers).",
        epilog="Example: python env_setup/generate_runscript.py --venv_path dev --step train")
    parser.add_argument("--venv_path", "-venv", required=True,
                        help="virtual environment made by env_setup/create_env.sh: a name under virtual_envs/ "
                             "or a path")
    parser.add_argument("--step", choices=ALL_STEP_NAMES, help="workflow step (skips the step question)")
    parser.add_argument("--dataset", choices=list(DATASETS),
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


def main(argv: Sequence[str] | None = None, input=None, output=None) -> int:  # noqa: A002
    """Entry point of ``env_setup/generate_runscript.py``; ``input``/``output`` drive the prompts in tests."""
    args = build_parser().parse_args(argv)
    # a module that does import TensorFlow (a hyper-parameter outside the model's template) must not print its
    # start-up log lines into the dialogue
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ctx = make_context(args)
    if args.answers:
        given, derived = load_answers(args.answers)
        if not args.new_run:
            ctx.replayed_exp_id = derived.get("exp_id")
        step = args.step or given.get("step")
        if step is None:
            raise UserError(f"answers file {args.answers} has no 'step' and --step was not given")
        if step not in ALL_STEP_NAMES or (args.step and given.get("step", step) != args.step):
            raise UserError(f"answers file {args.answers}: step {given.get('step')!r} does not match "
                            f"--step {args.step!r} (known steps: {', '.join(ALL_STEP_NAMES)})")
        prompter = AnswersPrompter({k: v for k, v in given.items() if k != "step"}, args.answers)
    else:
        if input is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UserError("the wizard needs a terminal: run it in one, or answer every question from a file with "
                            "--answers <file.yaml> (see --help; each runscript's answers are saved as "
                            "<runscript>.answers.yaml)")
        prompter = InteractivePrompter(input=input, output=output)
        prompter.info("AMBS runscript generator. Enter takes the offered answer, 'help' shows guidance, 'back' (in "
                      f"menus {BACK_CHOICE}, at every question Ctrl-B) asks the previous question again, Ctrl-C "
                      f"leaves (nothing is written).", wrap=True)
    try:
        while True:
            try:
                steps = steps_of(ask_dataset(prompter, args.dataset, step if args.answers else args.step))
                if not args.answers:
                    step = args.step or prompter.select(
                        "step", "Workflow step for which a runscript should be created (the first not done yet is "
                                "offered):", list(steps), default=_offered_step(ctx, steps))
                    prompter.answers.pop("step", None)
                generate(ctx, step, prompter, dry_run=args.dry_run, overwrite=args.overwrite, steps=steps)
                break
            except GoBack:  # the earlier questions are answered again from the history, the previous one asked
                prompter.go_back()
    except (KeyboardInterrupt, EOFError):
        print("\nAborted: nothing was written.", file=sys.stderr)
        return 130
    return 0

