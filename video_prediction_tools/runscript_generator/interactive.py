"""The interactive front end of the runscript generator: questionary prompts on a terminal.

Select lists for known choices, text with validation that re-asks (the reason below the question, wrapped to the
terminal width), defaults; ``help`` (or ``?``) and Enter shows guidance over several lines at every question (menus,
tick lists and yes/no included); a yes/no answer (``y``/``n``) is taken with Enter, as every other answer; the
previous question is asked again by ``back`` at a text question, the "« back" choice of a menu, or Ctrl-B at any
question (a question left so is erased from the screen); JSON contents are shown first ("use as is" or edit in
``$EDITOR``, validated, re-opened or aborted on error; an editor exiting with an error aborts); an existing
runscript is replaced, kept with this one named otherwise, or the previous question asked again.

Example (``input``/``output`` drive the prompts through a pipe, as the tests do)::

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    with create_pipe_input() as pipe:
        pipe.send_text("\\r")
        prompter = InteractivePrompter(input=pipe, output=DummyOutput())
        prompter.select("model", "Model to train:", ["convLSTM", "mcnet"])   # 'convLSTM'
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

from ..utils.errors import UserError
from .prompter import JsonValidator, Parser, get_answer, set_answer, strip_comment_lines, validated_json


class GoBack(Exception):
    """The user asked for the previous question (``back`` typed, the "« back" choice of a menu, or Ctrl-B)."""


class ShowHelp(Exception):
    """``help`` (or ``?``) typed and Enter pressed at a menu, tick list or yes/no question."""


class Aborted(UserError):
    """The user ended the session on purpose (declined to re-open the editor, or the editor failed): not an answer
    to ask again."""


#: the last choice of a select menu when there is a previous question to go back to
BACK_CHOICE = "« back"
#: the key that asks the previous question again at every question (lists, yes/no and text alike)
BACK_KEY = "c-b"
BACK_HINT = "Ctrl-B: previous question"

USE_AS_IS, EDIT = "use as is", "edit in $EDITOR"
#: what typed before Enter shows a question's guidance (text questions check their whole answer)
HELP_WORDS = ("help", "?")
#: the choices when the runscript to write exists already
OTHER_NAME, REPLACE = "keep it, name this runscript otherwise", "replace it"


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
                set_answer(self.answers, key, saved)
                return value
            self.replay = []  # another question than before: ask from here on
        start = len(self.history)
        value = ask()
        del self.history[start:]  # questions asked inside this one (e.g. "use as is / edit") are part of it
        self.history.append((key, value, get_answer(self.answers, key)))
        return value

    def _ask(self, question, typed_help: bool = False) -> Any:
        """Ask a questionary ``question``; where there is a previous question, Ctrl-B ends it with :class:`GoBack`;
        with ``typed_help`` (menus, tick lists, yes/no: they take no text), Enter after ``help`` or ``?`` ends it
        with :class:`ShowHelp`. A question ended so is erased (it stays unanswered otherwise). A validation error
        is shown in full below the question (prompt_toolkit's own line is cut at the terminal width)."""
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
        from prompt_toolkit.keys import Keys

        bindings, typed = KeyBindings(), []

        def leave(event, exception: Exception) -> None:
            event.app.erase_when_done = True
            event.app.exit(exception=exception)

        if self.history:
            bindings.add(BACK_KEY, eager=True)(lambda event: leave(event, GoBack()))
        if typed_help:
            # keys no binding of the question takes (any letter but its own y/n, j/k, a/i) are collected
            bindings.add(Keys.Any)(lambda event: typed.append(event.data))
            bindings.add("enter", eager=True,
                         filter=Condition(lambda: "".join(typed).strip().lower().endswith(HELP_WORDS)))(
                lambda event: leave(event, ShowHelp()))
        app = question.application
        app.key_bindings = merge_key_bindings([app.key_bindings, bindings])
        _show_validation_errors_in_full(app)
        return question.unsafe_ask()

    def _ask_with_help(self, make_question: Callable[[], Any], guidance: str) -> Any:
        """Ask the question ``make_question`` builds; ``help`` shows ``guidance`` and asks it again."""
        while True:
            try:
                return self._ask(make_question(), typed_help=True)
            except ShowHelp:
                self.info(guidance, wrap=True)

    def _hint(self, hint: str) -> str:
        """A question's key hint, with help and (where there is a previous question) Ctrl-B."""
        return f"({hint}; help: guidance; {BACK_HINT})" if self.history else f"({hint}; help: guidance)"

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
                return self._fit(str(err))
            return True

        while True:
            instruction = "(help: guidance, back: previous question)" if self.history else "(help: guidance)"
            raw = self._ask(questionary.text(self._fit(message, instruction, len(default or "")),
                                             default=default or "", validate=validate, **self.io,
                                             instruction=instruction))
            if asks_back(raw):
                if self.history:
                    raise GoBack
                self.info("This is the first question; Ctrl-C leaves (nothing is written).")
            elif asks_help(raw):
                self.info(guidance or message, wrap=True)  # over several lines, then the question again
            else:
                break
        set_answer(self.answers, key, raw)
        return parse(raw)

    def select(self, key: str, message: str, choices: Sequence[str], default: str | None = None,
               guidance: str = "") -> str:
        return self._remember(key, lambda: self._select(key, message, choices, self.previous.get(key, default),
                                                        guidance))

    def _select(self, key: str, message: str, choices: Sequence[str], default: str | None, guidance: str) -> str:
        import questionary

        if not choices:
            raise UserError(f"nothing to choose for: {message}")
        back = [questionary.Separator(), BACK_CHOICE] if self.history else []
        default = default if default in choices else choices[0]
        hint = self._hint("arrow keys, Enter")
        answer = self._ask_with_help(
            lambda: questionary.select(self._fit(message, hint), choices=[*choices, *back],
                                       default=default, instruction=hint, **self.io),
            f"{guidance or message}\nChoices: {', '.join(choices)} (offered: {default}). Arrow keys move, Enter "
            f"chooses{'; ' + BACK_CHOICE + ' or Ctrl-B: the previous question' if back else ''}.")
        if answer == BACK_CHOICE:
            raise GoBack
        set_answer(self.answers, key, answer)
        return answer

    def checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str] = ()) -> list[str]:
        return self._remember(key, lambda: self._checkbox(key, message, choices,
                                                          self.previous.get(key) or default))

    def _checkbox(self, key: str, message: str, choices: Sequence[str], default: Sequence[str]) -> list[str]:
        import questionary

        # an empty answer is refused here, not by questionary's validation: its message is drawn in a toolbar
        # that prompt_toolkit shows only where the terminal answers cursor-position requests (see _terminal_output)
        while True:
            hint = self._hint("space: tick, a: all, i: invert, Enter")
            answer = self._ask_with_help(lambda: questionary.checkbox(
                self._fit(message, hint), instruction=hint, **self.io,
                choices=[questionary.Choice(choice, checked=choice in default) for choice in choices]),
                f"{message}\nChoices: {', '.join(choices)}. Arrow keys move, space ticks or unticks, a ticks all, "
                f"i inverts, Enter takes the ticked ones (at least one).")
            if answer:
                break
            self.info("Nothing ticked: choose at least one (space ticks one, a ticks all), then Enter.", wrap=True)
        set_answer(self.answers, key, answer)
        return answer

    def confirm(self, key: str, message: str, default: bool, guidance: str = "") -> bool:
        return self._remember(key, lambda: self._confirm(key, message, self.previous.get(key, default), guidance))

    def _confirm(self, key: str, message: str, default: bool, guidance: str) -> bool:
        import questionary

        # auto_enter off: 'y' alone would answer at once, and the Enter a user types after it reach the next
        # question or, after the last one, the shell
        hint = self._hint("y/n, Enter; Enter alone: " + ("yes" if default else "no")) + " "
        answer = self._ask_with_help(
            lambda: questionary.confirm(self._fit(message, hint), default=default, auto_enter=False,
                                        instruction=hint, **self.io),
            f"{guidance or message}\nType y or n and press Enter; Enter alone answers "
            f"{'yes' if default else 'no'}.")
        set_answer(self.answers, key, answer)
        return answer

    def edit_json(self, key: str, what: str, offered: str, validate: JsonValidator,
                  name: str = "") -> Any:
        self.previous.pop(key, None)  # going back to an edited content offers the template again
        return self._remember(key, lambda: self._edit_json(key, what, offered, validate, name))

    def _edit_json(self, key: str, what: str, offered: str, validate: JsonValidator,
                   name: str = "") -> Any:
        """Show the offered content and ask whether to use it as is or edit it in $EDITOR; an edit is re-opened
        until it is valid, declining to re-open or an editor that fails (vim's ``:cq``) aborts (nothing written)."""
        self.info(f"Offered {what}:\n{strip_comment_lines(offered).strip()}")
        try:
            valid_offer = validated_json(offered, what, validate)
        except UserError as err:
            self.info(f"The offered {what} does not fit the data: {err}")
            valid_offer = None
        if valid_offer is not None and self.select(f"{key}_how", f"Use {_this(what)}?",
                                                   [USE_AS_IS, EDIT], default=USE_AS_IS) == USE_AS_IS:
            self.answers.pop(f"{key}_how", None)
            set_answer(self.answers, key, valid_offer)
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
                    raise Aborted(f"editor {editor[0]} ended with exit status {status} while editing the {what}; "
                                    f"aborted, nothing was written")
                try:
                    content = validated_json(path.read_text(), what, validate)
                    break
                except UserError as err:
                    self.info(f"Invalid {what}: {err}")
                    if not self.confirm(f"{key}_reopen", "Open the editor again (no: abort, nothing is written)?",
                                        True):
                        raise Aborted(f"{what} not valid; aborted, nothing was written") from None
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        self.answers.pop(f"{key}_reopen", None)
        set_answer(self.answers, key, content)
        return content

    def finish(self, hpc: bool) -> None:
        """Nothing to check: every answer was given to its question."""

    def where_to_write(self, runscript: Path) -> tuple[Path, bool]:
        """Asked (not saved with the answers): replace the existing ``runscript``, keep it and write this one under
        another name in the same directory, or (« back, Ctrl-B) ask the previous question again."""
        from . import checks

        choice = self.select("existing_runscript", f"{runscript} exists already:", [OTHER_NAME, REPLACE],
                             default=OTHER_NAME, guidance=f"{runscript} was written before (its answers are in "
                                                          f"{runscript.name}.answers.yaml). Keep it and give this "
                                                          f"runscript another name, or replace it.")
        self.answers.pop("existing_runscript", None)
        if choice == REPLACE:
            return runscript, True
        name = self.text("runscript_name", f"Name of this runscript (in {runscript.parent}):",
                         lambda text: checks.new_runscript_name(text, runscript.parent),
                         default=checks.free_runscript_name(runscript),
                         guidance="A file name ending in .sh of letters, digits, '_', '-' and '.' that is not taken "
                                  "yet; its JSON files and answers are named after it.")
        self.answers.pop("runscript_name", None)
        return runscript.parent / name, False

    def _columns(self) -> int:
        return self.io["output"].get_size().columns if "output" in self.io else shutil.get_terminal_size().columns

    def _fit(self, message: str, instruction: str = "", answer: int = 0) -> str:
        """``message`` broken between words to the terminal width (the terminal breaks a line where it ends, inside
        a word), after the question's ``? `` mark; when the ``instruction`` and ``answer`` characters typed after it
        (a text question's; a menu's choice replaces its instruction) do not fit on its last line, they begin the
        next one."""
        width = max(20, self._columns() - 1)
        lines = [_fill(line, width, first=2) for line in message.splitlines() or [""]]
        last = lines[-1].rsplit("\n", 1)[-1]
        if instruction and len(last) + 2 + len(instruction) + 1 + answer > width and \
                len(instruction) + answer < width:
            lines[-1] += "\n"
        return "\n".join(lines)

    def info(self, message: str, wrap: bool = False) -> None:
        """A note between questions (on the prompts' output), its lines broken between words at the terminal
        width; ``wrap``: also indented and fitted a little narrower (guidance)."""
        from prompt_toolkit import print_formatted_text

        columns = self._columns()
        if wrap:
            width = max(40, columns - 4)
            message = "\n".join(textwrap.fill(line, width, initial_indent="  ", subsequent_indent="  ",
                                               break_long_words=False, break_on_hyphens=False)
                                 for line in message.splitlines())
        else:
            message = "\n".join(_fill(line, max(20, columns - 1)) for line in message.splitlines())
        if "output" in self.io:
            print_formatted_text(message, output=self.io["output"])
        else:
            print(message, file=sys.stderr, flush=True)


def _fill(line: str, width: int, first: int = 0) -> str:
    """``line`` broken between words into lines of at most ``width`` characters (``first``: characters before it
    on its first line), the continuation lines indented as the line is; a word longer than a line (a path) is
    kept whole."""
    if len(line) + first <= width:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.fill(line, width, initial_indent=" " * first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)[first:]


def _this(what: str) -> str:
    """``this data split`` or ``these hyper-parameters of convLSTM``: the demonstrative agrees with ``what``'s first
    word."""
    return f"{'these' if what.split()[0].endswith('s') else 'this'} {what}"


def _show_validation_errors_in_full(app) -> None:
    """Let the line below a text question that shows why an answer was rejected grow to several lines: prompt_toolkit
    gives it one line (``ValidationToolbar``), which cuts a long reason at the terminal width. It is found as the
    window inside the container shown only while there is a validation error (the public filter
    ``has_validation_error``), since the toolbar object itself is not part of the layout tree."""
    from prompt_toolkit.filters import has_validation_error, to_filter
    from prompt_toolkit.layout import ConditionalContainer, Window

    for container in app.layout.walk():
        if isinstance(container, ConditionalContainer) and container.filter is has_validation_error \
                and isinstance(container.content, Window):
            container.content.height, container.content.wrap_lines = None, to_filter(True)
