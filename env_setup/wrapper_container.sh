#!/bin/bash
# Run a command inside a Singularity/Apptainer container with an AMBS virtual environment activated.
# Usage (from a runscript): apptainer exec --nv <image> env_setup/wrapper_container.sh <venv_dir> python -m ...
# The venv was created inside the container with --system-site-packages, so the container's TensorFlow is used.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "ERROR: usage: wrapper_container.sh <venv_dir> <command> [args...]" >&2
    exit 2
fi
venv_dir=$1
shift
if [[ ! -f "$venv_dir/bin/activate" ]]; then
    echo "ERROR: virtual environment '$venv_dir' not found (create it with env_setup/create_env.sh)" >&2
    exit 2
fi
unset PYTHONPATH
# shellcheck disable=SC1091
source "$venv_dir/bin/activate"
export PMIX_SECURITY_MODE=native
exec "$@"
