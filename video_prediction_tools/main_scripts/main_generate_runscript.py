"""Generate the runscript of one AMBS workflow step: an interactive wizard, or non-interactive from an answers file.

Usage example (``env_setup/generate_runscript.py`` takes the same options and also works outside the venv)::

    python -m video_prediction_tools.main_scripts.main_generate_runscript --venv_path dev          # asks step by step
    python -m video_prediction_tools.main_scripts.main_generate_runscript --venv_path dev --step extract --dry-run
    python -m video_prediction_tools.main_scripts.main_generate_runscript --venv_path dev --answers train.yaml

Writes ``<runscript_dir>/<runscript>.sh`` and ``<runscript>.sh.answers.yaml`` (replay it with ``--answers``); the
questions, checks and templates are in :mod:`video_prediction_tools.runscript_generator`.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

from video_prediction_tools.runscript_generator.wizard import main
from video_prediction_tools.utils.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
