"""Workflow step 1: extract ERA5 GRIB (one folder per month) into monthly netCDF files, months spread over MPI ranks.

Usage example (a synthetic archive first; ``mpiexec -n 2`` in front of ``python`` runs two ranks)::

    python -m video_prediction_tools.main_scripts.main_synthetic_archive --years 2017 --months 1-2 --days 2 \\
        --out /tmp/grib
    python -m video_prediction_tools.main_scripts.main_data_extraction --source_dir /tmp/grib \\
        --target_dir /tmp/ExtractedData --year 2017 --months 1 2 \\
        --varslist_path templates/data_extraction/era5_varmapping_template.json

Output: ``<target_dir>/<YYYY>/<MM>/era5_<YYYY>_<MM>.nc``; log: ``<target_dir>/<YYYY>/extraction_<YYYY>.log``.
A finished month is skipped unless ``--overwrite`` while its GRIB files and variable mapping are unchanged (recorded
in ``era5_<YYYY>_<MM>.provenance.json``); otherwise it is redone. Without ``--months`` every month folder (01..12)
of the year is extracted.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
import logging
from pathlib import Path
from typing import Sequence

from video_prediction_tools.data_extraction.extract import extract_month
from video_prediction_tools.utils.ranges import parse_int_ranges
from video_prediction_tools.data_extraction.varmapping import load_varmapping
from video_prediction_tools.utils.errors import UserError, run_cli
from video_prediction_tools.utils.io import check_writable_directory
from video_prediction_tools.utils.log import setup_logging
from video_prediction_tools.utils.parallel import run_units

log = logging.getLogger("ambs")


def months_to_extract(source_year_dir: Path, requested: Sequence[str] | None) -> list[int]:
    """The requested months (each must have a folder), or all month folders 01..12 found."""
    if requested:
        months = parse_int_ranges(requested, "--months", 1, 12)
        missing = [f"{m:02d}" for m in months if not (source_year_dir / f"{m:02d}").is_dir()]
        if missing:
            raise UserError(f"month folder(s) {', '.join(missing)} not found in {source_year_dir}")
        return months
    months = sorted(int(p.name) for p in source_year_dir.iterdir()
                    if p.is_dir() and p.name.isdigit() and len(p.name) == 2 and 1 <= int(p.name) <= 12)
    if not months:
        raise UserError(f"no month folders (01..12) in {source_year_dir}")
    return months


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract ERA5 GRIB files to monthly netCDF (MPI over months).")
    parser.add_argument("--source_dir", required=True, help="GRIB root holding <YYYY>/<MM>/*.grb")
    parser.add_argument("--target_dir", required=True, help="ExtractedData directory")
    parser.add_argument("--year", required=True, type=int, help="year to extract, e.g. 2017")
    parser.add_argument("--months", nargs="+", default=None, help="months, e.g. 1 2 3 or 1-3 (default: all found)")
    parser.add_argument("--varslist_path", required=True, help="variable mapping JSON (see templates/data_extraction)")
    parser.add_argument("--overwrite", action="store_true", help="redo months that are already extracted")
    parser.add_argument("--member", type=int, default=0, help="ensemble member to take (default 0)")
    parser.add_argument("--logs_path", default=None, help="directory of the log file (default: next to the output)")
    args = parser.parse_args(argv)

    mapping = load_varmapping(args.varslist_path)
    source_year_dir = Path(args.source_dir) / f"{args.year:04d}"
    if not source_year_dir.is_dir():
        raise UserError(f"--source_dir/--year: {source_year_dir} does not exist")
    months = months_to_extract(source_year_dir, args.months)
    target_dir = Path(args.target_dir)
    if not target_dir.parent.is_dir():
        raise UserError(f"--target_dir {target_dir}: its parent directory does not exist")
    check_writable_directory(target_dir, "--target_dir")
    log_dir = Path(args.logs_path) if args.logs_path else target_dir / f"{args.year:04d}"
    if args.logs_path:
        check_writable_directory(log_dir, "--logs_path")
    setup_logging(log_dir / f"extraction_{args.year:04d}.log")
    log.info("extracting %d month(s) of %d: %s -> %s; variables %s", len(months), args.year, source_year_dir,
             target_dir, ", ".join(mapping.output_names))
    results = run_units(months, lambda month: extract_month(args.source_dir, target_dir, args.year, month, mapping,
                                                            overwrite=args.overwrite, member=args.member),
                        label=lambda month: f"{args.year}-{month:02d}")
    written = sum(result["status"] == "written" for result in results)
    log.info("done: %d month(s) written, %d skipped", written, len(results) - written)
    return 0


if __name__ == "__main__":
    run_cli(main)
