"""Compare the bootstrapped scores of several postprocessed runs (plots and a summary table).

Example::

    python -m video_prediction_tools.main_scripts.main_meta_postprocess --root_dir /scratch/ambs \\
        --analysis_config templates/meta_postprocess/meta_config_template.json --metric mse --exp_id cv_runs \\
        --enable_skill_scores --enable_persit_plot

Outputs go to ``<root_dir>/meta_postprocess/<exp_id>/``. The two ``--enable_*`` options are flags; for
compatibility with older runscripts they also accept a value (``--enable_skill_scores True`` / ``False``).
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
from typing import Sequence

from video_prediction_tools.postprocess.meta import run_meta_postprocess
from video_prediction_tools.postprocess.metrics import METRICS
from video_prediction_tools.utils.errors import run_cli
from video_prediction_tools.utils.parallel import on_root

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def boolean(text: str) -> bool:
    """``True``/``False`` (and 1/0, yes/no, on/off), any case; anything else is an argparse error."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", required=True, help="base directory; outputs in <root_dir>/meta_postprocess/")
    parser.add_argument("--analysis_config", required=True,
                        help="JSON: {\"results\": {label: results dir}, \"markers\": [...], \"colors\": [...]}")
    parser.add_argument("--metric", default="mse", choices=list(METRICS), help="metric to compare")
    parser.add_argument("--exp_id", default="exp1", help="name of this comparison (output subdirectory)")
    for flag, text in (("--enable_skill_scores", "plot skill scores against each baseline (persistence, the last "
                                                 "frame held)"),
                       ("--enable_persit_plot", "add the baselines' curves to the score plot")):
        parser.add_argument(flag, nargs="?", const=True, default=False, type=boolean, metavar="True|False",
                            help=text)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # one unit of work: under MPI rank 0 does it (the others wait), so the output is the same for any N
    on_root(lambda: run_meta_postprocess(args.root_dir, args.analysis_config, metric=args.metric,
                                         exp_id=args.exp_id, enable_skill_scores=args.enable_skill_scores,
                                         enable_persit_plot=args.enable_persit_plot))
    return 0


if __name__ == "__main__":
    run_cli(main)
