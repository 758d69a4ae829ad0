"""Options of the original AMBS scripts that the rebuild dropped, so that its runscripts and habits keep working.

Each old option either maps to today's behaviour with a one-line ``NOTE:`` on stderr, or ends the run with one
``ERROR:`` line saying what replaces it (a :class:`UserError`, exit status 2)::

    ignored(parser, "--gpu_mem_frac", reason="TensorFlow takes GPU memory as it needs it")
    renamed(parser, "--test_mode", "-test", dest="block_length", value=1, new="--block_length 1")
    refused(parser, "--frac_data", "-f_dt", replacement="evaluate a smaller split with --mode instead")

The old options are hidden from ``--help``; the README's old-to-new table lists them all.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from video_prediction_tools.utils.errors import UserError


def _note(text: str) -> None:
    print(f"NOTE: {text}", file=sys.stderr, flush=True)


class _LegacyAction(argparse.Action):
    """Runs ``handle(namespace, option, values)`` when the old option is given; stores nothing by itself."""

    def __init__(self, option_strings, dest, handle: Callable[[argparse.Namespace, str, Any], None], **kwargs):
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.handle = handle

    def __call__(self, parser, namespace, values, option_string=None):
        self.handle(namespace, option_string, values)


def _nargs(takes_value: bool) -> str | int:
    return "?" if takes_value else 0


def ignored(parser: argparse.ArgumentParser, *flags: str, reason: str, takes_value: bool = True) -> None:
    """Accept ``flags`` (with an optional value when ``takes_value``) and ignore them with a notice."""
    parser.add_argument(*flags, nargs=_nargs(takes_value), dest=f"legacy_{flags[0].lstrip('-')}",
                        action=_LegacyAction,
                        handle=lambda namespace, option, values: _note(f"{option} is ignored: {reason}"))


def renamed(parser: argparse.ArgumentParser, *flags: str, dest: str, new: str,
            value: Any = None, convert: Callable[[str], Any] | None = None) -> None:
    """Accept ``flags`` as today's option ``new`` (stored in ``dest``): a flag sets ``value``; an option with a
    value stores ``convert(value)``. A notice names the replacement."""
    def handle(namespace, option, values):
        setattr(namespace, dest, value if convert is None else convert(values))
        _note(f"{option} is taken as {new.format(values)}")

    parser.add_argument(*flags, nargs=0 if convert is None else None, dest=f"legacy_{flags[0].lstrip('-')}",
                        action=_LegacyAction, handle=handle)


def refused(parser: argparse.ArgumentParser, *flags: str, replacement: str, takes_value: bool = True) -> None:
    """Refuse ``flags`` with one line: what replaces them."""
    def handle(namespace, option, values):
        raise UserError(f"{option} is no longer supported: {replacement}")

    parser.add_argument(*flags, nargs=_nargs(takes_value), dest=f"legacy_{flags[0].lstrip('-')}",
                        action=_LegacyAction, handle=handle)
