#!/usr/bin/env bash
# Set up (or reuse) the AMBS virtual environment and record the user's settings.
#
# Usage (from any directory; sourcing keeps the venv active in your shell):
#   source env_setup/create_env.sh <venv_name> [-base_dir=<dir>] [-tf_container=<image.sif>] [-l_nocontainer]
#                                  [-l_nohpc | -l_hpc]
#   bash   env_setup/create_env.sh <venv_name> ...            # same, without activating afterwards
#
#   <venv_name>            name of the venv, created as virtual_envs/<venv_name> at the repository root
#   -base_dir=<dir>        base directory of all workflow data (default: <repo>/ambs_data); its parent must exist
#   -tf_container=<image>  Singularity/Apptainer TensorFlow 2 image: the venv is built inside it and uses its TF
#   -l_nocontainer         ignore -tf_container (plain venv with TensorFlow from PyPI)
#   -l_nohpc               workstation mode: bash runscripts in no_HPC_scripts/
#   -l_hpc                 HPC mode: SLURM runscripts in HPC_scripts/
#                          (neither: the mode an existing venv recorded, else HPC exactly when sbatch is on PATH)
#   -keep_settings         keep the settings an existing venv already has (used by the quick start)
#
# The settings (base directory, HPC or not, container) are written to virtual_envs/<venv_name>/ambs_settings.json,
# which generate_runscript.py reads. A healthy existing venv is reused; a failed build leaves nothing behind.

_ambs_usage() {
  # the comment block at the top of this file, up to its first line of code
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}

_ambs_error() {
  echo "ERROR: $*" >&2
}

_ambs_create_env() {
  local script_dir repo_root venv_name="" base_dir="" container="" use_container=1 hpc="" keep_settings=0 arg
  script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || return 2
  repo_root=$(dirname "$script_dir")

  for arg in "$@"; do
    case "$arg" in
      -h|--help) _ambs_usage; return 0 ;;
      -base_dir=*)
        base_dir="${arg#-base_dir=}"
        if [[ -z "$base_dir" ]]; then _ambs_error "-base_dir= needs a directory"; return 2; fi ;;
      -tf_container=*) container="${arg#-tf_container=}" ;;
      -l_nocontainer) use_container=0 ;;
      -l_nohpc) hpc=0 ;;
      -l_hpc) hpc=1 ;;
      -keep_settings) keep_settings=1 ;;
      -*) _ambs_error "unknown option '$arg' (accepted: -base_dir=<dir> -tf_container=<image> -l_nocontainer -l_nohpc -l_hpc -keep_settings)"; return 2 ;;
      *)
        if [[ -n "$venv_name" ]]; then
          _ambs_error "more than one venv name given ('$venv_name' and '$arg')"; return 2
        fi
        venv_name="$arg" ;;
    esac
  done
  if [[ -z "$venv_name" ]]; then
    _ambs_error "missing the name of the virtual environment: create_env.sh <venv_name> [options] (see --help)"
    return 2
  fi
  if [[ ! "$venv_name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    _ambs_error "venv name '$venv_name' may only contain letters, digits, '.', '_' and '-'"; return 2
  fi
  base_dir="${base_dir:-$repo_root/ambs_data}"
  base_dir="${base_dir/#\~/$HOME}"
  if [[ ! -d "$(dirname "$base_dir")" ]]; then
    _ambs_error "-base_dir=$base_dir: its parent directory $(dirname "$base_dir") does not exist"; return 2
  fi

  local runtime=""
  if [[ -n "$container" && "$use_container" == 1 ]]; then
    if [[ ! -f "$container" ]]; then
      _ambs_error "-tf_container=$container: image file not found"; return 2
    fi
    container=$(cd "$(dirname "$container")" && pwd)/$(basename "$container")
    if command -v apptainer >/dev/null 2>&1; then runtime=apptainer
    elif command -v singularity >/dev/null 2>&1; then runtime=singularity
    else
      _ambs_error "-tf_container given but neither 'apptainer' nor 'singularity' is on PATH (load its module, or use -l_nocontainer)"
      return 2
    fi
  else
    container=""
  fi

  local venv_dir="$repo_root/virtual_envs/$venv_name"
  local python_cmd=("$venv_dir/bin/python")
  [[ -n "$runtime" ]] && python_cmd=("$runtime" exec --nv "$container" "$venv_dir/bin/python")

  if [[ -d "$venv_dir" ]] && _ambs_healthy "$venv_dir" "$runtime" "${python_cmd[@]}"; then
    echo "Reusing the healthy virtual environment $venv_dir"
  else
    _ambs_ensure_venv_module "$runtime" || return $?
    local created=0
    if [[ -d "$venv_dir" ]] && ! "${python_cmd[@]}" -c "import sys" >/dev/null 2>&1; then
      echo "Removing the broken virtual environment $venv_dir"
      rm -rf "$venv_dir"
    fi
    if [[ ! -d "$venv_dir" ]]; then
      created=1
      mkdir -p "$repo_root/virtual_envs" || return 1
      echo "Creating the virtual environment $venv_dir"
      if [[ -n "$runtime" ]]; then
        "$runtime" exec "$container" python3 -m venv --system-site-packages "$venv_dir"
      else
        python3 -m venv "$venv_dir"
      fi || { _ambs_error "could not create the virtual environment $venv_dir"; rm -rf "$venv_dir"; return 1; }
    fi
    if ! _ambs_install "$repo_root" "$runtime" "${python_cmd[@]}"; then
      _ambs_error "installation into $venv_dir failed (see the pip output above)"
      [[ "$created" == 1 ]] && rm -rf "$venv_dir"
      return 1
    fi
  fi

  if [[ "$keep_settings" == 1 && -f "$venv_dir/ambs_settings.json" ]]; then
    echo "Keeping the settings in $venv_dir/ambs_settings.json"
  else
    local why recorded
    if [[ -n "$hpc" ]]; then
      why="as asked"
    elif recorded=$("${python_cmd[@]}" -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["hpc"]))' \
                    "$venv_dir/ambs_settings.json" 2>/dev/null); then
      hpc=$recorded
      why="as recorded in $venv_dir/ambs_settings.json (-l_hpc or -l_nohpc changes it)"
    elif command -v sbatch >/dev/null 2>&1; then
      hpc=1 why="because sbatch is on PATH (-l_nohpc for workstation runscripts)"
    else
      hpc=0 why="because sbatch is not on PATH (-l_hpc for SLURM runscripts)"
    fi
    if [[ "$hpc" == 1 ]]; then
      echo "Mode: HPC (SLURM runscripts in HPC_scripts/), $why"
    else
      echo "Mode: workstation (bash runscripts in no_HPC_scripts/), $why"
    fi
    "${python_cmd[@]}" -m video_prediction_tools.utils.settings write "$venv_dir" \
        --base_dir "$base_dir" --hpc "$hpc" --container "$container" || return $?
  fi

  echo "AMBS environment '$venv_name' is ready."
  echo "Next: python $repo_root/env_setup/generate_runscript.py --venv_path $venv_name"
  _AMBS_VENV_DIR="$venv_dir"
  _AMBS_RUNTIME="$runtime"
  return 0
}

# A venv is healthy when AMBS and its main dependencies import and (outside a container) it has its own mpiexec.
_ambs_healthy() {
  local venv_dir=$1 runtime=$2
  shift 2
  [[ -n "$runtime" || -x "$venv_dir/bin/mpiexec" ]] &&
    "$@" -c "import video_prediction_tools, tensorflow, mpi4py, eccodes, netCDF4, questionary" >/dev/null 2>&1
}

# A bare Debian/Ubuntu python3 cannot create venvs without the python3-venv package: install it when we can.
_ambs_ensure_venv_module() {
  [[ -n "$1" ]] && return 0
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing python3-venv (needed to create virtual environments)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && return 0
  fi
  _ambs_error "python3 cannot create virtual environments; install python3-venv (sudo apt-get install python3-venv)"
  return 2
}

# Install AMBS itself (editable) with the given python command, with the pinned TensorFlow of the extra cpu or cuda
# (pyproject.toml) unless a container provides TensorFlow.
_ambs_install() {
  local repo_root=$1 runtime=$2
  shift 2
  "$@" -m pip install --quiet --upgrade pip || return 1
  local extras=test
  if [[ -z "$runtime" ]]; then
    extras=test,cpu
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      extras=test,cuda
    fi
  fi
  echo "Installing AMBS (editable) with the extras [$extras] and its dependencies"
  "$@" -m pip install --quiet -e "${repo_root}[$extras]" || return 1
}

_ambs_create_env "$@"
_ambs_status=$?
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # sourced: keep the caller's shell alive and leave the venv active
  if [[ $_ambs_status == 0 && -z "$_AMBS_RUNTIME" && -n "$_AMBS_VENV_DIR" ]]; then
    # shellcheck disable=SC1091
    source "$_AMBS_VENV_DIR/bin/activate"
    echo "Activated $_AMBS_VENV_DIR"
  fi
  unset -f _ambs_create_env _ambs_install _ambs_usage _ambs_error _ambs_healthy _ambs_ensure_venv_module
  unset _AMBS_VENV_DIR _AMBS_RUNTIME
  return $_ambs_status
else
  exit $_ambs_status
fi
