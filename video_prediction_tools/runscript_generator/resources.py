"""The questions every step ends with: the SLURM settings of its job (a site profile's defaults, each
overridable), or without SLURM the number of MPI processes of a step that runs over months.

Example (answers-file form)::

    slurm: {profile: juwels_booster, ntasks: 4, time: "02:00:00"}   # with SLURM
    mpi_processes: 2                                                # without SLURM
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import checks
from .base import Context, Step
from .profiles import SLURM_KEYS, known_profiles, slurm_defaults
from .prompter import Parser, as_text

#: the most MPI processes (or SLURM tasks) accepted where the months of work are not known (chain mode, SLURM
#: profiles): the months of the ERA5 years the generator accepts
MAX_MPI_PROCESSES = (checks.LAST_YEAR - checks.FIRST_ERA5_YEAR + 1) * 12

_SLURM_PARSERS: dict[str, Parser] = {
    "account": lambda t: checks.slurm_word(t, "account"),
    "partition": lambda t: checks.slurm_word(t, "partition"),
    "nodes": lambda t: checks.parse_int(t, "SLURM nodes", 1),
    "ntasks": lambda t: checks.parse_int(t, "SLURM ntasks", 1, MAX_MPI_PROCESSES),
    "cpus_per_task": lambda t: checks.parse_int(t, "SLURM cpus-per-task", 1),
    "time": checks.slurm_time,
    "gpus": lambda t: checks.parse_int(t, "GPUs per node", 0),
    "mail_user": lambda t: checks.slurm_word(t, "mail user"),
    "mail_type": checks.slurm_mail_type,
    "srun_options": checks.srun_options,
    "extra": checks.slurm_extra,
    "setup": checks.job_setup,
}

#: keys whose answer is a list of lines, typed separated by '; '
_LINE_KEYS = ("extra", "setup")
_GUIDANCE = {"extra": "'; '-separated #SBATCH options like --exclusive",
             "setup": "'; '-separated shell lines run before the first srun, e.g. module load Stages/2024; "
                      "module load CUDA (empty: none)"}


def ask_slurm(p, ctx: Context, step: Step) -> dict[str, Any]:
    """SLURM settings: a site profile's defaults, each overridable (answers file: ``slurm: {profile:, <key>:}``);
    a warning when GPUs are requested for a venv whose TensorFlow cannot use them."""
    profile = p.select("slurm.profile", "SLURM site profile:", known_profiles(), default="generic")
    defaults = slurm_defaults(profile, step.name)
    summary = ", ".join(f"{key}={as_text(defaults[key], '; ' if key in _LINE_KEYS else ',')}" for key in SLURM_KEYS
                        if defaults.get(key) not in ("", []))
    customise = not p.interactive or p.confirm("slurm.customise", f"SLURM settings: {summary}. Change them?", False)
    p.answers.get("slurm", {}).pop("customise", None)
    settings = dict(defaults)
    if customise:
        for key in SLURM_KEYS:
            separator = "; " if key in _LINE_KEYS else ","
            settings[key] = p.text(f"slurm.{key}", f"SLURM {key}:", _SLURM_PARSERS[key],
                                   default=as_text(defaults[key], separator), separator=separator,
                                   guidance=_GUIDANCE.get(key, ""))
    settings["extra"], settings["setup"] = checks.slurm_extra(settings["extra"]), checks.job_setup(settings["setup"])
    if settings["gpus"] > 0 and cpu_only_tensorflow(ctx.venv_dir):
        p.info(f"Warning: {settings['gpus']} GPU(s) requested, but the venv {ctx.venv_dir} holds tensorflow-cpu, "
               f"which runs on the CPUs only (create_env.sh installs it where it sees no GPU, e.g. on a login node). "
               f"For the GPUs: {ctx.venv_dir}/bin/python -m pip uninstall -y tensorflow-cpu && {ctx.venv_dir}/bin/"
               f"python -m pip install -e '{ctx.settings.repo_root}[cuda]'", wrap=True)
    return settings


def cpu_only_tensorflow(venv_dir) -> bool:
    """Whether the venv holds the CPU-only TensorFlow package (``tensorflow-cpu``, the extra ``[cpu]``); a
    container's TensorFlow is not in the venv."""
    return next(Path(venv_dir).glob("lib/python*/site-packages/tensorflow_cpu-*.dist-info"), None) is not None


def ask_resources(p, ctx: Context, step: Step, result) -> dict[str, Any]:
    """SLURM settings, or the MPI processes of a step without SLURM: at most one per month of work (a process
    without a month has nothing to do), a warning when there are more than cores here."""
    if ctx.hpc:
        return {"slurm": ask_slurm(p, ctx, step), "nprocs": 1}
    nprocs = 1
    if step.mpi:
        cores = len(os.sched_getaffinity(0))
        months = result.months_of_work
        nprocs = p.text("mpi_processes", f"Number of MPI processes (mpiexec -n N; months are shared out; "
                                         f"{cores} cores here"
                        + (f"; {months} month(s) to share out" if months else "") + "):",
                        lambda t: checks.parse_int(t, "number of MPI processes (one per month at most)", 1,
                                                   months or MAX_MPI_PROCESSES),
                        default=str(min(2, months or 2)))
        if nprocs > cores:
            p.info(f"Warning: {nprocs} MPI processes on {cores} cores here; they will share cores.")
    return {"slurm": {}, "nprocs": nprocs}
