#!/usr/bin/env python3
"""Generate the runscript of one AMBS workflow step (interactive wizard or answers file).

Usage (from any directory; the venv need not be active)::

    python env_setup/generate_runscript.py --venv_path dev                        # asks step by step
    python env_setup/generate_runscript.py --venv_path dev --step train --answers train.yaml
    python env_setup/generate_runscript.py --venv_path dev --step preprocess2 --answers p2.yaml --dry-run
    python env_setup/generate_runscript.py --help

A thin shim kept for the original's interface: it finds the AMBS package (re-running itself with the python of
the venv given by --venv_path when this interpreter cannot import it) and runs the entry point
``python -m video_prediction_tools.main_scripts.main_generate_runscript``.
"""
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _venv_python(argv):
    """The python of the venv named by --venv_path/-venv (to re-run this script there when this interpreter lacks
    the AMBS dependencies)."""
    for index, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith(("--venv_path=", "-venv=")) else (
            argv[index + 1] if arg in ("--venv_path", "-venv") and index + 1 < len(argv) else None)
        if value:
            for candidate in (Path(value).expanduser(), REPO_ROOT / "virtual_envs" / value):
                if (candidate / "bin" / "python").is_file():
                    return candidate / "bin" / "python"
    return None


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from video_prediction_tools.main_scripts.main_generate_runscript import main
        from video_prediction_tools.utils.errors import run_cli
    except ImportError as err:
        python = _venv_python(sys.argv[1:])
        if python is not None and Path(sys.executable).resolve() != python.resolve():
            os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
        sys.exit(f"ERROR: cannot import the AMBS package ({err}); run with the python of your AMBS virtual "
                 f"environment (source virtual_envs/<venv>/bin/activate)")
    run_cli(main)
