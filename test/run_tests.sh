#!/usr/bin/env bash
# The AMBS test command (what the README names and .ci/run calls):
#   bash test/run_tests.sh [pytest options]
# Installs the system packages some tests need (slurm-wlm, when run as root with apt), creates or reuses the
# virtual environment virtual_envs/ambs_test through env_setup/create_env.sh, then runs the pytest suite.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${AMBS_TEST_VENV:-ambs_test}

if ! command -v slurmctld >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing slurm-wlm for the SLURM runscript test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm >/dev/null; }; then
      echo "WARNING: slurm-wlm could not be installed; the SLURM test will be skipped with that reason"
    fi
  else
    echo "NOTE: slurm-wlm is not installed (needs root and apt); the SLURM test will be skipped"
  fi
fi

mkdir -p "$repo/virtual_envs"  # holds the venv and the test settings' base directory
bash "$repo/env_setup/create_env.sh" "$venv" -base_dir="$repo/virtual_envs/${venv}_data" -l_nohpc
cd "$repo"
export TF_CPP_MIN_LOG_LEVEL=2
exec "$repo/virtual_envs/$venv/bin/python" -m pytest "$@"
