"""Write a synthetic ERA5-like GRIB archive (one surface and one upper-air file per hour) for tests and demos.

Usage example (one month of the default region 30-60N, 10.2W-35.1E at 0.3 degrees; then two years,
three months of two days each on the GMD domain with temperature on model levels)::

    python -m video_prediction_tools.main_scripts.main_synthetic_archive --years 2017 --months 1 --out /tmp/era5_grib
    python -m video_prediction_tools.main_scripts.main_synthetic_archive --years 2017 2018 --months 1-3 \\
        --out /tmp/g --lat_range 38.4 54.9 --lon_range 0 27.3 --resolution 0.3 --seed 0 --model_levels --days 2

Output: ``<out>/<YYYY>/<MM>/<YYYYMMDDHH>_sf.grb`` and ``_ml.grb``, the layout the extraction step reads. The same
seed gives byte-identical files; :mod:`video_prediction_tools.data_extraction.synthetic` describes the weather.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
import logging
from typing import Sequence

from video_prediction_tools.data_extraction.synthetic import Grid, generate_archive
from video_prediction_tools.utils.errors import run_cli
from video_prediction_tools.utils.log import setup_logging
from video_prediction_tools.utils.ranges import parse_int_ranges

log = logging.getLogger("ambs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic ERA5-like GRIB archive (one file pair per hour).")
    parser.add_argument("--years", nargs="+", required=True, help="years, e.g. 2017 2018 or 2017-2018")
    parser.add_argument("--months", nargs="+", default=["1-12"], help="months, e.g. 1-3 or 1 2 3 (default 1-12)")
    parser.add_argument("--out", required=True, help="archive root: files go to <out>/<YYYY>/<MM>/")
    parser.add_argument("--lat_range", nargs=2, type=float, default=[30.0, 60.0], metavar=("S", "N"))
    parser.add_argument("--lon_range", nargs=2, type=float, default=[-10.2, 35.1], metavar=("W", "E"),
                        help="degrees east; W may be negative (crosses 0E); default -10.2 35.1")
    parser.add_argument("--resolution", type=float, default=0.3, help="grid spacing in degrees (default 0.3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model_levels", action="store_true",
                        help="write t on L137 hybrid levels 70..137 plus lnsp (GRIB 2) instead of pressure levels")
    parser.add_argument("--full_column", action="store_true",
                        help="with --model_levels: all 137 hybrid levels (what CDO's ml2pl needs; files twice the size)")
    parser.add_argument("--days", type=int, default=None, help="only the first N days of each month (tiny archives)")
    parser.add_argument("--edition", type=int, default=1, help="GRIB edition of surface / pressure-level files")
    args = parser.parse_args(argv)
    years = parse_int_ranges(args.years, "--years", 1900, 2200)
    months = parse_int_ranges(args.months, "--months", 1, 12)
    grid = Grid(args.lat_range[0], args.lat_range[1], args.lon_range[0], args.lon_range[1], args.resolution)
    setup_logging()
    written = generate_archive(args.out, years, months, grid, seed=args.seed, model_levels=args.model_levels,
                               days=args.days, edition=args.edition, full_column=args.full_column)
    log.info("synthetic archive: %d files on a %dx%d grid under %s", len(written), grid.ny, grid.nx, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
