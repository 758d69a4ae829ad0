"""Coastlines on the example forecast maps: shapefile discovery, clipping to the map box (0°E and date-line
crossings, both hemispheres), drawing on every map panel, the plain fallback, real GSHHS data, and the netCDF4 +
coastline process that once crashed at exit."""
import logging
import os
import subprocess
import sys
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pytest
import shapefile

from fixtures.common import REPO_ROOT
from video_prediction_tools.postprocess import coastlines, plots, results_io
from video_prediction_tools.utils.errors import UserError

# outer rings clockwise (shapefile convention) and closed, as written
ISLAND = [(10.0, 50.0), (10.0, 52.0), (12.0, 52.0), (12.0, 50.0), (10.0, 50.0)]
FAR_ISLAND = [(100.0, 10.0), (100.0, 11.0), (101.0, 11.0), (101.0, 10.0), (100.0, 10.0)]
ISLAND_WEST_OF_0E = [(359.0, 44.0), (359.0, 44.6), (359.6, 44.6), (359.6, 44.0), (359.0, 44.0)]  # [0, 360) style
ISLAND_SOUTH_WEST = [(-60.0, -35.0), (-60.0, -33.0), (-58.0, -33.0), (-58.0, -35.0), (-60.0, -35.0)]
GSHHS_CRUDE = coastlines.GSHHS_DIR / "c" / "GSHHS_c_L1.shp"


def _write_polygons(path, rings):
    with shapefile.Writer(str(path), shapeType=shapefile.POLYGON) as writer:
        writer.field("name", "C")
        for index, ring in enumerate(rings):
            writer.poly([ring])
            writer.record(f"island {index}")
    return path


@pytest.fixture
def islands(tmp_path, monkeypatch):
    """AMBS_COASTLINES pointing at a polygon shapefile of four square islands."""
    path = _write_polygons(tmp_path / "islands.shp", [ISLAND, FAR_ISLAND, ISLAND_WEST_OF_0E, ISLAND_SOUTH_WEST])
    monkeypatch.setenv("AMBS_COASTLINES", str(path))
    return path


@pytest.fixture
def no_coastline_data(tmp_path, monkeypatch):
    monkeypatch.delenv("AMBS_COASTLINES", raising=False)
    monkeypatch.setattr(coastlines, "NATURAL_EARTH_DIRS", (tmp_path / "natural_earth",))
    monkeypatch.setattr(coastlines, "GSHHS_DIR", tmp_path / "gshhs")
    coastlines._report_missing_data.cache_clear()


def _assert_segments(actual, expected):
    assert len(actual) == len(expected), actual
    for got, want in zip(actual, expected):
        np.testing.assert_allclose(got, np.array(want, dtype=float), rtol=0, atol=1e-9)


def test_island_inside_the_box_is_its_closed_ring_and_far_shapes_are_dropped(islands):
    _assert_segments(coastlines.coastline_segments(5.0, 15.0, 45.0, 55.0), [ISLAND])


def test_island_cut_by_the_box_edge_is_clipped_there(islands):
    # the ring leaves the box at lon 11 on its top edge and comes back on its bottom edge: one piece, joined
    # across the ring's start point (10, 50)
    segments = coastlines.coastline_segments(9.0, 11.0, 49.0, 53.0)
    _assert_segments(segments, [[(11.0, 50.0), (10.0, 50.0), (10.0, 52.0), (11.0, 52.0)]])


def test_domain_crossing_0E_gets_shifted_longitudes(islands):
    # the maps of a domain crossing 0°E use lon -0.9 .. 2.4; the file stores 359.0 .. 359.6
    segments = coastlines.coastline_segments(-0.9, 2.4, 42.9, 45.0)
    _assert_segments(segments, [[(-0.9, 44.6), (-0.4, 44.6), (-0.4, 44.0), (-0.9, 44.0)]])
    # the same box written in [0, 360) needs no shift
    segments = coastlines.coastline_segments(359.1, 362.4, 42.9, 45.0)
    _assert_segments(segments, [[(359.1, 44.6), (359.6, 44.6), (359.6, 44.0), (359.1, 44.0)]])


def test_southern_and_western_hemispheres_in_both_longitude_conventions(islands):
    _assert_segments(coastlines.coastline_segments(-61.0, -57.0, -36.0, -32.0), [ISLAND_SOUTH_WEST])
    expected = [(lon + 360.0, lat) for lon, lat in ISLAND_SOUTH_WEST]
    _assert_segments(coastlines.coastline_segments(299.0, 303.0, -36.0, -32.0), [expected])
    assert coastlines.coastline_segments(-61.0, -57.0, 0.0, 10.0) == []


def test_lines_with_several_parts_are_clipped_part_by_part(tmp_path, monkeypatch):
    path = tmp_path / "lines.shp"
    with shapefile.Writer(str(path), shapeType=shapefile.POLYLINE) as writer:
        writer.field("name", "C")
        writer.line([[(8.0, 49.0), (12.0, 53.0)], [(9.5, 51.0), (10.5, 51.0)]])  # diagonal lat = lon + 41
        writer.record("coast")
        writer.line([[(30.0, 49.0), (31.0, 53.0)]])
        writer.record("elsewhere")
    monkeypatch.setenv("AMBS_COASTLINES", str(path))
    segments = coastlines.coastline_segments(9.0, 11.0, 49.0, 53.0)
    _assert_segments(segments, [[(9.0, 50.0), (11.0, 52.0)], [(9.5, 51.0), (10.5, 51.0)]])


def test_clip_polyline_edge_cases():
    box = (0.0, 1.0, 0.0, 1.0)
    # a line touching the box only at a corner gives nothing; one running along an edge is kept
    assert coastlines.clip_polyline(np.array([[-1.0, 1.0], [1.0, 3.0]]), box) == []
    _assert_segments(coastlines.clip_polyline(np.array([[-1.0, 1.0], [2.0, 1.0]]), box), [[(0.0, 1.0), (1.0, 1.0)]])
    # leaving and re-entering gives two pieces; repeated points are not repeated in the output
    zigzag = np.array([[0.5, 0.5], [0.5, 0.5], [1.5, 0.5], [1.5, 0.8], [0.5, 0.8]])
    _assert_segments(coastlines.clip_polyline(zigzag, box), [[(0.5, 0.5), (1.0, 0.5)], [(1.0, 0.8), (0.5, 0.8)]])
    assert coastlines.clip_polyline(np.array([[0.5, 0.5]]), box) == []


def test_resolution_follows_the_domain_size_and_falls_back_to_what_is_installed(tmp_path, monkeypatch):
    monkeypatch.delenv("AMBS_COASTLINES", raising=False)
    gshhs = tmp_path / "gshhs"
    for resolution in ("c", "i"):
        (gshhs / resolution).mkdir(parents=True)
        (gshhs / resolution / f"GSHHS_{resolution}_L1.shp").touch()
    natural_earth = tmp_path / "natural_earth"
    natural_earth.mkdir()
    monkeypatch.setattr(coastlines, "GSHHS_DIR", gshhs)
    monkeypatch.setattr(coastlines, "NATURAL_EARTH_DIRS", (natural_earth,))
    assert coastlines.find_coastline_file(10.0) == gshhs / "i" / "GSHHS_i_L1.shp"  # GMD-like: 'i'
    assert coastlines.find_coastline_file(2.0) == gshhs / "i" / "GSHHS_i_L1.shp"  # 'h' missing: next coarser
    assert coastlines.find_coastline_file(30.0) == gshhs / "c" / "GSHHS_c_L1.shp"  # 'l' missing: 'c'
    assert coastlines.find_coastline_file(200.0) == gshhs / "c" / "GSHHS_c_L1.shp"
    (natural_earth / "ne_50m_coastline.shp").touch()  # Natural Earth comes first when present
    assert coastlines.find_coastline_file(10.0) == natural_earth / "ne_50m_coastline.shp"
    assert coastlines._preferred_resolutions(coastlines.GSHHS_RESOLUTIONS, 10.0) == ["i", "l", "c", "f", "h"]


@pytest.mark.filterwarnings("ignore:Declared file size")  # pyshp's own warning about the damaged header
def test_missing_or_unreadable_configured_file_is_a_user_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "coast.shp"
    monkeypatch.setenv("AMBS_COASTLINES", str(missing))
    with pytest.raises(UserError, match=f"AMBS_COASTLINES={missing}: no such coastline shapefile"):
        coastlines.coastline_segments(0.0, 1.0, 0.0, 1.0)
    garbage = tmp_path / "garbage.shp"
    garbage.write_bytes(b"not a shapefile at all, " * 10)
    monkeypatch.setenv("AMBS_COASTLINES", str(garbage))
    with pytest.raises(UserError, match=f"coastline shapefile {garbage} could not be read"):
        coastlines.coastline_segments(0.0, 1.0, 0.0, 1.0)


LAT = np.array([45.0, 44.7, 44.4, 44.1, 43.8, 43.5, 43.2, 42.9])
LON = np.array([359.1, 359.4, 359.7, 0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4])  # crosses 0°E


def _sample(lat=LAT, lon=LON):
    rng = np.random.default_rng(0)
    shape = (len(lat), len(lon), 1)
    inputs = 280 + rng.standard_normal((4, *shape)).astype(np.float32)
    reference = 280 + rng.standard_normal((6, *shape)).astype(np.float32)
    forecast = reference[None] + rng.standard_normal((1, 6, *shape)).astype(np.float32)
    persistence = reference + 1
    return results_io.sample_dataset(["2t"], "convLSTM", np.datetime64("2018-01-01T11", "h"), inputs, reference,
                                     forecast, persistence, lat, lon, {})


def _map_axes(figure):
    """The map panels (subplots; the colour bars are free axes)."""
    return [axis for axis in figure.axes if axis.get_subplotspec() is not None]


def _coastline_collections(axis):
    return [c for c in axis.collections if c.get_gid() == plots.COASTLINES_GID]


def test_every_map_panel_gets_the_coastlines_inside_the_data_extent(islands, tmp_path):
    figure = plots.example_forecast_figure(_sample(), "2t", "convLSTM")
    maps = _map_axes(figure)
    assert len(maps) == 1 + 4 * 4  # the input once, then truth, forecast, persistence, difference per lead
    # cell edges: lon -0.9 - 0.15 .. 2.4 + 0.15, lat 42.9 - 0.15 .. 45 + 0.15; the island lies fully inside
    ring = [(lon - 360.0, lat) for lon, lat in ISLAND_WEST_OF_0E]
    for axis in maps:
        (collection,) = _coastline_collections(axis)
        _assert_segments(collection.get_segments(), [ring])
        assert collection.get_linewidth()[0] == pytest.approx(0.6)
        np.testing.assert_allclose(collection.get_edgecolor()[0], [0, 0, 0, 1])
        np.testing.assert_allclose(axis.get_xlim(), (-1.05, 2.55), atol=1e-9)
        np.testing.assert_allclose(axis.get_ylim(), (42.75, 45.15), atol=1e-9)
        assert axis.get_xlabel() == "Longitude [°E]" and axis.get_ylabel() == "Latitude [°N]"
    path = plots.save_figure(figure, tmp_path / "forecast.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = plots.plot_example_forecast(_sample(), "2t", "convLSTM", tmp_path / "direct.png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []


def test_without_coastline_data_maps_stay_plain_and_it_is_logged_once(no_coastline_data, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger=coastlines.__name__):
        assert coastlines.coastline_segments(-0.9, 2.4, 42.9, 45.0) == []
        figure = plots.example_forecast_figure(_sample(), "2t", "convLSTM")
    reports = [r for r in caplog.records if "No coastline data found" in r.getMessage()]
    assert len(reports) == 1 and reports[0].levelno == logging.INFO  # two look-ups, one message
    assert all(_coastline_collections(axis) == [] for axis in _map_axes(figure))
    plots.save_figure(figure, tmp_path / "plain.png")
    assert (tmp_path / "plain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _require_gshhs():
    if not GSHHS_CRUDE.is_file():
        pytest.fail(f"{GSHHS_CRUDE} is missing: install the Debian package python-cartopy-data "
                    "(apt-get install python-cartopy-data; test/run_tests.sh does it as root)")


def test_real_gshhs_coastlines_around_germany(monkeypatch):
    _require_gshhs()
    monkeypatch.delenv("AMBS_COASTLINES", raising=False)
    monkeypatch.setattr(coastlines, "NATURAL_EARTH_DIRS", ())  # test the Debian GSHHS file itself
    assert coastlines.find_coastline_file(9.0) == GSHHS_CRUDE  # the only L1 resolution Debian ships
    segments = coastlines.coastline_segments(6.0, 15.0, 47.0, 55.0)
    assert segments
    points = np.concatenate(segments)
    assert points[:, 0].min() >= 6.0 and points[:, 0].max() <= 15.0
    assert points[:, 1].min() >= 47.0 and points[:, 1].max() <= 55.0
    # Germany's coasts (North Sea and Baltic) all lie north of 53°N; the Alps have none
    assert points[:, 1].min() > 53.0
    assert ((points[:, 0] < 9.0) & (points[:, 1] < 54.0)).any()  # the North Sea coast of Lower Saxony


REGRESSION_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import xarray as xr
    from video_prediction_tools.postprocess import plots, results_io

    lat, lon = np.arange(55.0, 46.5, -1.0), np.arange(6.0, 15.5, 1.0)
    shape = (len(lat), len(lon), 1)
    sample = results_io.sample_dataset(["2t"], "convLSTM", np.datetime64("2018-01-01T11", "h"),
                                       np.full((4, *shape), 280, np.float32), np.full((6, *shape), 281, np.float32),
                                       np.full((1, 6, *shape), 282, np.float32), np.full((6, *shape), 283, np.float32),
                                       lat, lon, {})
    sample.to_netcdf(sys.argv[1] + "/sample.nc", engine="netcdf4")
    with xr.open_dataset(sys.argv[1] + "/sample.nc", engine="netcdf4") as stored:
        figure = plots.example_forecast_figure(stored.load(), "2t", "convLSTM")
    drawn = [c for axis in figure.axes for c in axis.collections if c.get_gid() == plots.COASTLINES_GID]
    assert drawn and all(len(c.get_segments()) > 0 for c in drawn), "no coastlines drawn"
    assert not {"cartopy", "shapely", "pyproj"} & set(sys.modules), "a GEOS/PROJ binding was loaded"
    plots.save_figure(figure, sys.argv[1] + "/map.png")
""")


def test_netcdf4_and_coastline_maps_in_one_process_exit_cleanly(tmp_path):
    """The cartopy version aborted at exit with heap corruption (exit 134) after xarray.to_netcdf + one map."""
    _require_gshhs()
    script = tmp_path / "netcdf_then_map.py"
    script.write_text(REGRESSION_SCRIPT)
    environment = {key: value for key, value in os.environ.items() if key != "AMBS_COASTLINES"}
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=REPO_ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
