"""The model zoo: the quick start's demo preset of each model, one model after the other, and a table of the results.

Each model goes through the quick-start chain (``quick_start.Demo``: synthetic archive, extraction, preprocessing
1 and 2, shared by all models and done once, then training with the preset's hyper-parameters for the model,
postprocessing and meta-postprocessing through generated runscripts) in ``--demo_dir``. Stochastic models (savp,
ours_gan, ours_vae_l1, vae) are postprocessed with ``--num_stochastic_samples`` members per window.

Written to ``--out`` (default ``<demo_dir>/zoo``):

* ``model_zoo.md`` and ``model_zoo.json``: per model the test MSE of 2 m temperature (K²) at every lead hour and
  persistence's (same hour of the previous day), the skill ``1 - MSE / MSE_persistence`` per lead, whether the
  model beats persistence at every lead, trainable parameters, training steps and training wall time (s, from the
  run's ``results.json``), the wall time of the whole model (training + postprocessing + meta, s); for stochastic
  models the members' spread (standard deviation across members, K, mean over windows, points and leads, at lead
  1 and 12) and whether the members differ;
* ``<model>_example.png``: the forecast map postprocessing drew for the median-MSE window (50th percentile).

Example (one training at a time; about 5-10 minutes per model on 2 CPU cores)::

    python benchmarks/bench_model_zoo.py --demo_dir /tmp/zoo_demo --venv_path ambs_test
    python benchmarks/bench_model_zoo.py --demo_dir /tmp/zoo_demo --models convLSTM vae --num_stochastic_samples 4
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from video_prediction_tools import quick_start  # noqa: E402
from video_prediction_tools.models.registry import known_models  # noqa: E402
from video_prediction_tools.utils.io import read_json, write_json, write_text  # noqa: E402
from video_prediction_tools.utils.settings import resolve_venv  # noqa: E402

#: models whose forecasts are drawn from latent variables (several members per window)
STOCHASTIC = ("savp", "ours_gan", "ours_vae_l1", "vae")
VARIABLE = "2t"


def trainable_parameters(model: str, hparams: dict, frame_shape: tuple[int, int, int]) -> int:
    """Trainable parameters of ``model`` built with the run's hyper-parameters (generator and discriminators)."""
    from video_prediction_tools.models.registry import build_model

    built = build_model(model, hparams, frame_shape=frame_shape)
    return int(sum(np.prod(v.shape) for v in built.trainable_variables))


def member_spread(results_dir: Path, model: str) -> dict:
    """Spread of the members of a stochastic forecast: standard deviation across members (K) of 2 m temperature,
    averaged over windows, points and leads, at leads 1 and 12, and the largest difference between two members."""
    spreads, largest = [], 0.0
    for path in sorted(results_dir.glob("vfp_date_*_sample_ind_*.nc")):
        with xr.open_dataset(path) as ds:
            members = ds[f"{VARIABLE}_{model}_fcst"]
            if "sample" not in members.dims:
                return {"members": 1}
            values = members.values  # [sample, fcst_hour, lat, lon]
        spreads.append(values.std(axis=0).mean(axis=(1, 2)))  # per lead
        largest = max(largest, float((values.max(axis=0) - values.min(axis=0)).max()))
    per_lead = np.mean(spreads, axis=0)
    return {"members": int(values.shape[0]), "spread_K": float(per_lead.mean()), "spread_lead1_K": float(per_lead[0]),
            "spread_lead12_K": float(per_lead[-1]), "largest_member_difference_K": largest,
            "members_differ": largest > 0.0}


def run_model(model: str, demo_dir: Path, venv: str, members: int, out: Path) -> dict:
    """The demo preset of ``model`` through the quick-start chain; its row of the table."""
    preset = quick_start.load_preset("demo")
    demo = quick_start.Demo(venv_dir=resolve_venv(venv), demo_dir=demo_dir, preset=preset, exp_id=f"zoo_{model}",
                            model=model, num_stochastic_samples=members if model in STOCHASTIC else 1)
    started = time.perf_counter()
    results_dir = demo.run()
    wall = time.perf_counter() - started
    code = quick_start.report(demo, results_dir)
    rows = quick_start.read_summary(results_dir)
    # the newest run of this model (run directories are named <timestamp>_<user>_<exp_id>)
    results = read_json(sorted(demo_dir.glob(f"Models/*/{model}/*_zoo_{model}/results.json"))[-1])
    frame_shape = (*preset["nyx"], 3)
    row = {"model": model, "hparams": demo.hparams,
           "mse": [r[f"{model}_mse"] for r in rows], "persistence_mse": [r["persistence_mse"] for r in rows],
           "beats_persistence_everywhere": code == 0, "parameters": trainable_parameters(model, demo.hparams, frame_shape),
           "steps": results["step"], "train_time_s": results["train_time"], "wall_time_s": wall,
           "results_dir": str(results_dir)}
    row["skill"] = [1.0 - m / p for m, p in zip(row["mse"], row["persistence_mse"])]
    if model in STOCHASTIC:
        row["stochastic"] = member_spread(results_dir, model)
    example = sorted(results_dir.glob(f"forecast_{VARIABLE}_*_mse_50percentile.png"))
    if example:
        shutil.copyfile(example[0], out / f"{model}_example.png")
    return row


def markdown(rows: list[dict]) -> str:
    leads = (1, 3, 6, 9, 12)
    header = ["model", "parameters", "steps", "training s", "total s", *(f"MSE +{h} h" for h in leads),
              "skill +1 / +12 h", "beats persistence at every lead", "member spread +1 / +12 h (K)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        stochastic = row.get("stochastic", {})
        spread = (f"{stochastic['spread_lead1_K']:.2f} / {stochastic['spread_lead12_K']:.2f} "
                  f"({stochastic['members']} members, differ: {'yes' if stochastic['members_differ'] else 'NO'})"
                  if stochastic.get("members", 1) > 1 else "")
        lines.append(f"| {row['model']} | {row['parameters']:,d} | {row['steps']} | {row['train_time_s']:.0f} | "
                     f"{row['wall_time_s']:.0f} | " + " | ".join(f"{row['mse'][h - 1]:.2f}" for h in leads)
                     + f" | {row['skill'][0]:.3f} / {row['skill'][-1]:.3f} | "
                       f"{'yes' if row['beats_persistence_everywhere'] else 'no'} | {spread} |")
    persistence = rows[0]["persistence_mse"]
    lines.append("| persistence |" + " |" * 4 + " " + " | ".join(f"{persistence[h - 1]:.2f}" for h in leads)
                 + " |" + " |" * 3)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=known_models(), help="models to run (default: all)")
    parser.add_argument("--demo_dir", type=Path, required=True, help="demo directory (data reused between models)")
    parser.add_argument("--venv_path", default="ambs_test", help="venv of the runscripts (default: ambs_test)")
    parser.add_argument("--num_stochastic_samples", type=int, default=3,
                        help="members per window of the stochastic models (default: 3)")
    parser.add_argument("--out", type=Path, help="directory of the table and figures (default: <demo_dir>/zoo)")
    args = parser.parse_args(argv)
    for model in args.models:
        quick_start.preset_hparams(quick_start.load_preset("demo"), model, "demo")  # all checked before training
    demo_dir = args.demo_dir.resolve()
    out = (args.out or demo_dir / "zoo").resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models:
        print(f"\n##### {model} #####", flush=True)
        rows.append(run_model(model, demo_dir, args.venv_path, args.num_stochastic_samples, out))
        write_json(out / "model_zoo.json", rows)  # after every model: an interrupted zoo keeps what finished
        write_text(out / "model_zoo.md", markdown(rows))
    print("\n" + markdown(rows))
    print(f"table: {out / 'model_zoo.md'} (and .json); example figures: {out}/<model>_example.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
