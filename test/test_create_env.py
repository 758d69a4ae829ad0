"""Tests of env_setup/create_env.sh: argument errors, reuse of a healthy venv, recorded settings, sourcing."""
import json
import os
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
def preserved_settings():
    """The tests below rewrite the running venv's settings file: put the original back afterwards."""
    settings_file = CURRENT_VENV / "ambs_settings.json"
    original = settings_file.read_text() if settings_file.exists() else None
    yield settings_file
    if original is None:
        settings_file.unlink(missing_ok=True)
    else:
        settings_file.write_text(original)


@pytest.mark.skipif(CURRENT_VENV.parent != REPO_ROOT / "virtual_envs",
                    reason="needs the suite to run inside a venv made by create_env.sh under virtual_envs/")
def test_reuses_healthy_venv_records_settings_and_stays_active_when_sourced(tmp_path, preserved_settings):
    base = tmp_path / "base"
    result = run_script(CURRENT_VENV.name, f"-base_dir={base}", "-l_nohpc", source=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Reusing the healthy virtual environment" in result.stdout
    assert f"VIRTUAL_ENV={CURRENT_VENV}" in result.stdout
    settings = json.loads(preserved_settings.read_text())
    assert settings == {"venv_name": CURRENT_VENV.name, "base_dir": str(base.resolve()), "hpc": False,
                        "container": None, "repo_root": str(REPO_ROOT)}
    assert sorted(p.name for p in base.iterdir()) == sorted(
        ["ExtractedData", "PreprocessedData", "Models", "Results", "meta_postprocess"])
    # executed (not sourced), HPC mode, from another directory: settings follow
    executed = run_script(CURRENT_VENV.name, f"-base_dir={base}", cwd="/")
    assert executed.returncode == 0, executed.stderr
    hpc_expected = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True).returncode == 0
    assert json.loads(preserved_settings.read_text())["hpc"] is hpc_expected
    # -keep_settings (the quick start) leaves recorded settings alone
    kept = run_script(CURRENT_VENV.name, f"-base_dir={tmp_path}", "-l_nohpc", "-keep_settings")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(preserved_settings.read_text())["base_dir"] == str(base.resolve())
    # the generator's reader sees the same settings
    from video_prediction_tools.utils.settings import read_settings
    assert read_settings(CURRENT_VENV.name).base_dir == str(base.resolve())


def test_failed_install_leaves_no_venv(tmp_path):
    name = "ambs_failing_install_test"
    result = run_script(name, f"-base_dir={tmp_path / 'base'}", "-l_nohpc",
                        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)})
    assert result.returncode == 1
    assert "installation into" in result.stderr.strip().splitlines()[-1]
    assert not (REPO_ROOT / "virtual_envs" / name).exists()
    assert not (tmp_path / "base").exists()
