"""Generated HPC runscripts on a real single-node SLURM (slurmctld + slurmd with munge, started in a temporary
directory with a one-node configuration written here): runscripts generated from answers files with ``--hpc --chain`` are submitted with sbatch,
chained with ``--dependency=afterok``, and their outputs checked.

The workflow is the list ``STAGES``: to run more steps, append a :class:`Stage` (step, answers, output check).
Skipped, with the reason shown, only where SLURM is not installed (``apt-get install -y slurm-wlm``), and never under
CI (``CI=true`` in the environment): there a missing SLURM fails the test.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import xarray as xr
import yaml

from fixtures.common import BIN_DIR, run_module
from fixtures.generator import make_venv
from video_prediction_tools.runscript_generator import wizard
from video_prediction_tools.runscript_generator.base import AUTO_CHECKPOINT
from video_prediction_tools.utils.settings import create_base_tree

pytestmark = pytest.mark.slurm
SLURM_PROGRAMS = ("sbatch", "scontrol", "sinfo", "slurmctld", "slurmd", "munged")
JOB_TIMEOUT_S = 900  # generous: CI machines and shared developer machines can be heavily loaded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _munge_works() -> bool:
    if not shutil.which("munge") or not shutil.which("unmunge"):
        return False
    credential = subprocess.run(["munge", "-n"], capture_output=True)
    return credential.returncode == 0 and subprocess.run(["unmunge"], input=credential.stdout,
                                                         capture_output=True).returncode == 0


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM; yields the environment (SLURM_CONF) for sbatch/scontrol."""
    missing = [name for name in SLURM_PROGRAMS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        reason = f"SLURM is not installed (missing {', '.join(missing)}); install it with apt-get install -y slurm-wlm"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    started_munged = None
    if not _munge_works():
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        started_munged = _pid(Path("/run/munge/munged.pid"))
        for _ in range(50):
            if _munge_works():
                break
            time.sleep(0.1)
        assert _munge_works(), "munged did not start"
    host = socket.gethostname().split(".")[0]
    (root / "state").mkdir()
    (root / "spool").mkdir()
    config = root / "slurm.conf"
    config.write_text("\n".join([
        "ClusterName=ambs_test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool", f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
        "MinJobAge=3600", f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=1000 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    env = dict(os.environ, SLURM_CONF=str(config))
    subprocess.run(["/usr/sbin/slurmctld", "-i"], env=env, check=True)
    subprocess.run(["/usr/sbin/slurmd"], env=env, check=True)
    try:
        for _ in range(100):
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if state.strip() in ("idle", "mixed", "allocated"):
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"SLURM node did not become idle (sinfo: {state!r}); see {root}/slurmd.log")
        yield env
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            pid = _pid(root / pid_file)
            if pid:
                os.kill(pid, signal.SIGTERM)
        if started_munged:
            os.kill(started_munged, signal.SIGTERM)


def submit(script: Path, env: dict, after: list[str]) -> str:
    command = ["sbatch", "--parsable", "--chdir", str(script.parent)]
    if after:
        command.append(f"--dependency=afterok:{':'.join(after)}")
    result = subprocess.run([*command, str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_state(job_id: str, env: dict) -> tuple[str, str]:
    shown = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    return fields.get("JobState", "UNKNOWN"), fields.get("Reason", "")


def wait_for(job_ids: list[str], env: dict) -> dict[str, str]:
    """Final state of every job; jobs still pending or running after JOB_TIMEOUT_S are cancelled (state kept)."""
    deadline = time.time() + JOB_TIMEOUT_S
    while True:
        states = {job: job_state(job, env) for job in job_ids}
        if all(state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
               or reason == "DependencyNeverSatisfied" for state, reason in states.values()):
            return {job: state for job, (state, _) in states.items()}
        if time.time() > deadline:
            subprocess.run(["scancel", *job_ids], env=env)
            return {job: f"{state} after {JOB_TIMEOUT_S} s" for job, (state, _) in states.items()}
        time.sleep(1)


def log_tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else f"(no {path.name})"


# ------------------------------------------------------------------------------------------------ the workflow
@dataclass
class Stage:
    step: str
    #: answers given the workflow's paths (keys: grib, base)
    answers: Callable[[dict], dict]
    #: checks the step's outputs given the workflow's paths
    check: Callable[[dict], None]


# the synthetic archive: 2 days of January to March 2017 on 40.2-43.2N, 0-3E at 0.3° (11 x 11 points)
LAT_RANGE, LON_RANGE = ("40.2", "43.2"), ("0", "3")
SLURM_ANSWERS = {"profile": "generic", "ntasks": 2, "cpus_per_task": 1, "time": "00:10:00", "gpus": 0}
SERIAL_SLURM_ANSWERS = {**SLURM_ANSWERS, "ntasks": 1}
EXPNAME = "era5-Y2017-2017M01to03-6x5-4080N0060E-2t_tcc_t_850"
TINY_HPARAMS = {"batch_size": 4, "max_epochs": 1, "context_frames": 6, "sequence_length": 12, "num_features": 4,
                "filter_size": 3}
DATASPLIT = {"train": {"2017": [1]}, "val": {"2017": [2]}, "test": {"2017": [3]}}


def _check_extracted(paths):
    files = sorted((paths["base"] / "ExtractedData" / "2017" / "03").glob("*.nc"))
    assert files, "extraction wrote nothing"
    with xr.open_dataset(files[0]) as ds:
        assert {"2t", "tcc", "t_850"} <= set(ds.data_vars) and ds.sizes["time"] == 48


def _check_preprocessed(paths):
    metadata = json.loads((paths["base"] / "PreprocessedData" / EXPNAME / "metadata.json").read_text())
    assert metadata["frame_size"] == {"nx": 6, "ny": 5}


def _check_tfrecords(paths):
    experiment = paths["base"] / "PreprocessedData" / EXPNAME
    assert (experiment / "tfrecords" / "sequence_Y_2017_M_03.tfrecords").is_file()
    assert (experiment / "statistics.json").is_file()


def _run_dirs(paths):
    return sorted((paths["base"] / "Models" / EXPNAME / "convLSTM").iterdir())


def _planned_run(paths) -> str:
    """The exp_id of the generated (chained, not yet run) training: the run directory is made when it runs."""
    (answers,) = (paths["base"].parent / "HPC_scripts").glob("train_model_era5_*.sh.answers.yaml")
    return yaml.safe_load(answers.read_text())["derived"]["exp_id"]


def _check_trained(paths):
    (run_dir,) = _run_dirs(paths)
    assert list(run_dir.glob("checkpoint_*")) and (run_dir / "normalization.json").is_file()


def _check_postprocessed(paths):
    (run_dir,) = _run_dirs(paths)
    assert (paths["base"] / "Results" / EXPNAME / "convLSTM" / run_dir.name / "evaluation_metrics.nc").is_file()


def _check_meta(paths):
    (comparison,) = (paths["base"] / "meta_postprocess").iterdir()
    assert comparison.name.endswith("_slurm") and any(comparison.iterdir())


STAGES = [
    Stage("extract", lambda p: {"source_dir": str(p["grib"]), "years": "2017", "months": "1-3",
                                "varmapping": "template", "slurm": SLURM_ANSWERS}, _check_extracted),
    Stage("preprocess1", lambda p: {"years": "2017", "months": "1-3", "variables": "2t,tcc,t_850",
                                    "sw_corner": "40.8, 0.6", "nyx": "5, 6", "slurm": SLURM_ANSWERS},
          _check_preprocessed),
    Stage("preprocess2", lambda p: {"experiment": EXPNAME, "sequence_length": 12, "slurm": SLURM_ANSWERS},
          _check_tfrecords),
    Stage("train", lambda p: {"experiment": EXPNAME, "model": "convLSTM", "exp_id": "slurm", "datasplit": DATASPLIT,
                              "hparams": TINY_HPARAMS, "slurm": SERIAL_SLURM_ANSWERS}, _check_trained),
    Stage("postprocess", lambda p: {"experiment": EXPNAME, "model": "convLSTM", "run": _planned_run(p),
                                    "checkpoint": AUTO_CHECKPOINT, "evaluation_metrics": "mse,rmse",
                                    "block_length": 3, "slurm": SERIAL_SLURM_ANSWERS}, _check_postprocessed),
    Stage("meta_postprocess", lambda p: {"runs": [f"{EXPNAME}/convLSTM/{_planned_run(p)}"], "metric": "mse",
                                         "exp_id": "slurm", "slurm": SERIAL_SLURM_ANSWERS}, _check_meta),
]


@pytest.mark.slow
def test_generated_runscripts_run_chained_under_slurm(slurm, tmp_path):
    grib = tmp_path / "grib"
    made = run_module("video_prediction_tools.main_scripts.main_synthetic_archive", "--years", "2017", "--months", "1-3",
                      "--days", "2", "--lat_range", *LAT_RANGE, "--lon_range", *LON_RANGE, "--out", grib)
    assert made.returncode == 0, made.stderr
    base = tmp_path / "base"
    create_base_tree(base)
    real_venv = BIN_DIR.parent
    venv = make_venv(tmp_path, base, hpc=True, activate=f"source {real_venv}/bin/activate\n")
    paths = {"grib": grib, "base": base}
    runscript_dir = tmp_path / "HPC_scripts"
    jobs: list[tuple[Stage, Path, str]] = []
    for stage in STAGES:
        answers = tmp_path / f"{stage.step}.json"
        answers.write_text(json.dumps({"step": stage.step, **stage.answers(paths)}))
        assert wizard.main(["--venv_path", str(venv), "--answers", str(answers), "--runscript_dir",
                            str(runscript_dir), "--hpc", "--chain"]) == 0
        script = max(runscript_dir.glob("*.sh"), key=lambda path: path.stat().st_mtime_ns)
        jobs.append((stage, script, submit(script, slurm, [job for _, _, job in jobs[-1:]])))
    states = wait_for([job for _, _, job in jobs], slurm)
    for stage, script, job in jobs:
        out = script.with_name(f"{script.stem}-out.{job}")
        err = script.with_name(f"{script.stem}-err.{job}")
        assert states[job] == "COMPLETED", (f"step {stage.step}: job {job} {states[job]} (all: {states})\n"
                                            f"stdout:\n{log_tail(out)}\nstderr:\n{log_tail(err)}")
        assert f"Step '{stage.step}' finished." in out.read_text()
        stage.check(paths)
