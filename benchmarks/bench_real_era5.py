"""Every model on real weather: the quick start on the real ERA5 file of March 2019, one model after the other, and
the table of the results.

Each model goes through the quick start on your own ERA5 (``quick_start.Era5Demo``, what ``quick_start.sh --era5``
runs: extraction, preprocessing 1 and 2, shared by all models and done once in ``--workdir``, then training with
the model's demo preset, postprocessing and meta-postprocessing through generated runscripts) with one fixed split
by dates, :data:`SPLIT`: train 1-21 March, validate 22-25, test 26-31 (121 test forecasts of 12 h from 12 h).
The box is the quick start's default, the whole grid of the file (33 x 49 points at 0.25° from 50N 10W), unless
``--region`` is given. The real file is read where it lies (never copied).

Written to ``--out`` (default ``<workdir>/bench``):

* ``real_era5.md`` and ``real_era5.json``: per model the test MSE of 2 m temperature (K²) at every lead hour 1..12,
  the two baselines' (persistence: the analysis 24 h before the valid time; the last input frame held) and the skill
  ``1 - MSE / MSE_baseline`` against each, and the training wall time (s, from the run's ``results.json``);
* ``<model>_example.png``: the forecast map postprocessing drew for the median-MSE test window.

A model whose chain fails (e.g. a training that diverged) is reported and skipped; the exit status is then 1.

Example (one training at a time; a few minutes per model on 2 CPU cores)::

    python benchmarks/bench_real_era5.py --workdir /tmp/real_era5_bench --models convLSTM
    python benchmarks/bench_real_era5.py --workdir /tmp/real_era5_bench --out /tmp/bench --venv_path ambs_test
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from video_prediction_tools import quick_start  # noqa: E402
from video_prediction_tools.models.registry import known_models  # noqa: E402
from video_prediction_tools.utils.errors import UserError  # noqa: E402
from video_prediction_tools.utils.io import read_json, write_json, write_text  # noqa: E402
from video_prediction_tools.utils.settings import resolve_venv  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the real file where it lies: beside the repository, or under ``$AMBS_SHARED_DATA`` (as the tests find it)
REAL_ERA5_T2M = Path(os.environ.get("AMBS_SHARED_DATA") or REPO_ROOT.parent / "shared/data") \
    / "era5_t2m_uk_2019_03/era5-2mt-2019-03-uk.grib"
SPLIT = {"train": [["2019-03-01T00", "2019-03-21T23"]], "val": [["2019-03-22T00", "2019-03-25T23"]],
         "test": [["2019-03-26T00", "2019-03-31T23"]]}
#: (column prefix of summary_metrics.csv, column of the model's skill against it, key in the JSON rows)
BASELINES = (("persistence", "skill_mse", "persistence"), ("copy_last_frame", "skill_copy_last_frame_mse",
                                                            "last_frame"))
TABLE_LEADS = (1, 2, 3, 6, 12)


def run_model(model: str, args: argparse.Namespace) -> dict:
    """The demo preset of ``model`` through the quick start on the real file; its row of the table."""
    demo = quick_start.Era5Demo(
        venv_dir=resolve_venv(args.venv_path), demo_dir=args.workdir, preset=quick_start.load_preset("demo"),
        exp_id=f"real_{model}", model=model, datasplit=SPLIT, source=args.grib,
        region=args.region)
    results_dir = demo.run()
    quick_start.report(demo, results_dir)
    rows = quick_start.read_summary(results_dir)
    # the newest run of this model (run directories are named <timestamp>_<user>_<exp_id>)
    results = read_json(sorted(args.workdir.glob(f"Models/*/{model}/*_real_{model}/results.json"))[-1])
    row = {"model": model, "region": str(demo.region), "hparams": demo.hparams, "steps": results["step"],
           "train_time_s": results["train_time"], "results_dir": str(results_dir),
           "mse": [r[f"{model}_mse"] for r in rows]}
    for product, skill, key in BASELINES:
        row[f"{key}_mse"] = [r[f"{product}_mse"] for r in rows]
        row[f"skill_{key}"] = [r[skill] for r in rows]
    example = sorted(results_dir.glob("forecast_2t_*_mse_50percentile.png"))
    if example:
        shutil.copyfile(example[0], args.out / f"{model}_example.png")
    return row


def markdown(rows: list[dict]) -> str:
    """The MSE (K²) at :data:`TABLE_LEADS` with the skill against each baseline, the baselines' rows last."""
    header = ["model", "steps, training s", *(f"+{h} h" for h in TABLE_LEADS), "skill vs persistence +1 / +3 / +12 h",
              "skill vs last frame +1 / +3 / +12 h"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        skills = [" / ".join(f"{row[f'skill_{key}'][h - 1]:.2f}" for h in (1, 3, 12)) for _, _, key in BASELINES]
        lines.append(f"| {row['model']} | {row['steps']}, {row['train_time_s']:.0f} | "
                     + " | ".join(f"{row['mse'][h - 1]:.2f}" for h in TABLE_LEADS) + f" | {' | '.join(skills)} |")
    for _, _, key in BASELINES:
        lines.append(f"| {key.replace('_', ' ')} (baseline) | | "
                     + " | ".join(f"{rows[0][f'{key}_mse'][h - 1]:.2f}" for h in TABLE_LEADS) + " | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=known_models(), help="models to run (default: all)")
    parser.add_argument("--workdir", type=Path, required=True, help="quick-start directory (data shared by models)")
    parser.add_argument("--out", type=Path, help="directory of the table and figures (default: <workdir>/bench)")
    parser.add_argument("--grib", type=Path, default=REAL_ERA5_T2M, help="the real ERA5 file")
    parser.add_argument("--region", help="LAT,LON,NY,NX as quick_start.sh's --region (default: the whole grid)")
    parser.add_argument("--venv_path", default="ambs_test", help="venv of the runscripts (default: ambs_test)")
    args = parser.parse_args(argv)
    for model in args.models:
        quick_start.preset_hparams(quick_start.load_preset("demo"), model, "demo")  # all checked before training
    try:
        args.region = quick_start.parse_region(args.region) if args.region else None
    except UserError as error:
        sys.exit(f"ERROR: {error}")
    if not args.grib.is_file():
        sys.exit(f"ERROR: the real ERA5 file {args.grib} is not there (set AMBS_SHARED_DATA to its data folder)")
    args.workdir = args.workdir.resolve()
    args.out = (args.out or args.workdir / "bench").resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for model in args.models:
        print(f"\n##### {model} #####", flush=True)
        try:
            rows.append(run_model(model, args))
        except UserError as error:  # e.g. a training that diverged: the other models still run
            print(f"ERROR: {model}: {error}", flush=True)
            failed.append(model)
            continue
        write_json(args.out / "real_era5.json", rows)  # after every model: an interrupted run keeps what finished
        write_text(args.out / "real_era5.md", markdown(rows))
    if rows:
        print("\n" + markdown(rows))
        print(f"table: {args.out / 'real_era5.md'} (and .json); example maps: {args.out}/<model>_example.png")
    if failed:
        print(f"ERROR: not measured (failed, see above): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
