"""The user's settings recorded by ``env_setup/create_env.sh`` and read by later tools.

One JSON file per virtual environment, ``virtual_envs/<venv>/ambs_settings.json``::

    {"venv_name": "ambs", "base_dir": "/scratch/me/ambs", "hpc": true,
     "container": "/path/tensorflow-2.21.sif" | null, "repo_root": "/home/me/ambs"}

Example (what create_env.sh runs)::

    python -m video_prediction_tools.utils.settings write virtual_envs/ambs \\
        --base_dir /scratch/me/ambs --hpc 1 --container ""
    python -m video_prediction_tools.utils.settings show virtual_envs/ambs
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .errors import UserError, run_cli
from .io import read_json, write_json

SETTINGS_FILE = "ambs_settings.json"
#: the base-directory tree every workflow step writes into (names as in the README)
BASE_SUBDIRS = ("ExtractedData", "PreprocessedData", "Models", "Results", "meta_postprocess")


def repo_root() -> Path:
    """Root of the AMBS checkout (the package is installed in editable mode)."""
    return Path(__file__).resolve().parents[2]


def templates_dir() -> Path:
    return repo_root() / "templates"


@dataclass
class Settings:
    venv_name: str
    base_dir: str
    hpc: bool
    container: str | None
    repo_root: str

    @property
    def venv_dir(self) -> Path:
        return Path(self.repo_root) / "virtual_envs" / self.venv_name

    @property
    def runscript_dir(self) -> Path:
        return Path(self.repo_root) / ("HPC_scripts" if self.hpc else "no_HPC_scripts")


def resolve_venv(venv_path: str | Path) -> Path:
    """Accept a name under ``virtual_envs/`` or a path; return the venv directory (must hold bin/activate)."""
    candidate = Path(venv_path).expanduser()
    options = [candidate] if candidate.is_absolute() else [Path.cwd() / candidate,
                                                            repo_root() / "virtual_envs" / candidate]
    for option in options:
        if (option / "bin" / "activate").is_file():
            return option.resolve()
    raise UserError(f"virtual environment {venv_path!s} not found (looked for bin/activate in "
                    f"{', '.join(str(o) for o in options)}); create it with env_setup/create_env.sh")


def read_settings(venv_path: str | Path) -> Settings:
    """Settings of a venv created by create_env.sh."""
    venv_dir = resolve_venv(venv_path)
    data = read_json(venv_dir / SETTINGS_FILE, what="AMBS settings file")
    try:
        return Settings(**{key: data[key] for key in Settings.__dataclass_fields__})
    except KeyError as err:
        raise UserError(f"{venv_dir / SETTINGS_FILE} lacks the key {err}; rerun env_setup/create_env.sh")


def write_settings(venv_dir: str | Path, base_dir: str | Path, hpc: bool, container: str | None) -> Settings:
    venv_dir = Path(venv_dir).resolve()
    settings = Settings(venv_name=venv_dir.name, base_dir=str(Path(base_dir).expanduser().resolve()), hpc=bool(hpc),
                        container=str(Path(container).resolve()) if container else None,
                        repo_root=str(repo_root()))
    write_json(venv_dir / SETTINGS_FILE, asdict(settings))
    return settings


def create_base_tree(base_dir: str | Path) -> None:
    """Create the base directory and its workflow sub-directories (the parent must exist)."""
    base_dir = Path(base_dir).expanduser()
    if not base_dir.parent.is_dir():
        raise UserError(f"-base_dir={base_dir}: its parent directory {base_dir.parent} does not exist")
    for sub in BASE_SUBDIRS:
        (base_dir / sub).mkdir(parents=True, exist_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record or show the AMBS settings of a virtual environment.")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="record settings (used by create_env.sh)")
    write.add_argument("venv_dir")
    write.add_argument("--base_dir", required=True)
    write.add_argument("--hpc", type=int, choices=(0, 1), required=True)
    write.add_argument("--container", default="")
    show = commands.add_parser("show", help="print the settings of a venv")
    show.add_argument("venv_dir")
    args = parser.parse_args(argv)
    if args.command == "write":
        create_base_tree(args.base_dir)
        settings = write_settings(args.venv_dir, args.base_dir, bool(args.hpc), args.container or None)
    else:
        settings = read_settings(args.venv_dir)
    for key, value in asdict(settings).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    run_cli(main)
