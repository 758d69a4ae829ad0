"""The questions every step ends with: the SLURM settings of its job (a site profile's defaults, each
overridable), or without SLURM the number of MPI processes of a step that runs over months.

Example (answers-file form)::

    slurm: {profile: juwels_booster, ntasks: 4, time: "02:00:00"}   # with SLURM
    mpi_processes: 2                                                # without SLURM
"""
from __future__ import annotations

import os
from typing import Any

from . import checks
from .base import Context, Step
from .profiles import SLURM_KEYS, known_profiles, slurm_defaults
from .prompter import Parser, as_text

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


def ask_slurm(p, step: Step) -> dict[str, Any]:
    """SLURM settings: a site profile's defaults, each overridable (answers file: ``slurm: {profile:, <key>:}``)."""
    profile = p.select("slurm.profile", "SLURM site profile:", known_profiles(), default="generic")
    defaults = slurm_defaults(profile, step.name)
    summary = ", ".join(f"{key}={as_text(defaults[key])}" for key in SLURM_KEYS if defaults.get(key) not in ("", []))
    customise = not p.interactive or p.confirm("slurm.customise", f"SLURM settings: {summary}. Change them?", False)
    p.answers.get("slurm", {}).pop("customise", None)
    settings = dict(defaults)
    if customise:
        for key in SLURM_KEYS:
            separator = "; " if key == "extra" else ","
            settings[key] = p.text(f"slurm.{key}", f"SLURM {key}:", _SLURM_PARSERS[key],
                                   default=as_text(defaults[key], separator), separator=separator,
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

