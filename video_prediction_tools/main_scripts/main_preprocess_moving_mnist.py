"""Convert the standard Moving MNIST file ``mnist_test_seq.npy`` (uint8 ``[20, 10000, 64, 64]``) into the
step-2 layout that training reads: ``<dest_dir>/moving_mnist.tfrecords`` (one record per sequence, in index order,
none dropped) and ``<dest_dir>/dataset_info.json`` (sizes and intensity statistics).

Example::

    python -m video_prediction_tools.main_scripts.main_preprocess_moving_mnist \\
        --source data/mnist_test_seq.npy --dest_dir PreprocessedData/moving_mnist/tfrecords

Training then takes ``--input_dir PreprocessedData/moving_mnist --dataset moving_mnist`` and a data split of
sequence-index ranges (``templates/data_split/moving_mnist/datasplit_template.json``). A rerun keeps an existing
conversion unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from video_prediction_tools.utils.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", "--source_dir", "-source_dir", "-input_dir", dest="source", required=True,
                        help="mnist_test_seq.npy or the directory holding it")
    parser.add_argument("--dest_dir", "-dest_dir", "-output_dir", default=None,
                        help="output directory (default: tfrecords/ next to the source file)")
    parser.add_argument("--overwrite", action="store_true", help="convert again although the output exists")
    args = parser.parse_args(argv)
    from video_prediction_tools.datasets.moving_mnist import convert_moving_mnist

    convert_moving_mnist(args.source, args.dest_dir, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    run_cli(main)
