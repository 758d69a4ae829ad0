#!/usr/bin/env bash
# The AMBS test command (what the README names and .ci/run calls):
#   bash test/run_tests.sh [pytest options]
# CI runs everything (bash test/run_tests.sh -q). The fast lane for development leaves out the tests marked slow
# (model training runs, end-to-end chains, postprocessing CLI runs, two-rank MPI variants, the SLURM chain; see
# benchmarks/README.md, "Test lanes", for the times):
#   bash test/run_tests.sh -m "not slow" -n 2 -q     (-n 2: two pytest-xdist workers)
# Installs the system packages some tests need (slurm-wlm, python-cartopy-data, cdo; as root with apt), creates or reuses the
# virtual environment virtual_envs/ambs_test through env_setup/create_env.sh, then runs the pytest suite.
# Under CI (CI=true) a SLURM that cannot be installed ends the run with an error: the SLURM test is never skipped there.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${AMBS_TEST_VENV:-ambs_test}

# system packages some tests use: a real SLURM (runscript chain test), GSHHS coastlines for the maps, CDO (the
# original's extraction tool, an independent check of the model-level interpolation)
have_slurm() { command -v slurmctld >/dev/null 2>&1 || [[ -x /usr/sbin/slurmctld ]]; }
packages=()
have_slurm || packages+=(slurm-wlm)
[[ -f /usr/share/cartopy/data/shapefiles/gshhs/c/GSHHS_c_L1.shp ]] || packages+=(python-cartopy-data)
command -v cdo >/dev/null 2>&1 || packages+=(cdo)
if (( ${#packages[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${packages[*]} for the SLURM runscript, coastline and CDO comparison tests"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; }; then
      echo "WARNING: ${packages[*]} could not be installed; the SLURM and CDO tests are skipped (fail under" \
           "CI=true), the GSHHS coastline test fails"
    fi
  else
    echo "NOTE: ${packages[*]} not installed (needs root and apt); the SLURM and CDO tests are skipped (fail under" \
         "CI=true), the GSHHS coastline test fails"
  fi
fi

if [[ "${CI:-}" == true ]] && ! have_slurm; then
  echo "ERROR: CI=true but SLURM (slurm-wlm) is not installed and could not be installed; the SLURM runscript test" \
       "must run in CI (install slurm-wlm, or run as root with apt-get)" >&2
  exit 1
fi

mkdir -p "$repo/virtual_envs"  # holds the venv and the test settings' base directory
bash "$repo/env_setup/create_env.sh" "$venv" -base_dir="$repo/virtual_envs/${venv}_data" -l_nohpc
cd "$repo"
export TF_CPP_MIN_LOG_LEVEL=2
exec "$repo/virtual_envs/$venv/bin/python" -m pytest "$@"
