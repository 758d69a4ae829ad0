"""Meta-postprocessing of three synthetic Results directories."""
import csv
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fixtures.common import assert_user_error, mpiexec, run_module
from video_prediction_tools.main_scripts.main_meta_postprocess import parse_args
from video_prediction_tools.postprocess.bootstrap import summarize_metrics
from video_prediction_tools.utils.settings import templates_dir

MODULE = "video_prediction_tools.main_scripts.main_meta_postprocess"


def write_results(results_dir, model, scale, seed, baselines=("persistence", "copy_last_frame"), conventions=None):
    """A Results dir whose evaluation_metrics.nc holds mse and acc of ``model`` (MSE = scale x lead) and of the
    ``baselines``: persistence (MSE = 2 x scale x lead), copy_last_frame (MSE = 4 x scale x lead)."""
    rng = np.random.default_rng(seed)
    init = pd.date_range("2018-01-01", periods=60, freq="h").values
    coords = {"init_time": init, "fcst_hour": np.arange(1, 13)}
    mse = scale * np.arange(1, 13) * rng.uniform(0.8, 1.2, (60, 12))
    data = {f"2t_{model}_mse": mse, f"2t_{model}_acc": 1 - 0.01 * mse}
    for baseline, factor in (("persistence", 2), ("copy_last_frame", 4)):
        if baseline in baselines:
            data.update({f"2t_{baseline}_mse": factor * mse, f"2t_{baseline}_acc": 1 - 0.01 * factor * mse})
    raw = xr.Dataset({name: (("init_time", "fcst_hour"), values, {"units": "K^2" if "mse" in name else "1"})
                      for name, values in data.items()}, coords=coords,
                     attrs={"model": model, "variable": "2t", "products": " ".join((model, *baselines)),
                            **({"metric_conventions": conventions} if conventions else {})})
    results_dir.mkdir(parents=True)
    summarize_metrics(raw, block_length=6, nboots=200).to_netcdf(results_dir / "evaluation_metrics.nc")
    return mse


@pytest.fixture
def three_runs(tmp_path):
    root = tmp_path / "base"
    runs = {"convLSTM cv1": ("convLSTM", 1.0), "savp cv1": ("savp", 0.5), "vae cv1": ("vae", 1.5)}
    raw = {}
    for seed, (label, (model, scale)) in enumerate(runs.items()):
        raw[label] = write_results(root / "Results" / "exp" / model / "run1", model, scale, seed)
    config = {"results": {label: f"Results/exp/{model}/run1" for label, (model, _) in runs.items()},
              "markers": ["X", "P", "o"], "colors": ["r", "b", "g"]}
    config_path = tmp_path / "meta_config.json"
    config_path.write_text(json.dumps(config))
    return root, config_path, raw


def test_three_runs_with_skill_scores(three_runs):
    root, config_path, raw = three_runs
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config_path, "--metric", "mse",
                        "--exp_id", "cmp", "--enable_skill_scores", "--enable_persit_plot")
    assert result.returncode == 0, result.stderr
    out = root / "meta_postprocess" / "cmp"
    for name in ("meta_config.json", "mse_abs_values.png", "mse_skill_scores.png",
                 "mse_skill_scores_copy_last_frame.png", "mse_summary.csv", "mse_summary.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "meta_config.json").read_text()) == json.loads(config_path.read_text())
    with open(out / "mse_summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 12
    assert {row["run"] for row in rows} == {"convLSTM cv1", "savp cv1", "vae cv1"}
    for row in rows:
        # persistence MSE is twice the model's in every sample → skill 0.5 in every replicate; the last frame's is
        # four times the model's → skill 0.75
        assert float(row["skill_median"]) == pytest.approx(0.5, rel=1e-9)
        assert float(row["skill_copy_last_frame_median"]) == pytest.approx(0.75, rel=1e-9)
        assert float(row["copy_last_frame_median"]) == pytest.approx(2 * float(row["persistence_median"]), rel=1e-5)
    savp_lead3 = next(r for r in rows if r["run"] == "savp cv1" and r["fcst_hour"] == "3")
    assert float(savp_lead3["mse_mean"]) == pytest.approx(raw["savp cv1"][:, 2].mean(), rel=1e-5)
    assert float(savp_lead3["mse_q05"]) <= float(savp_lead3["mse_median"]) <= float(savp_lead3["mse_q95"])
    assert "| run | model | fcst_hour |" in (out / "mse_summary.md").read_text()


def test_flags_accept_values_and_false_means_false(three_runs):
    root, config_path, _ = three_runs
    args = parse_args(["--root_dir", "r", "--analysis_config", "c", "--enable_skill_scores", "False"])
    assert args.enable_skill_scores is False and args.enable_persit_plot is False
    args = parse_args(["--root_dir", "r", "--analysis_config", "c", "--enable_skill_scores", "True",
                       "--enable_persit_plot"])
    assert args.enable_skill_scores is True and args.enable_persit_plot is True
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config_path, "--metric", "acc",
                        "--exp_id", "noskill", "--enable_skill_scores", "False")
    assert result.returncode == 0, result.stderr
    out = root / "meta_postprocess" / "noskill"
    assert (out / "acc_abs_values.png").is_file()
    assert not (out / "acc_skill_scores.png").exists()
    with open(out / "acc_summary.csv") as handle:
        assert all(row["skill_median"] == "nan" for row in csv.DictReader(handle))


def test_bad_inputs_are_user_errors(three_runs, tmp_path):
    root, config_path, _ = three_runs
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config_path, "--metric", "ssim")
    assert_user_error(result, "no bootstrapped metric 'ssim'", "mse")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": {"a": "x", "b": "y"}, "markers": ["X"], "colors": ["r", "b"]}))
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", bad)
    assert_user_error(result, "markers", "one entry per result")
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"results": {"a": "Results/none"}}))
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", missing)
    assert_user_error(result, "evaluation_metrics.nc not found")
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config_path, "--enable_skill_scores",
                        "maybe")
    assert result.returncode == 2 and "expected True or False" in result.stderr
    # a refused run writes nothing: no output directory, log, config or plot
    assert not (root / "meta_postprocess").exists()


def test_skill_scores_need_persistence(tmp_path):
    root = tmp_path / "base"
    write_results(root / "quick", "convLSTM", 1.0, 0, baselines=())
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"results": {"quick run": "quick"}}))
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config, "--enable_skill_scores")
    assert_user_error(result, "persistence", "quick run")
    assert not (root / "meta_postprocess").exists()  # refused before writing its config, log or a plot
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config, "--enable_persit_plot")
    assert result.returncode == 0, result.stderr


def test_a_run_postprocessed_before_the_last_frame_baseline_is_compared_on_persistence(tmp_path):
    root = tmp_path / "base"
    write_results(root / "new", "convLSTM", 1.0, 0)
    write_results(root / "old", "savp", 0.5, 1, baselines=("persistence",))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"results": {"new run": "new", "old run": "old"}}))
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config, "--exp_id", "mixed",
                        "--enable_skill_scores", "--enable_persit_plot")
    assert result.returncode == 0, result.stderr
    assert "no skill against copy_last_frame for old run" in result.stderr
    out = root / "meta_postprocess" / "mixed"
    assert (out / "mse_skill_scores.png").is_file() and (out / "mse_skill_scores_copy_last_frame.png").is_file()
    rows = pd.read_csv(out / "mse_summary.csv")
    old, new = rows[rows["run"] == "old run"], rows[rows["run"] == "new run"]
    np.testing.assert_allclose(old["skill_median"], 0.5, rtol=1e-9)
    assert old["skill_copy_last_frame_median"].isna().all() and old["copy_last_frame_median"].isna().all()
    np.testing.assert_allclose(new["skill_copy_last_frame_median"], 0.75, rtol=1e-9)


def test_runs_whose_metric_definitions_differ_are_not_compared(tmp_path):
    root = tmp_path / "base"
    write_results(root / "a", "convLSTM", 1.0, 0, conventions="ambs")
    write_results(root / "b", "savp", 0.5, 1, conventions="gmd2022")
    write_results(root / "c", "vae", 1.5, 2)  # written before conventions existed: the AMBS definitions
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"results": {"ours": "a", "paper": "b", "old": "c"}}))
    # ACC: gmd2022 takes the climatology of the hour before the valid time, ambs that of the valid time
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config, "--metric", "acc")
    assert_user_error(result, "--metric acc is defined differently", "ours (ambs), old (ambs); paper (gmd2022)",
                      "--metric_conventions")
    assert not (root / "meta_postprocess").exists()
    # MSE is the same under both conventions: the comparison runs
    result = run_module(MODULE, "--root_dir", root, "--analysis_config", config, "--metric", "mse")
    assert result.returncode == 0, result.stderr


def test_template_is_a_valid_config():
    from video_prediction_tools.postprocess.meta import load_meta_config

    config = load_meta_config(templates_dir() / "meta_postprocess" / "meta_config_template.json")
    assert len(config["markers"]) == len(config["colors"]) == len(config["results"])


@pytest.mark.slow
@pytest.mark.mpi
def test_under_mpi_the_outputs_are_written_once(three_runs):
    root, config_path, _ = three_runs
    result = mpiexec(2, MODULE, "--root_dir", root, "--analysis_config", config_path, "--exp_id", "mpi",
                     "--enable_skill_scores", "True")
    assert result.returncode == 0, result.stderr
    out = root / "meta_postprocess" / "mpi"
    assert sorted(p.name for p in out.iterdir()) == ["meta_config.json", "meta_postprocess.log", "mse_abs_values.png",
                                                     "mse_skill_scores.png", "mse_skill_scores_copy_last_frame.png",
                                                     "mse_summary.csv", "mse_summary.md"]
