#!/usr/bin/env bash
# The AMBS quick-start demo: the whole workflow on a small synthetic ERA5-like archive, on a laptop.
#
# Usage (from any directory; Debian/Ubuntu with Python >= 3.10):
#   bash env_setup/quick_start.sh [--model <name>] [--num_stochastic_samples N] [--preset demo|tiny] [--fresh]
#                                  [--demo_dir <dir>] [--exp_id <id>] [--era5 <file or directory> [--region LAT,LON,NY,NX]]
#
# With --era5 the chain runs on your own ERA5 (GRIB or netCDF as the CDS delivers it; 2t required) instead of the
# synthetic archive, in <repo>/ambs_era5: every variable it holds, the largest box of its grid (or --region: SW
# corner in degrees north and east, rows and columns in grid points), a split by dates (about 70 / 15 / 15 % of the
# hours, whole days, in time order; printed).
#
# Creates the virtual environment virtual_envs/ambs with env_setup/create_env.sh when it is missing or broken
# (an existing healthy one and its settings are left as they are; AMBS_VENV=<name> picks another venv), then runs
# python -m video_prediction_tools.main_scripts.main_quick_start: synthetic GRIB archive, then extraction →
# preprocessing 1 and 2 → training of convLSTM (or of --model <name>, any registered model, each with its demo
# preset: a few minutes on 2 CPU cores; --help lists the models) → postprocessing → meta-postprocessing, each
# through a runscript generated from an answers file (templates/quick_start/), all under <repo>/ambs_demo. It ends with
# the model's MSE against both baselines per lead hour and where the table and plots are.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${AMBS_VENV:-ambs}
python="$repo/virtual_envs/$venv/bin/python"

# coastlines for the demo's maps: Debian's GSHHS shorelines (python-cartopy-data), installed as test/run_tests.sh does
if [[ ! -f /usr/share/cartopy/data/shapefiles/gshhs/c/GSHHS_c_L1.shp ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1 \
      && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python-cartopy-data >/dev/null; then
    echo "Installed python-cartopy-data (coastlines for the maps)"
  else
    echo "NOTE: the demo's maps have no coastlines: python-cartopy-data is not installed and could not be (needs root" \
         "and apt-get; e.g. sudo apt-get install python-cartopy-data), or set AMBS_COASTLINES to a coastline .shp"
  fi
fi

# creates or repairs the venv when needed; an existing user's settings stay as they are
bash "$repo/env_setup/create_env.sh" "$venv" -l_nohpc -keep_settings

exec "$python" -m video_prediction_tools.main_scripts.main_quick_start --venv_path "$venv" "$@"
