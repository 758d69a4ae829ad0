#!/usr/bin/env python3
"""Generate the runscript of one AMBS workflow step (interactive wizard or answers file).

Usage (from any directory; the venv need not be active)::

    python env_setup/generate_runscript.py --venv_path dev                        # asks step by step
    python env_setup/generate_runscript.py --venv_path dev --step train --answers train.yaml
    python env_setup/generate_runscript.py --venv_path dev --step preprocess2 --answers p2.yaml --dry-run
    python env_setup/generate_runscript.py --help

A thin shim kept for the original's interface: it runs the entry point
``python -m video_prediction_tools.main_scripts.main_generate_runscript`` with the python of the venv given by
--venv_path (re-running itself with that python, inside the venv's container when its settings record one), so
that whatever the python it was started with has installed never matters; without a usable venv python it runs
with the python it was started with.
"""
import json
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: set in the re-run process: it never re-runs itself again, whatever its sys.prefix says
RELAUNCHED = "AMBS_GENERATOR_RELAUNCHED"


def _venv_dir(argv):
    """The venv directory named by --venv_path/-venv (a path, or a name under virtual_envs/) that has a python."""
    for index, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith(("--venv_path=", "-venv=")) else (
            argv[index + 1] if arg in ("--venv_path", "-venv") and index + 1 < len(argv) else None)
        if value:
            for candidate in (Path(value).expanduser(), REPO_ROOT / "virtual_envs" / value):
                if os.path.lexists(candidate / "bin" / "python"):
                    return candidate.resolve()
    return None


def _relaunch_command(venv):
    """The command that runs this script with the venv's python (None: no python of it can run here): inside the
    venv's container when its settings record one (a container venv's python links to the container's) and a
    container runtime is on PATH."""
    python = venv / "bin" / "python"
    try:
        container = json.loads((venv / "ambs_settings.json").read_text()).get("container")
    except (OSError, ValueError, AttributeError):
        container = None
    runtime = next((name for name in ("apptainer", "singularity") if shutil.which(name)), None)
    if container and runtime:
        return [runtime, "exec", container, str(python), __file__, *sys.argv[1:]]
    return [str(python), __file__, *sys.argv[1:]] if python.is_file() else None


def _run_in_venv():
    """Re-run this script with the venv's python unless this interpreter is that venv's: the venv's packages, not
    those of whichever python the user typed, decide what imports."""
    relaunched = os.environ.pop(RELAUNCHED, None)
    venv = _venv_dir(sys.argv[1:])
    if venv is None or relaunched or Path(sys.prefix).resolve() == venv:
        return
    command = _relaunch_command(venv)
    if command is not None:
        os.environ[RELAUNCHED] = "1"
        os.execvp(command[0], command)


if __name__ == "__main__":
    _run_in_venv()
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from video_prediction_tools.main_scripts.main_generate_runscript import main
        from video_prediction_tools.utils.errors import run_cli
    except ImportError as err:
        sys.exit(f"ERROR: cannot import the AMBS package ({err}); run with the python of your AMBS virtual "
                 f"environment (source virtual_envs/<venv>/bin/activate)")
    run_cli(main)
