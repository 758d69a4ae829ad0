"""GRIB decoding (data_extraction/grib.py) on tiny files written with eccodes by the synthetic generator: headers and
values against eccodes read directly, the level types ERA5 files use, and model-level → pressure-level
interpolation against a hand computation."""
import math
from pathlib import Path

import eccodes
import numpy as np
import pytest

from video_prediction_tools.data_extraction import grib
from video_prediction_tools.data_extraction.synthetic import Grid, generate_archive
from video_prediction_tools.data_extraction.varmapping import parse_varmapping
from video_prediction_tools.utils.errors import UserError

#: 4 x 5 points at 0.3 degrees across the Greenwich meridian (longitudes 359.4..0.6 once sorted)
GRID = Grid(lat_south=45.0, lat_north=45.9, lon_west=-0.6, lon_east=0.6, resolution=0.3)
HOUR = "2017010103"
VALID_TIME = np.datetime64("2017-01-01T03:00:00", "s")


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """One day of January 2017 three ways: GRIB 1 with pressure levels, GRIB 2 with pressure levels, model levels
    (GRIB 2); returns {kind: directory of the month}. Tests only read these files."""
    root = tmp_path_factory.mktemp("grib_module")
    for kind, options in (("grib1", {}), ("grib2", {"edition": 2}), ("model", {"model_levels": True})):
        generate_archive(root / kind, [2017], [1], GRID, seed=3, days=1, **options)
    return {kind: root / kind / "2017" / "01" for kind in ("grib1", "grib2", "model")}


def eccodes_messages(path: Path) -> list[dict]:
    """Every message of ``path`` read with eccodes directly: header keys, values and their lat/lon."""
    messages = []
    with open(path, "rb") as stream:
        while (handle := eccodes.codes_grib_new_from_file(stream)) is not None:
            try:
                messages.append({
                    "offset": eccodes.codes_get(handle, "offset"),
                    "short_name": eccodes.codes_get(handle, "shortName"),
                    "level_type": eccodes.codes_get(handle, "typeOfLevel"),
                    "level": eccodes.codes_get(handle, "level", float),
                    "date": eccodes.codes_get(handle, "validityDate"),
                    "time": eccodes.codes_get(handle, "validityTime"),
                    "values": eccodes.codes_get_values(handle),
                    "lats": eccodes.codes_get_array(handle, "latitudes"),
                    "lons": eccodes.codes_get_array(handle, "longitudes"),
                    "pv": eccodes.codes_get_array(handle, "pv") if eccodes.codes_get(handle, "PVPresent") else None,
                })
            finally:
                eccodes.codes_release(handle)
    return messages


def on_output_grid(message: dict, plan: grib.MonthPlan) -> np.ndarray:
    """Values of an eccodes-read message placed by their own lat/lon on the plan's (lat north→south, lon
    ascending in [0, 360)) grid: an arrangement independent of grib.Grid."""
    by_point = {(round(lat, 6), round(lon % 360.0, 6)): value
                for lat, lon, value in zip(message["lats"], message["lons"], message["values"])}
    return np.array([[by_point[(round(lat, 6), round(lon, 6))] for lon in plan.grid.longitudes]
                     for lat in plan.grid.latitudes])


def plan_for(paths, mapping: dict) -> grib.MonthPlan:
    varmapping = parse_varmapping(mapping)
    wanted = set(varmapping.surface) | {item.short_name for item in varmapping.levels} | {"lnsp"}
    return grib.plan_month(grib.index_messages(paths, wanted), varmapping, where="test")


# ---- headers ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["grib1", "grib2", "model"])
def test_index_reads_the_headers_eccodes_reads(archives, kind):
    paths = [archives[kind] / f"{HOUR}_sf.grb", archives[kind] / f"{HOUR}_ml.grb"]
    index = grib.index_messages(paths)
    expected = [message | {"path": path} for path in paths for message in eccodes_messages(path)]
    assert [(m.path, m.offset, m.short_name, m.level_type, m.level, m.member) for m in index] == \
        [(e["path"], e["offset"], e["short_name"], e["level_type"], e["level"], 0) for e in expected]
    assert {m.valid_time for m in index} == {VALID_TIME}
    assert all(e["date"] == 20170101 and e["time"] == 300 for e in expected)


def test_level_types_of_era5_like_files(archives):
    """Surface fields carry 'surface' (GRIB 1) or their own level types (GRIB 2); upper air is isobaricInhPa or
    hybrid levels 70..137 with lnsp on hybrid level 1, as in ERA5."""
    def levels(kind, suffix):
        return [(m.short_name, m.level_type, m.level)
                for m in grib.index_messages([archives[kind] / f"{HOUR}_{suffix}.grb"])]

    assert levels("grib1", "sf") == [(name, "surface", 0.0) for name in ("2t", "tcc", "msl", "10u", "10v")]
    assert levels("grib2", "sf") == [("2t", "heightAboveGround", 2.0), ("tcc", "entireAtmosphere", 0.0),
                                     ("msl", "meanSea", 0.0), ("10u", "heightAboveGround", 10.0),
                                     ("10v", "heightAboveGround", 10.0)]
    for kind in ("grib1", "grib2"):
        assert levels(kind, "ml") == [("t", "isobaricInhPa", p) for p in (1000.0, 850.0, 700.0, 500.0)]
    assert levels("model", "ml") == [("t", "hybrid", float(k)) for k in range(70, 138)] + [("lnsp", "hybrid", 1.0)]
    surface_types = {m.level_type for kind in ("grib1", "grib2")
                     for m in grib.index_messages([archives[kind] / f"{HOUR}_sf.grb"])}
    assert not surface_types & grib.NON_SURFACE_LEVEL_TYPES  # all taken as single-level fields


def test_wanted_names_filter_the_index_and_every_name_is_seen(archives):
    seen: set = set()
    index = grib.index_messages([archives["grib1"] / f"{HOUR}_sf.grb"], {"msl"}, seen)
    assert [m.short_name for m in index] == ["msl"]
    assert seen == {"2t", "tcc", "msl", "10u", "10v"}


# ---- values -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["grib1", "grib2"])
def test_decoded_values_equal_eccodes_values_across_greenwich(archives, kind):
    paths = [archives[kind] / f"{HOUR}_sf.grb", archives[kind] / f"{HOUR}_ml.grb"]
    plan = plan_for(paths, {"surface": ["2t", "msl", "10u"], "multi": {"t": {"pl": 85000}}})
    np.testing.assert_allclose(plan.grid.latitudes, [45.9, 45.6, 45.3, 45.0])
    np.testing.assert_allclose(plan.grid.longitudes, [0.0, 0.3, 0.6, 359.4, 359.7], atol=1e-9)
    fields = grib.decode_hour(plan, VALID_TIME)
    surface = {m["short_name"]: m for m in eccodes_messages(paths[0])}
    upper = {m["level"]: m for m in eccodes_messages(paths[1])}
    for name in ("2t", "msl", "10u"):
        np.testing.assert_array_equal(fields[name], on_output_grid(surface[name], plan))
    np.testing.assert_array_equal(fields["t_850"], on_output_grid(upper[850.0], plan))


def test_a_surface_name_is_never_taken_from_upper_levels(archives):
    with pytest.raises(UserError, match=r"'t' \(single level\) not found"):
        plan_for([archives["grib1"] / f"{HOUR}_ml.grb"], {"surface": ["t"], "multi": {}})


def test_pressure_levels_are_preferred_to_model_levels(archives):
    paths = [archives["grib1"] / f"{HOUR}_ml.grb", archives["model"] / f"{HOUR}_ml.grb"]
    plan = plan_for(paths, {"surface": [], "multi": {"t": {"pl": 50000}}})
    assert plan.pressure[(VALID_TIME, "t_500")].level_type == "isobaricInhPa" and not plan.hybrid


# ---- model levels -------------------------------------------------------------------------------------------------
def test_full_level_pressure_is_the_mean_of_the_bounding_half_levels():
    # three half levels: A = 0, 100, 0 Pa; B = 0, 0.5, 1; surface pressure 1000 hPa
    pv = np.array([0.0, 100.0, 0.0, 0.0, 0.5, 1.0])
    pressure = grib.full_level_pressure(pv, np.array([1, 2]), np.full((1, 1), 100000.0))
    # level 1: (0 + (100 + 50000)) / 2; level 2: ((100 + 50000) + 100000) / 2
    np.testing.assert_allclose(pressure[:, 0, 0], [25050.0, 75050.0])


def test_model_levels_interpolated_to_850_hpa_like_a_hand_computation(archives):
    path = archives["model"] / f"{HOUR}_ml.grb"
    plan = plan_for([path], {"surface": [], "multi": {"t": {"pl": 85000}}})
    decoded = grib.decode_hour(plan, VALID_TIME)["t_850"]
    messages = eccodes_messages(path)
    lnsp = next(m for m in messages if m["short_name"] == "lnsp")
    levels = [m for m in messages if m["short_name"] == "t"]
    half = len(levels[0]["pv"]) // 2
    a, b = levels[0]["pv"][:half], levels[0]["pv"][half:]
    for row, column in ((0, 0), (3, 4), (2, 1)):
        lat, lon = plan.grid.latitudes[row], plan.grid.longitudes[column]
        point = next(i for i, (la, lo) in enumerate(zip(lnsp["lats"], lnsp["lons"]))
                     if round(la, 6) == round(lat, 6) and round(lo % 360.0, 6) == round(lon, 6))
        surface = math.exp(lnsp["values"][point])
        column_values = []  # (full-level pressure [Pa], t [K]) from the top down
        for message in levels:
            k = int(message["level"])
            p_full = 0.5 * ((a[k - 1] + b[k - 1] * surface) + (a[k] + b[k] * surface))
            column_values.append((p_full, message["values"][point]))
        above, below = next((column_values[i], column_values[i + 1]) for i in range(len(column_values) - 1)
                            if column_values[i][0] <= 85000.0 < column_values[i + 1][0])
        weight = (math.log(85000.0) - math.log(above[0])) / (math.log(below[0]) - math.log(above[0]))
        assert decoded[row, column] == pytest.approx(above[1] + weight * (below[1] - above[1]), abs=1e-9)


# ---- files as ECMWF's MARS writes them ------------------------------------------------------------------------------
def test_zero_padding_between_messages_is_accepted_and_other_bytes_refused(archives, tmp_path):
    """MARS pads each GRIB 1 message with zeros to a multiple of 120 bytes (the real ERA5 file does); any other
    byte between messages is corruption."""
    source = archives["grib1"] / f"{HOUR}_sf.grb"
    messages = eccodes_messages(source)
    raw = source.read_bytes()
    bounds = [int(m["offset"]) for m in messages] + [len(raw)]
    chunks = [raw[start:end] for start, end in zip(bounds, bounds[1:])]
    padded = b"".join(chunk + b"\0" * (-len(chunk) % 120) for chunk in chunks)
    (tmp_path / "mars.grib").write_bytes(padded)
    index = grib.index_messages([tmp_path / "mars.grib"])
    assert [m.short_name for m in index] == [m["short_name"] for m in messages]
    assert all(m.offset % 120 == 0 for m in index)
    plan = grib.plan_month(index, parse_varmapping({"surface": ["msl"]}), where="test")
    np.testing.assert_array_equal(grib.decode_hour(plan, VALID_TIME)["msl"],
                                  on_output_grid(next(m for m in messages if m["short_name"] == "msl"), plan))
    damaged = bytearray(padded)
    damaged[len(chunks[0]) + 3] = 7  # a byte inside the padding after the first message
    (tmp_path / "damaged.grib").write_bytes(bytes(damaged))
    with pytest.raises(UserError, match="damaged.grib is corrupt"):
        grib.index_messages([tmp_path / "damaged.grib"])
