"""Ensemble scores (CRPS, ensemble-mean errors, spread, spread-skill, rank histogram) against properscoring,
xskillscore, hand-made cases and synthetic ensembles of known calibration, and their way through postprocessing."""
import numpy as np
import properscoring
import pytest
import xarray as xr
import xskillscore as xs

from video_prediction_tools.postprocess import era5_job, meta, plots
from video_prediction_tools.postprocess import metrics as M
from video_prediction_tools.postprocess.bootstrap import skill_summary_rows, summarize_metrics
from video_prediction_tools.postprocess.evaluation import ScoreAccumulator
from video_prediction_tools.postprocess.forecast import rank_histogram_rows
from video_prediction_tools.utils.errors import UserError

NY, NX = 10, 14
LAT = np.linspace(50.0, 45.5, NY)
LON = np.linspace(3.0, 9.5, NX)
DIMS = ("init_time", "fcst_hour", "lat", "lon")


def ensemble(members=6, n_init=4, n_lead=3, seed=0, spread=1.0, truth_spread=1.0):
    """(members [sample, init, lead, lat, lon], truth [init, lead, lat, lon]) around a random mean per point:
    calibrated when ``spread == truth_spread``."""
    rng = np.random.default_rng(seed)
    coords = {"init_time": np.arange(n_init), "fcst_hour": np.arange(1, n_lead + 1), "lat": LAT, "lon": LON}
    centre = 280 + 5 * rng.standard_normal((n_init, n_lead, NY, NX))
    truth = xr.DataArray(centre + truth_spread * rng.standard_normal(centre.shape), dims=DIMS, coords=coords,
                         attrs={"units": "K"})
    forecast = xr.DataArray(centre + spread * rng.standard_normal((members, *centre.shape)), dims=("sample", *DIMS),
                            coords=coords, attrs={"units": "K"})
    return forecast, truth


def score(name, forecast, truth):
    return M.make_metrics([name])[0].compute(forecast, truth)


def test_fair_crps_equals_properscoring_with_the_fair_spread_term():
    forecast, truth = ensemble(members=5)
    k = 5
    members_last = np.moveaxis(forecast.values, 0, -1)
    plain = properscoring.crps_ensemble(truth.values, members_last)      # spread term 1 / (2 K^2)
    mae = np.abs(members_last - truth.values[..., None]).mean(axis=-1)
    spread_sum = 2 * k * k * (mae - plain)                               # sum_{j,k} |x_j - x_k| per point
    fair = (mae - spread_sum / (2 * k * (k - 1))).mean(axis=(-2, -1))
    crps = score("crps", forecast, truth)
    np.testing.assert_allclose(crps.values, fair, rtol=0, atol=1e-9)
    assert crps.dims == ("init_time", "fcst_hour")
    assert crps.attrs == {"long_name": M.CRPS.long_name, "units": "K", "ensemble_members": 5}


def test_crps_of_two_members_by_hand_and_of_one_member_is_the_mae():
    coords = {"lat": [1.0], "lon": [0.0, 1.0]}
    truth = xr.DataArray([[[1.0, 0.0]]], dims=("init_time", "lat", "lon"), coords=coords)
    members = xr.DataArray([[[[0.0, 0.0]]], [[[2.0, 4.0]]]], dims=("sample", "init_time", "lat", "lon"),
                           coords=coords)
    # point 1: mean|x - y| = 1, sum |x_j - x_k| = 4 -> 1 - 4 / 4 = 0; point 2: 2 - 8 / 4 = 0
    assert score("crps", members, truth).values.tolist() == [0.0]
    single = members.isel(sample=1)
    assert score("crps", single, truth).values.tolist() == [(1.0 + 4.0) / 2]   # the MAE
    assert score("crps", single, truth).attrs["ensemble_members"] == 1
    np.testing.assert_allclose(score("ensemble_mean_mse", single, truth).values,
                               score("mse", single, truth).values, rtol=1e-15)


def test_ensemble_mean_scores_and_spread_equal_xskillscore_and_numpy():
    forecast, truth = ensemble(members=4, seed=3)
    mean = forecast.mean("sample")
    np.testing.assert_allclose(score("ensemble_mean_mse", forecast, truth).values,
                               xs.mse(mean, truth, dim=["lat", "lon"]).values, rtol=1e-12)
    np.testing.assert_allclose(score("ensemble_mean_rmse", forecast, truth).values,
                               xs.rmse(mean, truth, dim=["lat", "lon"]).values, rtol=1e-12)
    spread = np.sqrt(forecast.var("sample", ddof=1).mean(["lat", "lon"]))
    np.testing.assert_allclose(score("spread", forecast, truth).values, spread.values, rtol=1e-12)
    np.testing.assert_allclose(score("spread_skill", forecast, truth).values,
                               (spread / xs.rmse(mean, truth, dim=["lat", "lon"])).values, rtol=1e-12)


def test_spread_of_known_members():
    coords = {"lat": [1.0, 2.0], "lon": [0.0]}
    truth = xr.DataArray([[[0.0], [0.0]]], dims=("init_time", "lat", "lon"), coords=coords)
    members = xr.DataArray(np.array([-1.0, 1.0, 3.0])[:, None, None, None] * np.ones((3, 1, 2, 1)),
                           dims=("sample", "init_time", "lat", "lon"), coords=coords)
    assert score("spread", members, truth).values.tolist() == [2.0]   # mean 1: variance (4 + 0 + 4) / 2 = 4
    assert score("ensemble_mean_rmse", members, truth).values.tolist() == [1.0]
    assert score("spread_skill", members, truth).values.tolist() == [2.0]


def test_rank_histogram_equals_xskillscore_and_hand_made_ranks():
    forecast, truth = ensemble(members=7, seed=5)
    expected = xs.rank_histogram(truth, forecast, dim=["lat", "lon"], member_dim="sample", random_for_tied=False)
    histogram = score("rank_histogram", forecast, truth)
    assert histogram.dims == ("init_time", "fcst_hour", "rank") and histogram["rank"].values.tolist() == list(range(8))
    np.testing.assert_array_equal(histogram.values, expected.values)
    coords = {"lat": [1.0], "lon": [0.0, 1.0, 2.0, 3.0]}
    truth = xr.DataArray([[[0.5, 5.0, -1.0, 1.0]]], dims=("init_time", "lat", "lon"), coords=coords)
    members = xr.DataArray(np.array([0.0, 1.0, 2.0])[:, None, None, None] * np.ones((3, 1, 1, 4)),
                           dims=("sample", "init_time", "lat", "lon"), coords=coords)
    # ranks 1, 3, 0, and a tie with one member above one below: ranks 1 and 2 half each
    assert score("rank_histogram", members, truth).values.tolist() == [[1.0, 1.5, 0.5, 1.0]]


def test_calibrated_ensemble_is_flat_and_has_corrected_spread_skill_one():
    members = 8
    forecast, truth = ensemble(members=members, n_init=20, n_lead=2, seed=11)
    ratio = score("spread_skill", forecast, truth)
    corrected = np.sqrt((members + 1) / members) * ratio
    assert abs(float(corrected.mean()) - 1.0) < 0.02
    assert abs(float(ratio.mean()) - M.calibrated_spread_skill(members)) < 0.02
    frequencies = score("rank_histogram", forecast, truth).sum(("init_time", "fcst_hour"))
    frequencies = frequencies / frequencies.sum()
    np.testing.assert_allclose(frequencies.values, 1 / (members + 1), atol=0.01)   # 5600 points


def test_identical_members_give_a_u_shaped_histogram_and_too_small_spread():
    forecast, truth = ensemble(members=5, n_init=10, seed=2, spread=0.0)
    histogram = score("rank_histogram", forecast, truth).sum(("init_time", "fcst_hour")).values
    assert histogram[0] + histogram[-1] == histogram.sum() and min(histogram[0], histogram[-1]) > 0.4 * histogram.sum()
    assert float(score("spread_skill", forecast, truth).max()) == 0.0
    under, _ = ensemble(members=5, n_init=10, seed=2, spread=0.3)
    histogram = score("rank_histogram", under, truth).sum(("init_time", "fcst_hour")).values
    assert histogram[0] > 2 * histogram[2] and histogram[-1] > 2 * histogram[2]


def test_spread_type_scores_need_two_members():
    forecast, truth = ensemble(members=1)
    for name in ("spread", "spread_skill", "rank_histogram"):
        with pytest.raises(ValueError, match="at least 2 members"):
            score(name, forecast, truth)
    assert [M.is_scalar(name) for name in ("crps", "spread_skill", "rank_histogram")] == [True, True, False]


def _scored(members=3, n_init=30):
    forecast, truth = ensemble(members=members, n_init=n_init, seed=7)
    names = ["mse", "crps", "ensemble_mean_mse", "spread", "spread_skill", "rank_histogram"]
    scores = ScoreAccumulator(M.make_metrics(names), ["savp", "persistence"], "2t", np.array([1, 2, 3]),
                              quantiles=False)
    scores.add(truth, {"savp": forecast, "persistence": truth.shift(init_time=1).fillna(280.0)})
    return scores.raw_dataset({"model": "savp", "variable": "2t"}), forecast, truth, names


def test_postprocessing_scores_the_members_together_and_baselines_as_one_member():
    raw, forecast, truth, names = _scored()
    assert "2t_persistence_crps" in raw and "2t_persistence_spread" not in raw
    assert raw["2t_savp_rank_histogram"].dims == ("init_time", "fcst_hour", "rank")
    np.testing.assert_allclose(raw["2t_savp_crps"].values, score("crps", forecast, truth).values, rtol=1e-12)
    persistence = truth.shift(init_time=1).fillna(280.0)
    np.testing.assert_allclose(raw["2t_persistence_crps"].values,
                               np.abs(persistence - truth).mean(["lat", "lon"]).values, rtol=1e-12)
    # the deterministic scores stay the means of the members' scores
    np.testing.assert_allclose(raw["2t_savp_mse"].values,
                               ((forecast - truth) ** 2).mean(["lat", "lon"]).mean("sample").values, rtol=1e-12)
    evaluation = summarize_metrics(raw, block_length=3, nboots=50)
    for name in ("crps", "ensemble_mean_mse", "spread", "spread_skill"):
        assert evaluation[f"2t_savp_{name}_bootstrapped"].dims == ("iboot", "fcst_hour")
    scalar = [name for name in names if M.is_scalar(name)]
    rows = skill_summary_rows(evaluation, "2t", "savp", scalar, {n: M.METRICS[n].perfect_score for n in scalar})
    crps, persistence_crps = rows[0]["savp_crps"], rows[0]["persistence_crps"]
    assert rows[0]["skill_crps"] == pytest.approx(1 - crps / persistence_crps)
    assert "persistence_spread" not in rows[0]
    table = rank_histogram_rows(evaluation["2t_savp_rank_histogram_avg"])
    assert [list(row) for row in table][0] == ["fcst_hour", "rank_0", "rank_1", "rank_2", "rank_3"]
    assert sum(value for key, value in table[0].items() if key != "fcst_hour") == pytest.approx(1.0)


def test_rank_histogram_figure_is_written(tmp_path):
    raw, *_ = _scored()
    histogram = raw["2t_savp_rank_histogram"].mean("init_time")
    path = plots.plot_rank_histograms(histogram, "2t: rank of the truth", tmp_path / "rank_histogram.png")
    assert path.stat().st_size > 1000


def test_default_metrics_need_an_ensemble_for_the_spread_and_asking_without_one_is_a_user_error():
    deterministic = era5_job.resolve_metric_names(None, None, members=1)
    assert "crps" in deterministic and "spread" not in deterministic
    assert era5_job.resolve_metric_names(None, None, members=8)[-3:] == ["spread", "spread_skill", "rank_histogram"]
    with pytest.raises(UserError, match="spread_skill need an ensemble.*drop spread_skill"):
        era5_job.resolve_metric_names(["crps", "spread_skill"], None, members=1)


def _run(label, members, crps):
    values = xr.DataArray(np.full((4, 2), crps), dims=("iboot", "fcst_hour"), coords={"fcst_hour": [1, 2]},
                          attrs={"units": "K", "ensemble_members": members})
    return meta.RunScores(label, None, "m", "2t", values, values.mean("iboot"), {}, "o", "r")


def test_meta_tables_say_what_crps_is_per_run_and_refuse_the_rank_histogram(tmp_path):
    runs = [_run("savp", 8, 0.5), _run("convLSTM", 1, 0.7)]
    rows = meta.with_ensemble_columns(meta.summary_rows(runs, {}, "crps"), runs, "crps")
    assert [(row["members"], row["scored_as"]) for row in rows[::2]] == [
        (8, f"{M.CRPS.long_name} (8 members)"), (1, "mean absolute error (one member)")]
    assert meta.with_ensemble_columns([{"run": "savp"}], runs, "mse") == [{"run": "savp"}]
    with pytest.raises(UserError, match="rank_histogram: not one number per forecast"):
        meta.run_meta_postprocess(tmp_path, tmp_path / "none.json", metric="rank_histogram")
