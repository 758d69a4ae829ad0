"""Workflow step 1: extract an ERA5 archive (GRIB 1/2 or Climate Data Store netCDF, any layout) into monthly netCDF
files, months spread over MPI ranks.

Usage example (a synthetic archive first; ``mpiexec -n 2`` in front of ``python`` runs two ranks)::

    python -m video_prediction_tools.main_scripts.main_synthetic_archive --years 2017 --months 1-2 --days 2 \\
        --out /tmp/grib
    python -m video_prediction_tools.main_scripts.main_data_extraction --source_dir /tmp/grib \\
        --target_dir /tmp/ExtractedData --year 2017 --months 1 2 \\
        --varslist_path templates/data_extraction/era5_varmapping_template.json

A folder holding one downloaded file (e.g. ``era5/era5-2mt-2019-03-uk.grib``) works the same way; without
``--year`` every month the archive holds is extracted::

    python -m video_prediction_tools.main_scripts.main_data_extraction --source_dir era5 \\
        --target_dir /tmp/ExtractedData --varslist_path templates/data_extraction/era5_varmapping_2t_template.json

Input: the original's hourly files ``<source_dir>/<YYYY>/<MM>/<YYYYMMDDHH>_sf.grb|_ml.grb``, or files of any period
and name anywhere under ``<source_dir>`` (see ``data_extraction/archive.py``). Output:
``<target_dir>/<YYYY>/<MM>/era5_<YYYY>_<MM>.nc``; log: ``<target_dir>/<YYYY>/extraction_<YYYY>.log`` (for several
years ``<target_dir>/extraction_<first>-<last>.log``). A finished month is skipped unless ``--overwrite`` while its
input files and variable mapping are unchanged (recorded in ``era5_<YYYY>_<MM>.provenance.json``); otherwise it is
redone. Without ``--months`` every month of the asked years that the archive holds is extracted; asked months it
does not hold are refused, naming what it holds.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
import logging
from pathlib import Path
from typing import Sequence

from video_prediction_tools.data_extraction.archive import months_of_work
from video_prediction_tools.data_extraction.extract import extract_month
from video_prediction_tools.utils.ranges import parse_int_ranges
from video_prediction_tools.data_extraction.varmapping import load_varmapping
from video_prediction_tools.utils.errors import UserError, run_cli
from video_prediction_tools.utils.io import check_writable_directory
from video_prediction_tools.utils.log import setup_logging
from video_prediction_tools.utils.parallel import run_units

log = logging.getLogger("ambs")


def _log_file(target_dir: Path, logs_path: str | None, years: list[int]) -> Path:
    """``<target>/<YYYY>/extraction_<YYYY>.log`` for one year, ``<target>/extraction_<first>-<last>.log`` else."""
    tag = f"{years[0]:04d}" if len(years) == 1 else f"{years[0]:04d}-{years[-1]:04d}"
    log_dir = Path(logs_path) if logs_path else target_dir / (tag if len(years) == 1 else "")
    if logs_path:
        check_writable_directory(log_dir, "--logs_path")
    return log_dir / f"extraction_{tag}.log"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract an ERA5 archive (GRIB or CDS netCDF, any layout) to monthly "
                                                 "netCDF (MPI over months).")
    parser.add_argument("--source_dir", required=True,
                        help="archive root: <YYYY>/<MM>/*.grb hourly files, or GRIB/netCDF files of any period")
    parser.add_argument("--target_dir", required=True, help="ExtractedData directory")
    parser.add_argument("--year", "--years", dest="years", nargs="+", default=None,
                        help="years, e.g. 2017 or 2007-2019 (default: every year the archive holds)")
    parser.add_argument("--months", nargs="+", default=None, help="months, e.g. 1 2 3 or 1-3 (default: all held)")
    parser.add_argument("--varslist_path", required=True, help="variable mapping JSON (see templates/data_extraction)")
    parser.add_argument("--overwrite", action="store_true", help="redo months that are already extracted")
    parser.add_argument("--member", type=int, default=0, help="ensemble member to take (default 0)")
    parser.add_argument("--logs_path", default=None, help="directory of the log file (default: next to the output)")
    args = parser.parse_args(argv)

    mapping = load_varmapping(args.varslist_path)
    years = parse_int_ranges(args.years, "--year", 1900, 2200) if args.years else None
    months = parse_int_ranges(args.months, "--months", 1, 12) if args.months else None
    target_dir = Path(args.target_dir)
    if not target_dir.parent.is_dir():
        raise UserError(f"--target_dir {target_dir}: its parent directory does not exist")
    archive, units = months_of_work(args.source_dir, years, months, exclude=target_dir)
    check_writable_directory(target_dir, "--target_dir")
    setup_logging(_log_file(target_dir, args.logs_path, sorted({year for year, _ in units})))
    log.info("extracting %d month(s): %s -> %s; variables %s", len(units), args.source_dir, target_dir,
             ", ".join(mapping.output_names))
    results = run_units(units, lambda unit: extract_month(args.source_dir, target_dir, *unit, mapping,
                                                          overwrite=args.overwrite, member=args.member,
                                                          archive=archive),
                        label=lambda unit: f"{unit[0]}-{unit[1]:02d}")
    written = sum(result["status"] == "written" for result in results)
    log.info("done: %d month(s) written, %d skipped", written, len(results) - written)
    return 0


if __name__ == "__main__":
    run_cli(main)
