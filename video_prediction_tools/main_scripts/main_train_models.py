"""Train a video-prediction model on preprocessed ERA5 (or Moving MNIST) data, resumably.

Writes into ``--output_dir`` (created if missing): ``model_hparams.json`` (resolved, with ``sequence_length``),
``data_split.json``, ``options.json``, ``normalization.json``, ``checkpoint_<step>/``, ``best_checkpoint.json``,
loss/timing logs (``train_losses.csv``, ``val_losses.csv``, ``losses.json``, ``results.json``),
``plot_train.png``, TensorBoard logs in ``logs/``, ``train.log`` and ``run_identity.json``. Rerunning the same
command into the same ``--output_dir`` continues from its newest complete checkpoint (or completes the end-of-run
files of a finished run); a rerun with another data split, other hyper-parameters, another seed or changed input
data is refused unless ``--start_over`` is given. Several GPUs, several SLURM tasks (``srun``) or ``TF_CONFIG``
select a ``tf.distribute`` strategy automatically; ``batch_size`` is the global batch.

Example::

    python -m video_prediction_tools.main_scripts.main_train_models \\
        --input_dir PreprocessedData/era5-Y2017-2017M01to04-12x8-4290N0600E-2t_tcc_t_850 \\
        --output_dir Models/era5-Y2017-2017M01to04-12x8-4290N0600E-2t_tcc_t_850/convLSTM/run1 \\
        --datasplit_dict data_split.json --dataset era5 --model convLSTM \\
        --model_hparams_dict templates/hparams/era5/convLSTM/model_hparams_template.json \\
        --frac_start_save 0.5 --frac_intv_save 0.1 --seed 1234
"""
from __future__ import annotations

if not __package__:  # run by path, as the original's runscripts do: make the package importable
    import _run_by_path  # noqa: F401

import argparse
from typing import Sequence

from video_prediction_tools.datasets.registry import known_datasets
from video_prediction_tools.main_scripts import legacy_options
from video_prediction_tools.utils.errors import run_cli

#: why the original's --gpu_mem_frac is not needed
GPU_MEMORY_NOTE = "TensorFlow takes GPU memory as it needs it"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input_dir", "-input_dir", required=True,
                        help="PreprocessedData/<EXPNAME> (or its tfrecords/ directory)")
    parser.add_argument("--output_dir", "-output_dir", required=True, help="run directory (created if missing)")
    parser.add_argument("--datasplit_dict", "-datasplit_dict", required=True,
                        help="data split JSON: {\"train\": {\"2017\": [1, 2]}, \"val\": {...}, \"test\": {...}}")
    parser.add_argument("--dataset", "-dataset", default="era5", choices=known_datasets())
    parser.add_argument("--model", "-model", required=True, help="model name (convLSTM, convLSTM_gan, savp, ...)")
    parser.add_argument("--model_hparams_dict", "-model_hparams_dict", default=None,
                        help="model hyper-parameters JSON (keys of that model only; defaults for missing keys)")
    parser.add_argument("--checkpoint", "-checkpoint", default=None,
                        help="checkpoint_<step> directory or run directory to resume from (default: the newest "
                             "complete checkpoint in --output_dir, if any)")
    parser.add_argument("--frac_start_save", type=float, default=1.0,
                        help="fraction of the total steps after which checkpoints are written (default 1: only "
                             "the last; < 1 also keeps only the best and the last at the end)")
    parser.add_argument("--frac_intv_save", type=float, default=0.01,
                        help="checkpoint interval as a fraction of the total steps (default 0.01)")
    parser.add_argument("--val_interval", type=int, default=None,
                        help="validate on the whole val split every this many steps (default: once per epoch; "
                             "always at checkpoints)")
    parser.add_argument("--stop_after_steps", type=int, default=None,
                        help="end this run after this many steps with a checkpoint (e.g. to fit a batch job's "
                             "time limit); rerun the same command to continue")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (weights, data order)")
    parser.add_argument("--start_over", action="store_true",
                        help="delete the training outputs of --output_dir (checkpoints, logs, JSON files written "
                             "by training) and train from scratch; without it, a rerun resumes only the same run "
                             "(same data split, hyper-parameters, seed and input data)")
    parser.add_argument("--normalization_months", choices=["train", "all"], default="train",
                        help="statistics that normalise the data: of the train split's months or hours "
                             "(default) or of every preprocessed month, as the original did (ERA5 only)")
    legacy_options.ignored(parser, "--gpu_mem_frac", reason=GPU_MEMORY_NOTE)
    legacy_options.ignored(parser, "--test_mode", "-test", takes_value=False,
                           reason="the best checkpoint is chosen on the validation loss, without bootstrapping")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from video_prediction_tools.training.trainer import TrainingOptions, train

    train(TrainingOptions(**vars(args)))
    return 0


if __name__ == "__main__":
    run_cli(main)
