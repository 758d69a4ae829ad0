"""Preprocessing step 1: cut the target domain out of the extracted ERA5 data, one netCDF and statistics per month.

Writes ``<destination_dir>/<EXPNAME>/`` (metadata.json, options.json, ``<YYYY>/X_<MM>.nc``, ``<YYYY>/stat_<MM>.json``,
preprocess_step1.log); see :mod:`video_prediction_tools.data_preprocess.step1`. A finished month is skipped unless
``--overwrite`` while its source files, variables and domain are unchanged (recorded in
``<YYYY>/X_<MM>.provenance.json``); otherwise it is redone. Runs as one process or under MPI (months spread over
the ranks).

Example (the GMD domain, 92 x 56 points at 0.3° with SW corner 38.4N 0.0E)::

    mpiexec -n 4 python -m video_prediction_tools.main_scripts.main_preprocess_data_step1 \\
        --source_dir $BASE/ExtractedData --destination_dir $BASE/PreprocessedData --years 2017 2018 \\
        --months 1 2 3 --vars 2t tcc t_850 --sw_corner 38.4 0.0 --nyx 56 92
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
from typing import Sequence

from video_prediction_tools.data_preprocess.step1 import preprocess_step1
from video_prediction_tools.main_scripts import legacy_options
from video_prediction_tools.utils.errors import run_cli


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source_dir", "-src_dir", required=True,
                        help="extracted data directory holding <YYYY>/<MM>/*.nc (ExtractedData)")
    parser.add_argument("--destination_dir", "-dest_dir", required=True,
                        help="PreprocessedData directory; the experiment goes to <destination_dir>/<EXPNAME>")
    parser.add_argument("--years", "-y", type=int, nargs="+", required=True, help="years to process, e.g. 2017 2018")
    parser.add_argument("--months", type=int, nargs="+", default=None,
                        help="months 1..12 to process in every year (default: the month folders of the first year)")
    parser.add_argument("--vars", nargs="+", default=["2t", "tcc", "t_850"],
                        help="variables in channel order, duplicates allowed (default: 2t tcc t_850)")
    parser.add_argument("--sw_corner", "-swc", type=float, nargs=2, required=True, metavar=("LAT", "LON"),
                        help="south-west corner of the domain in degrees (negative = south / west)")
    parser.add_argument("--nyx", "-nyx", type=int, nargs=2, required=True, metavar=("NY", "NX"),
                        help="number of grid points north-south (NY) and west-east (NX), each at least 2")
    parser.add_argument("--overwrite", action="store_true", help="redo months that are already finished")
    legacy_options.ignored(parser, "--rsync_status", reason="every month that is not finished yet is processed "
                                                            "(--overwrite redoes finished ones)")
    legacy_options.ignored(parser, "--experimental_id", "-exp_id",
                           reason="the experiment directory is named after the years, domain and variables; a run "
                                  "is named at training (--output_dir)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    preprocess_step1(args.source_dir, args.destination_dir, years=args.years, months=args.months,
                     variables=args.vars, sw_corner=args.sw_corner, nyx=args.nyx, overwrite=args.overwrite,
                     options=vars(args))
    return 0


if __name__ == "__main__":
    run_cli(main)
