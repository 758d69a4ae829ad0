"""Tests of env_setup/create_env.sh: argument errors, reuse of a healthy venv, recorded settings, sourcing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.common import REPO_ROOT

SCRIPT = REPO_ROOT / "env_setup" / "create_env.sh"
CURRENT_VENV = Path(sys.prefix)


def run_script(*args, cwd="/", env=None, source=False):
    quoted = " ".join(f"'{a}'" for a in args)
    command = f"source {SCRIPT} {quoted}; status=$?; echo \"VIRTUAL_ENV=${{VIRTUAL_ENV:-}}\"; exit $status" \
        if source else f"bash {SCRIPT} {quoted}"
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, **(env or {})), timeout=600)


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args, fragment", [
    ((), "missing the name of the virtual environment"),
    (("myenv", "-bogus"), "unknown option '-bogus'"),
    (("myenv", "-base_dir="), "-base_dir= needs a directory"),
    (("myenv", "-base_dir=/no/such/parent/base"), "parent directory /no/such/parent does not exist"),
    (("my env",), "may only contain letters"),
    (("a", "b"), "more than one venv name"),
    (("myenv", "-tf_container=/no/such/image.sif"), "image file not found"),
])
def test_bad_arguments_fail_cleanly(args, fragment, tmp_path):
    result = run_script(*args)
    assert result.returncode == 2
    assert fragment in error_line(result)
    assert not (REPO_ROOT / "virtual_envs" / "myenv").exists()


def test_container_mode_needs_a_runtime(tmp_path):
    image = tmp_path / "tf.sif"
    image.write_text("not really an image")
    result = run_script("myenv", f"-tf_container={image}", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "neither 'apptainer' nor 'singularity' is on PATH" in error_line(result)
    assert not (REPO_ROOT / "virtual_envs" / "myenv").exists()


@pytest.fixture
def venv_copy():
    """A venv under virtual_envs/ that create_env.sh finds healthy: its own directory (pyvenv.cfg, settings, an
    activate script) with links to the running venv's python, mpiexec and packages. The test below rewrites the
    settings of the venv it is given; working on this copy leaves the running venv's settings untouched."""
    copy = REPO_ROOT / "virtual_envs" / f"ambs_create_env_test_{os.getpid()}"
    (copy / "bin").mkdir(parents=True)
    shutil.copy(CURRENT_VENV / "pyvenv.cfg", copy)
    for part in ("lib", "bin/python", "bin/mpiexec"):
        (copy / part).symlink_to(CURRENT_VENV / part)
    (copy / "bin" / "activate").write_text(f'export VIRTUAL_ENV="{copy}"\nexport PATH="$VIRTUAL_ENV/bin:$PATH"\n')
    yield copy
    shutil.rmtree(copy)


@pytest.mark.slow
@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the suite to run inside a virtual environment")
def test_reuses_healthy_venv_records_settings_and_stays_active_when_sourced(tmp_path, venv_copy):
    name, settings_file = venv_copy.name, venv_copy / "ambs_settings.json"
    base = tmp_path / "base"
    result = run_script(name, f"-base_dir={base}", "-l_nohpc", source=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Reusing the healthy virtual environment" in result.stdout
    assert f"VIRTUAL_ENV={venv_copy}" in result.stdout
    settings = json.loads(settings_file.read_text())
    assert settings == {"venv_name": name, "base_dir": str(base.resolve()), "hpc": False,
                        "container": None, "repo_root": str(REPO_ROOT)}
    assert sorted(p.name for p in base.iterdir()) == sorted(
        ["ExtractedData", "PreprocessedData", "Models", "Results", "meta_postprocess"])
    assert "Mode: workstation (bash runscripts in no_HPC_scripts/), as asked" in result.stdout
    # executed (not sourced), from another directory, no mode asked: the recorded mode is kept, whatever sbatch
    executed = run_script(name, f"-base_dir={base}", cwd="/")
    assert executed.returncode == 0, executed.stderr
    assert "Mode: workstation" in executed.stdout and "as recorded in" in executed.stdout
    assert json.loads(settings_file.read_text())["hpc"] is False
    switched = run_script(name, f"-base_dir={base}", "-l_hpc")
    assert switched.returncode == 0 and "Mode: HPC (SLURM runscripts in HPC_scripts/), as asked" in switched.stdout
    assert json.loads(settings_file.read_text())["hpc"] is True
    # a venv without recorded settings: HPC exactly when sbatch is on PATH, and the output says so
    settings_file.unlink()
    guessed = run_script(name, f"-base_dir={base}")
    hpc_expected = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True).returncode == 0
    assert json.loads(settings_file.read_text())["hpc"] is hpc_expected
    assert ("because sbatch is on PATH" if hpc_expected else "because sbatch is not on PATH") in guessed.stdout
    # -keep_settings (the quick start) leaves recorded settings alone
    kept = run_script(name, f"-base_dir={tmp_path}", "-l_nohpc", "-keep_settings")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(settings_file.read_text())["base_dir"] == str(base.resolve())
    # the generator's reader sees the same settings
    from video_prediction_tools.utils.settings import read_settings
    assert read_settings(name).base_dir == str(base.resolve())


def test_failed_install_leaves_no_venv(tmp_path):
    name = "ambs_failing_install_test"
    result = run_script(name, f"-base_dir={tmp_path / 'base'}", "-l_nohpc",
                        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)})
    assert result.returncode == 1
    assert "installation into" in result.stderr.strip().splitlines()[-1]
    assert not (REPO_ROOT / "virtual_envs" / name).exists()
    assert not (tmp_path / "base").exists()


def test_help_is_the_usage_text_only():
    result = run_script("--help")
    assert result.returncode == 0 and "Usage" in result.stdout and "-l_hpc" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert "generate_runscript.py reads" in last and "() {" not in result.stdout
