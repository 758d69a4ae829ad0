"""The quick start on your own ERA5 (``--era5``): the variables, dates and box taken from the data, refusals in one
line before anything is written, and the whole chain on the real March 2019 file (slow)."""
import sys
from pathlib import Path

import pytest
from fixtures.archive import REAL_ERA5_T2M, shared_data
from fixtures.common import assert_user_error, run_module

from video_prediction_tools import quick_start
from video_prediction_tools.utils.errors import UserError

MODULE = "video_prediction_tools.main_scripts.main_quick_start"
SOURCE = Path("cds.grib")


def _demo(source: Path, region=None) -> quick_start.Era5Demo:
    return quick_start.Era5Demo(venv_dir=Path("/venv"), demo_dir=Path("/nonexistent/demo"),
                                preset=quick_start.load_preset("tiny"), source=source, region=region)


def test_variables_found_make_the_mapping_and_the_channels():
    held = {"2t": [("surface", 0.0)], "msl": [("surface", 0.0)], "tcc": [("surface", 0.0)],
            "t": [("isobaricInhPa", 500.0), ("isobaricInhPa", 850.0)]}
    mapping, channels = quick_start.era5_variables(held, SOURCE)
    assert mapping == {"surface": ["2t", "msl", "tcc"], "multi": {"t": {"pl500": 50000, "pl850": 85000}}}
    assert channels == ["2t", "tcc", "t_850", "msl", "t_500"]  # the GMD ones first, in their order
    assert quick_start.era5_variables({"2t": [("surface", 0.0)]}, SOURCE) == ({"surface": ["2t"]}, ["2t"])
    with pytest.raises(UserError, match=r"--era5 cds.grib: holds no 2 m temperature .*; it holds: tcc, t$"):
        quick_start.era5_variables({"tcc": [("surface", 0.0)], "t": [("isobaricInhPa", 850.0)]}, SOURCE)


def test_dates_take_the_months_of_every_year():
    assert quick_start.era5_dates([(2019, 3)], SOURCE) == {"years": "2019", "months": "3"}
    assert quick_start.era5_dates([(2018, 5), (2018, 6), (2019, 5), (2019, 6), (2019, 7)], SOURCE) == {
        "years": "2018,2019", "months": "5,6"}
    with pytest.raises(UserError, match=r"no calendar month is held in every one of its years \(2018,2019\)"):
        quick_start.era5_dates([(2018, 12), (2019, 1)], SOURCE)


@pytest.mark.parametrize("text", ["50,-10,8", "50,-10,8,x", "north"])
def test_region_form(text):
    assert quick_start.parse_region("50.0, -10, 8,12") == quick_start.Region(50.0, -10.0, 8, 12)
    with pytest.raises(UserError, match=r"--region .*expected LAT,LON,NY,NX"):
        quick_start.parse_region(text)


def test_split_printout_names_hours_and_shares():
    split = {"train": [["2019-03-01T00", "2019-03-21T23"]], "val": [["2019-03-22T00", "2019-03-25T23"]],
             "test": [["2019-03-26T00", "2019-03-31T23"]]}
    assert quick_start.describe_split(split).splitlines() == [
        "  train 2019-03-01T00 .. 2019-03-21T23  (504 h, 68 %)",
        "  val   2019-03-22T00 .. 2019-03-25T23  (96 h, 13 %)",
        "  test  2019-03-26T00 .. 2019-03-31T23  (144 h, 19 %)"]


def test_real_file_gives_its_whole_grid_and_refuses_a_box_outside():
    """The UK file (33 x 49 points at 0.25°, 58-50N, 10W-2E): the default box is the whole grid from its SW point,
    west of the 0 meridian; a box reaching past the northern edge is refused naming what fits."""
    demo = _demo(shared_data(REAL_ERA5_T2M))
    assert demo.region == quick_start.Region(50.0, 350.0, 33, 49)
    assert str(demo.region) == "SW corner 50N 10W, 33 x 49 grid points"
    assert (demo.varmapping, demo.variables, demo.dates) == ({"surface": ["2t"]}, ["2t"],
                                                             {"years": "2019", "months": "3"})
    with pytest.raises(UserError, match=r"--region 50,-10,40,12 for the grid of .*at most 33 rows fit"):
        _demo(shared_data(REAL_ERA5_T2M), quick_start.Region(50.0, -10.0, 40, 12))


@pytest.mark.parametrize("arguments, fragments", [
    (["--region", "50,-10,8,12"], ["--region chooses the domain of your own ERA5", "--era5"]),
    (["--era5", "/nonexistent/era5.grib"], ["--era5 /nonexistent/era5.grib: no such file or directory"]),
])
def test_refusals_write_nothing(tmp_path, arguments, fragments):
    result = run_module(MODULE, "--venv_path", sys.prefix, "--demo_dir", tmp_path / "demo", *arguments, timeout=120)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "demo").exists()


def test_a_file_that_is_not_era5_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not data")
    with pytest.raises(UserError, match=r"notes.txt: not a GRIB or netCDF file"):
        _demo(text)


@pytest.mark.slow
def test_whole_chain_on_the_real_file(tmp_path):
    """One command on the real March 2019 file, tiny preset on an 8 x 12 box: exit 0 or 3 (the summary is printed
    either way), the split by dates printed, both baselines in the summary for every lead hour 1..12."""
    demo_dir = tmp_path / "era5demo"
    result = run_module(MODULE, "--venv_path", sys.prefix, "--era5", shared_data(REAL_ERA5_T2M), "--preset", "tiny",
                        "--region", "50,-10,8,12", "--demo_dir", demo_dir, timeout=600)
    assert result.returncode in (0, quick_start.NOT_BEATEN), result.stdout[-4000:] + result.stderr[-4000:]
    assert "  variables: 2t\n  years 2019, months 3\n  region: SW corner 50N 10W, 8 x 12 grid points" in result.stdout
    assert ("  train 2019-03-01T00 .. 2019-03-21T23  (504 h, 68 %)\n"
            "  val   2019-03-22T00 .. 2019-03-26T23  (120 h, 16 %)\n"
            "  test  2019-03-27T00 .. 2019-03-31T23  (120 h, 16 %)") in result.stdout
    assert (demo_dir / "era5" / Path(REAL_ERA5_T2M).name).is_symlink()
    results_dir = next(demo_dir.glob("Results/era5-Y2019-2019M03to03-12x8-5000N1000W-2t/convLSTM/*_demo"))
    rows = quick_start.read_summary(results_dir)
    assert [int(row["fcst_hour"]) for row in rows] == list(range(1, 13))
    # real weather: the analysis 1 h before is far closer than the same hour of the previous day
    assert rows[0]["copy_last_frame_mse"] < rows[0]["persistence_mse"] / 3
    assert all(row["convLSTM_mse"] > 0 and row["persistence_mse"] > 0 for row in rows)
