"""Preprocessing step 2: write the monthly fields of step 1 as TFRecords (each hour once) and statistics.json.

Usage (ERA5; one process or MPI over months)::

    python -m video_prediction_tools.main_scripts.main_preprocess_data_step2 \\
        --source_dir PreprocessedData/era5-Y2017-2017M01to03-12x8-4500N0600E-2t_tcc_t_850 --sequence_length 24
    mpiexec -n 4 python -m video_prediction_tools.main_scripts.main_preprocess_data_step2 --source_dir ...

Moving MNIST (``--source_dir`` = ``mnist_test_seq.npy`` or its directory)::

    python -m video_prediction_tools.main_scripts.main_preprocess_data_step2 --dataset moving_mnist \\
        --source_dir data/mnist_test_seq.npy --dest_dir data/moving_mnist_tfrecords

Writes ``<dest_dir>/sequence_Y_<YYYY>_M_<MM>.tfrecords`` and ``dataset_info.json`` (default dest_dir:
``<source_dir>/tfrecords``) and ``statistics.json`` (in ``<source_dir>``, or in ``<dest_dir>`` when that lies
outside it); deletes each ``X_<MM>.nc`` once its TFRecord is complete unless ``--keep_netcdf``: with both, a
read-only ``<source_dir>`` is fine. A rerun keeps a month's TFRecord unless ``--overwrite`` while the ``X_<MM>.nc``
and ``stat_<MM>.json`` it was made from are unchanged (recorded in ``sequence_Y_<YYYY>_M_<MM>.provenance.json``);
a month that step 1 redid is rewritten.
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
from typing import Sequence

from video_prediction_tools.datasets.registry import get_dataset_class, known_datasets
from video_prediction_tools.main_scripts import legacy_options
from video_prediction_tools.utils.conventions import DEFAULT_SEQUENCE_LENGTH
from video_prediction_tools.utils.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source_dir", "-source_dir", required=True,
                        help="PreprocessedData/<EXPNAME> of step 1 (moving_mnist: mnist_test_seq.npy or its dir)")
    parser.add_argument("--dest_dir", "-dest_dir", default=None,
                        help="output directory (default <source_dir>/tfrecords)")
    parser.add_argument("--sequence_length", "-sequence_length", type=int, default=DEFAULT_SEQUENCE_LENGTH,
                        help="window length in hours that must fit into the data: checked, not recorded (the "
                             f"training hyper-parameter sequence_length sets the window length; default "
                             f"{DEFAULT_SEQUENCE_LENGTH})")
    parser.add_argument("--dataset", choices=known_datasets(), default="era5")
    parser.add_argument("--overwrite", action="store_true", help="rewrite months whose output exists")
    parser.add_argument("--keep_netcdf", action="store_true", help="keep X_<MM>.nc after conversion")
    legacy_options.ignored(parser, "--sequences_per_file", "-sequences_per_file",
                           reason="each month becomes one TFRecord file holding every hour once; training cuts "
                                  "the windows")
    args = parser.parse_args(argv)
    get_dataset_class(args.dataset).convert(args.source_dir, args.dest_dir, sequence_length=args.sequence_length,
                                            overwrite=args.overwrite, keep_netcdf=args.keep_netcdf)
    return 0


if __name__ == "__main__":
    run_cli(main)
