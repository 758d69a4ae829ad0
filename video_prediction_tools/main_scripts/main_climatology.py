"""Climatology for the ACC metric: the mean of a variable per (calendar month, hour of day) over a range of years,
from extracted netCDF (``<source_dir>/<YYYY>/<MM>/*.nc``); months are spread over MPI ranks.

Usage example (one process, then four MPI ranks; the result is the same)::

    python -m video_prediction_tools.main_scripts.main_climatology --source_dir ExtractedData --years 1991-2020 \\
        --variable 2t --out climatology_2t_1991-2020.nc
    mpiexec -n 4 python -m video_prediction_tools.main_scripts.main_climatology --source_dir ExtractedData \\
        --years 2017 2018 --variable t_850 --out clim_t850.nc --overwrite

Output: ``<variable>`` float32 with dims ``(month, hour, lat, lon)`` and ``n_samples (month, hour)``; the log is
written next to ``--out`` (see :mod:`video_prediction_tools.data_extraction.climatology`).
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
from pathlib import Path
from typing import Sequence

from video_prediction_tools.data_extraction.climatology import compute_climatology
from video_prediction_tools.utils.errors import UserError, run_cli
from video_prediction_tools.utils.log import setup_logging
from video_prediction_tools.utils.ranges import parse_int_ranges


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mean of a variable per (month, hour of day) from extracted netCDF.")
    parser.add_argument("--source_dir", required=True, help="ExtractedData directory (<YYYY>/<MM>/*.nc)")
    parser.add_argument("--years", nargs="+", required=True, help="years, e.g. 1991-2020 or 2017 2018")
    parser.add_argument("--variable", required=True, help="variable name in the extracted files, e.g. 2t")
    parser.add_argument("--out", required=True, help="output netCDF file")
    parser.add_argument("--overwrite", action="store_true", help="recompute when --out exists")
    args = parser.parse_args(argv)
    years = parse_int_ranges(args.years, "--years", 1900, 2200)
    source_dir = Path(args.source_dir)
    if not source_dir.is_dir():
        raise UserError(f"--source_dir {source_dir} does not exist")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    setup_logging(out.with_name(out.stem + ".log"))
    compute_climatology(source_dir, years, args.variable, out, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    run_cli(main)
