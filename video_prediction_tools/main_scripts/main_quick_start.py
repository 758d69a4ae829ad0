"""The quick-start demo: the whole AMBS workflow on a small synthetic ERA5-like archive, through runscripts that the
runscript generator writes from answers files (``templates/quick_start/``), as a user runs it.

Usage example (what ``bash env_setup/quick_start.sh`` runs once the venv exists; then the CI-sized preset)::

    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path dev --preset tiny --demo_dir /tmp/t
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs --model savp
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path ambs --era5 era5-2mt-2019-03-uk.grib
    python -m video_prediction_tools.main_scripts.main_quick_start --venv_path dev --era5 era5/ \
        --region 50.0,-10.0,16,24 --preset tiny

Everything goes to ``--demo_dir`` (default ``<repo>/ambs_demo``, with ``--era5`` ``<repo>/ambs_era5``); a rerun
reuses its data and trains a new run. ``--era5 <file or directory>`` runs the chain on your own ERA5 (GRIB or
netCDF, any layout extraction reads) instead of the synthetic archive: every variable it holds (2t required), the
largest box of its grid up to the GMD size or ``--region LAT,LON,NY,NX`` (SW corner in degrees north and east, rows
and columns in grid points), a split by dates (about 70 / 15 / 15 % of the hours, whole days, in time order).
``--model`` picks the model trained (default convLSTM), with the preset's hyper-parameters for it.
Exit status: 0 when the model beats persistence at every lead hour, 3 when it does not (the table is printed
either way), 2 on a user error. :mod:`video_prediction_tools.quick_start` describes the chain and the presets.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
import shutil
from pathlib import Path
from typing import Sequence

from video_prediction_tools.models.registry import known_models
from video_prediction_tools.quick_start import (DEFAULT_MODEL, Demo, Era5Demo, load_preset, parse_region,
                                                preset_hparams, report)
from video_prediction_tools.utils.errors import UserError, run_cli
from video_prediction_tools.utils.settings import repo_root, resolve_venv


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the AMBS quick-start demo through generated runscripts.")
    parser.add_argument("--venv_path", default="ambs",
                        help="AMBS virtual environment (name under virtual_envs/ or path; default: ambs)")
    parser.add_argument("--demo_dir", help="directory of everything the demo writes (default: <repo>/ambs_demo, "
                                           "with --era5 <repo>/ambs_era5)")
    parser.add_argument("--preset", default="demo", help="size of the demo: demo (default) or tiny (CI test)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model to train, with the preset's hyper-parameters for it (default: {DEFAULT_MODEL}); "
                             f"one of {', '.join(known_models())}")
    parser.add_argument("--num_stochastic_samples", type=int, default=1,
                        help="forecast members per window of a stochastic model (savp, ours_gan, ours_vae_l1, "
                             "vae) in postprocessing (default: 1)")
    parser.add_argument("--exp_id", default="demo", help="typed experiment id of the training run")
    parser.add_argument("--era5", help="your own ERA5 instead of the synthetic archive: a GRIB or netCDF file, or a "
                                       "directory of them (any layout extraction reads); it must hold 2t")
    parser.add_argument("--region", help="with --era5: the domain as LAT,LON,NY,NX (SW corner in degrees north and "
                                         "east, rows and columns in grid points; default: the largest box of the "
                                         "grid, at most the GMD size 56 x 92)")
    parser.add_argument("--fresh", action="store_true", help="delete the demo directory first")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_options(argv)
    preset, venv_dir = load_preset(args.preset), resolve_venv(args.venv_path)
    hparams = preset_hparams(preset, args.model, args.preset)  # checked before anything is deleted or written
    if args.num_stochastic_samples < 1:
        raise UserError(f"--num_stochastic_samples {args.num_stochastic_samples}: expected a positive integer")
    if args.region is not None and args.era5 is None:
        raise UserError("--region chooses the domain of your own ERA5: give --era5 <file or directory> with it")
    demo_dir = Path(args.demo_dir or repo_root() / ("ambs_demo" if args.era5 is None else "ambs_era5"))
    demo_dir = demo_dir.expanduser().resolve()
    if not demo_dir.parent.is_dir():
        raise UserError(f"--demo_dir {demo_dir}: its parent directory does not exist")
    options = dict(venv_dir=venv_dir, demo_dir=demo_dir, preset=preset, exp_id=args.exp_id, model=args.model,
                   hparams=hparams, num_stochastic_samples=args.num_stochastic_samples)
    if args.era5 is None:
        demo = Demo(**options)
    else:
        demo = Era5Demo(**options, source=Path(args.era5),
                        region=None if args.region is None else parse_region(args.region))
    if args.fresh and demo_dir.exists():
        shutil.rmtree(demo_dir)
    return report(demo, demo.run())


if __name__ == "__main__":
    run_cli(main)
