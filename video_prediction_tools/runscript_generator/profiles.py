"""SLURM site profiles: per-site defaults of the ``#SBATCH`` header of every workflow step.

A profile is a YAML file in ``templates/site_profiles/<name>.yaml`` with site-wide keys (``account``,
``partition``, ``mail_user``, ``mail_type``, ``srun_options``, ``setup``: shell lines run before the first
``srun``, e.g. ``module load``) and per-step resources under ``steps``
(``nodes``, ``ntasks``, ``cpus_per_task``, ``time``, ``gpus``, optionally ``partition``).

Example::

    from video_prediction_tools.runscript_generator.profiles import known_profiles, slurm_defaults
    known_profiles()                           # ['generic', 'juwels_booster']
    slurm_defaults("juwels_booster", "train")  # {'account': 'deepacf', 'partition': 'booster', 'gpus': 1, ...}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..utils.errors import UserError
from ..utils.settings import templates_dir

#: the keys of one step's SLURM settings, in the order the wizard asks for them
SLURM_KEYS = ("account", "partition", "nodes", "ntasks", "cpus_per_task", "time", "gpus", "mail_user", "mail_type",
              "srun_options", "extra", "setup")


def profiles_dir() -> Path:
    return templates_dir() / "site_profiles"


def known_profiles() -> list[str]:
    return sorted(path.stem for path in profiles_dir().glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    path = profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown site profile {name!r}; known profiles: {', '.join(known_profiles())}")
    try:
        profile = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"site profile {path} is not valid YAML: {err}")
    if not isinstance(profile, dict) or not isinstance(profile.get("steps"), dict):
        raise UserError(f"site profile {path} must be a mapping with a 'steps' mapping")
    return profile


def slurm_defaults(profile_name: str, step: str) -> dict[str, Any]:
    """The SLURM settings of ``step`` in profile ``profile_name``: site keys updated by the step's own keys."""
    profile = load_profile(profile_name)
    if step not in profile["steps"]:
        raise UserError(f"site profile {profile_name!r} has no resources for step {step!r}")
    settings: dict[str, Any] = {"account": "", "partition": "", "mail_user": "", "mail_type": "ALL",
                                "srun_options": "", "extra": [], "setup": []}
    settings.update({key: value for key, value in profile.items() if key in SLURM_KEYS})
    settings.update(profile["steps"][step])
    unknown = set(settings) - set(SLURM_KEYS)
    if unknown:
        raise UserError(f"site profile {profile_name!r}, step {step}: unknown keys {sorted(unknown)}; "
                        f"known: {', '.join(SLURM_KEYS)}")
    return settings
