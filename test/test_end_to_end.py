"""End to end: the quick-start chain at its tiny size (preset ``tiny``), through runscripts that the generator
writes from answers files and that run with bash, checking what every step leaves behind.

Tiny archive: 8x12 points, 2 days of January (val), all 28 days of February (train), 2 days of March (test, 25
windows of 24 h); convLSTM with 8 features, 10 epochs, trained on all channels, which beats persistence at every
lead hour (the demo's exit status 0 and the summary table say so). The persistence MSE of the summary table is
recomputed here from the extracted netCDF files (independent of the TFRecords and of postprocessing). The steps
extract, preprocess1 and preprocess2 run under ``mpiexec -n 2`` (``mpi_processes: 2`` in templates/quick_start/).
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from fixtures.common import run_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEST_WINDOWS = 2 * 24 - 24 + 1
LEADS = range(1, 13)
pytestmark = [pytest.mark.slow, pytest.mark.mpi]


def _single(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} under {root}, found {found}"
    return found[0]


def _assert_png(path: Path) -> None:
    assert path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """Run the tiny demo once; the venv of this interpreter (made by create_env.sh) runs the runscripts."""
    demo_dir = tmp_path_factory.mktemp("e2e") / "ambs_demo"
    result = run_module("video_prediction_tools.main_scripts.main_quick_start", "--venv_path", sys.prefix,
                        "--preset", "tiny", "--demo_dir", str(demo_dir), "--exp_id", "e2e")
    # 0 = chain complete and persistence beaten at every lead hour (3 would be: complete but not beaten)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return demo_dir, result.stdout


def test_runscripts_are_generated_no_hpc_and_run(tiny_demo):
    demo_dir, _ = tiny_demo
    scripts = demo_dir / "no_HPC_scripts"
    for pattern in ("data_extraction_era5.sh", "preprocess_data_era5_step1.sh", "preprocess_data_era5_step2.sh",
                    "train_model_era5_*_e2e.sh", "visualize_postprocess_era5_*_e2e.sh",
                    "meta_postprocess_era5_*_e2e.sh"):
        script = _single(pattern, scripts)
        text = script.read_text()
        assert "#SBATCH" not in text and "srun" not in text
        assert script.with_name(script.name + ".answers.yaml").is_file()


def test_extraction_and_preprocessing_outputs(tiny_demo):
    demo_dir, _ = tiny_demo
    for month, hours in ((1, 48), (2, 672), (3, 48)):
        path = demo_dir / "ExtractedData" / "2017" / f"{month:02d}" / f"era5_2017_{month:02d}.nc"
        with xr.open_dataset(path) as ds:
            assert {"2t", "tcc", "msl", "t_850"} <= set(ds.data_vars)
            assert ds["2t"].dims == ("time", "lat", "lon") and ds.sizes["time"] == hours
            assert np.all(np.diff(ds["lat"].values) < 0)
            assert 240.0 < float(ds["2t"].min()) and float(ds["2t"].max()) < 310.0
    experiment = _single("PreprocessedData/*/metadata.json", demo_dir).parent
    metadata = json.loads((experiment / "metadata.json").read_text())
    assert metadata["frame_size"] == {"nx": 12, "ny": 8}
    assert [next(iter(v.values())) for v in metadata["variables"]] == ["2t", "tcc", "t_850"]
    records = sorted(p.name for p in (experiment / "tfrecords").glob("*.tfrecords"))
    assert records == [f"sequence_Y_2017_M_{m:02d}.tfrecords" for m in (1, 2, 3)]
    statistics = json.loads((experiment / "statistics.json").read_text())
    assert statistics["2t"]["count"] == (48 + 672 + 48) * 8 * 12


def test_training_run_directory(tiny_demo):
    demo_dir, _ = tiny_demo
    run_dir = _single("Models/*/convLSTM/*_e2e", demo_dir)
    hparams = json.loads((run_dir / "model_hparams.json").read_text())
    assert hparams["num_features"] == 8 and hparams["max_epochs"] == 10 and hparams["opt_var"] == "all"
    best = json.loads((run_dir / "best_checkpoint.json").read_text())
    assert (run_dir / f"checkpoint_{best['step']}" / "model.weights.h5").is_file()
    assert np.isfinite(best["val_loss"])
    _assert_png(run_dir / "plot_train.png")


def test_postprocessing_results_and_persistence_by_hand(tiny_demo):
    demo_dir, stdout = tiny_demo
    results = _single("Results/*/convLSTM/*_e2e", demo_dir)
    samples = sorted(results.glob("vfp_date_*_sample_ind_*.nc"))
    assert len(samples) == TEST_WINDOWS
    assert samples[0].name.startswith("vfp_date_2017030111_")  # first window: 00 UTC + 11 context hours
    with xr.open_dataset(samples[0]) as sample:
        assert any(name.startswith("2t") for name in sample.data_vars)
    with xr.open_dataset(results / "evaluation_metrics.nc") as evaluation:
        assert evaluation["2t_convLSTM_mse_avg"].sizes["fcst_hour"] == 12
    _assert_png(results / "evaluation_mse.png")
    with (results / "summary_metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["fcst_hour"]) for row in rows] == list(LEADS)
    assert (results / "summary_metrics.md").is_file()

    # persistence = same hour of the previous day, domain cropped with the metadata's coordinates
    metadata = json.loads(_single("PreprocessedData/*/metadata.json", demo_dir).read_text())
    files = [demo_dir / "ExtractedData" / "2017" / f"{m:02d}" / f"era5_2017_{m:02d}.nc" for m in (2, 3)]
    with xr.open_mfdataset(files) as extracted:
        t2m = extracted["2t"].sel(lat=metadata["coordinates"]["lat"], lon=metadata["coordinates"]["lon"]).load()
    starts = np.datetime64("2017-03-01T00") + np.arange(TEST_WINDOWS) * np.timedelta64(1, "h")
    for row, lead in zip(rows, LEADS):
        valid = starts + np.timedelta64(11 + lead, "h")
        difference = t2m.sel(time=valid).values.astype(np.float64) - \
            t2m.sel(time=valid - np.timedelta64(24, "h")).values.astype(np.float64)
        assert float(row["persistence_mse"]) == pytest.approx(np.mean(difference ** 2), rel=1e-4)
    for row in rows:
        assert float(row["convLSTM_mse"]) < float(row["persistence_mse"]), row
    assert "2t MSE [K^2] per lead hour" in stdout and "beats persistence at every lead hour 1..12" in stdout


def test_meta_postprocessing(tiny_demo):
    demo_dir, _ = tiny_demo
    meta = _single("meta_postprocess/*_e2e", demo_dir)
    pngs = sorted(meta.glob("*.png"))
    assert pngs
    for png in pngs:
        _assert_png(png)


def test_summary_rows_keep_the_conventions_column(tmp_path):
    """The quick start's summary reader takes scores as numbers and the metric conventions as text."""
    from video_prediction_tools.quick_start import read_summary

    (tmp_path / "summary_metrics.csv").write_text("fcst_hour,convLSTM_mse,persistence_mse,metric_conventions\n"
                                                  "1,0.5,2.25,ambs\n")
    assert read_summary(tmp_path) == [{"fcst_hour": 1.0, "convLSTM_mse": 0.5, "persistence_mse": 2.25,
                                       "metric_conventions": "ambs"}]
