"""Domain rule of preprocessing step 1: nearest grid point, rows north → south, columns west → east, wrap."""
import numpy as np
import pytest
import xarray as xr

from video_prediction_tools.data_preprocess.domain import find_domain, signed_longitude
from video_prediction_tools.utils.errors import UserError

# the ERA5 0.3° grid of the GMD paper: 601 latitudes 90 → -90, 1200 longitudes 0 → 359.7
ERA5_LAT = np.linspace(90.0, -90.0, 601)
ERA5_LON = np.arange(1200) * 0.3


def test_gmd_domain_rows_117_to_172_and_columns_0_to_91():
    domain = find_domain(ERA5_LAT, ERA5_LON, (38.4, 0.0), (56, 92))
    np.testing.assert_array_equal(domain.lat_indices, np.arange(117, 173))
    np.testing.assert_array_equal(domain.lon_indices, np.arange(0, 92))
    np.testing.assert_allclose(domain.lat[[0, -1]], [54.9, 38.4])
    np.testing.assert_allclose(domain.lon[[0, -1]], [0.0, 27.3])
    assert (domain.ny, domain.nx) == (56, 92)
    assert domain.sw_corner == pytest.approx((38.4, 0.0))


def test_nearest_grid_point_example_50_91_6_36():
    domain = find_domain(ERA5_LAT, ERA5_LON, (50.91, 6.36), (10, 12))
    np.testing.assert_allclose(domain.lat, 53.7 - 0.3 * np.arange(10), atol=1e-9)
    np.testing.assert_allclose(domain.lon, 6.3 + 0.3 * np.arange(12), atol=1e-9)
    assert domain.sw_corner == pytest.approx((51.0, 6.3))


def test_southern_western_domain_wraps_across_zero_on_global_grid():
    domain = find_domain(ERA5_LAT, ERA5_LON, (-10.2, 350.1), (4, 40))
    expected_columns = np.concatenate([np.arange(1167, 1200), np.arange(0, 7)])
    np.testing.assert_array_equal(domain.lon_indices, expected_columns)
    np.testing.assert_allclose(domain.lon[[0, 32, 33, 39]], [350.1, 359.7, 0.0, 1.8], atol=1e-9)
    np.testing.assert_allclose(domain.lat, [-9.3, -9.6, -9.9, -10.2], atol=1e-9)
    assert domain.sw_corner == pytest.approx((-10.2, -9.9))
    # a negative SW longitude selects the same box
    west = find_domain(ERA5_LAT, ERA5_LON, (-10.2, -9.9), (4, 40))
    np.testing.assert_array_equal(west.lon_indices, expected_columns)


def test_global_grid_stored_minus180_to_180_gives_the_same_longitudes():
    lon_signed = -180.0 + np.arange(1200) * 0.3
    domain = find_domain(ERA5_LAT, lon_signed, (-10.2, 350.1), (4, 40))
    reference = find_domain(ERA5_LAT, ERA5_LON, (-10.2, 350.1), (4, 40))
    np.testing.assert_allclose(np.mod(domain.lon, 360.0), reference.lon, atol=1e-9)
    assert np.all(np.diff(domain.lon) > 0)  # -9.9 ... 1.8 is one increasing run in this storage


@pytest.mark.parametrize("lon", [np.concatenate([np.arange(0.0, 10.5, 0.5), np.arange(350.0, 360.0, 0.5)]),
                                 np.arange(-10.0, 10.5, 0.5)], ids=["0..360", "-180..180"])
def test_regional_grid_crossing_zero(lon):
    lat = np.arange(60.0, 29.9, -0.5)
    domain = find_domain(lat, lon, (40.2, -4.1), (6, 12))
    np.testing.assert_allclose(np.mod(domain.lon, 360.0), np.mod(-4.0 + 0.5 * np.arange(12), 360.0))
    np.testing.assert_allclose(domain.lat, 42.5 - 0.5 * np.arange(6))
    assert domain.sw_corner == pytest.approx((40.0, -4.0))
    # the west edge of the grid is 350E (= -10): a box starting there fits exactly 41 columns
    assert find_domain(lat, lon, (40.0, -10.0), (2, 41)).lon[-1] % 360 == pytest.approx(10.0)
    with pytest.raises(UserError, match="eastern edge"):
        find_domain(lat, lon, (40.0, -10.0), (2, 42))
    with pytest.raises(UserError, match="outside the grid longitudes"):
        find_domain(lat, lon, (40.0, 20.0), (2, 2))


def test_ascending_latitudes_still_give_rows_north_to_south():
    lat = np.linspace(-90.0, 90.0, 601)
    domain = find_domain(lat, ERA5_LON, (38.4, 0.0), (56, 92))
    np.testing.assert_allclose(domain.lat, 54.9 - 0.3 * np.arange(56), atol=1e-9)
    np.testing.assert_array_equal(domain.lat_indices, 600 - np.arange(117, 173))


def test_cut_equals_numpy_slice():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 601, 1200)).astype(np.float32)
    dataset = xr.Dataset({"2t": (("time", "lat", "lon"), values)}, coords={"lat": ERA5_LAT, "lon": ERA5_LON})
    domain = find_domain(ERA5_LAT, ERA5_LON, (-10.2, 350.1), (4, 40))
    cut = domain.cut(dataset)["2t"].values
    expected = np.concatenate([values[:, 331:335, 1167:], values[:, 331:335, :7]], axis=2)
    np.testing.assert_array_equal(cut, expected)


@pytest.mark.parametrize("sw_corner, nyx, message", [
    ((80.0, 0.0), (40, 10), "northern edge"),
    ((38.4, 0.0), (1, 10), "at least 2 rows"),
    ((38.4, 0.0), (10, 0), "at least 2 rows"),
    ((38.4, 0.0), (10, 1201), "only 1200 longitudes"),
    ((95.0, 0.0), (10, 10), "not in [-90, 90]"),
])
def test_boxes_that_do_not_fit_the_global_grid(sw_corner, nyx, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        find_domain(ERA5_LAT, ERA5_LON, sw_corner, nyx)


def test_regional_grid_latitude_outside():
    lat = np.arange(60.0, 29.9, -0.5)
    lon = np.arange(0.0, 20.0, 0.5)
    with pytest.raises(UserError, match="outside the grid latitudes"):
        find_domain(lat, lon, (20.0, 5.0), (4, 4))


def test_signed_longitude():
    assert [signed_longitude(v) for v in (0.0, 180.0, 180.3, 350.1, -9.9, 360.0)] == pytest.approx(
        [0.0, 180.0, -179.7, -9.9, -9.9, 0.0])


@pytest.mark.parametrize("lat_order, lon_order", [(1, 1), (-1, 1), (1, -1), (-1, -1)])
def test_cut_by_slices_equals_index_selection_for_any_storage_order(lat_order, lon_order):
    lat, lon = ERA5_LAT[::lat_order], ERA5_LON[::lon_order]
    values = np.random.default_rng(1).normal(size=(2, 601, 1200)).astype(np.float32)
    dataset = xr.Dataset({"2t": (("time", "lat", "lon"), values)}, coords={"lat": lat, "lon": lon})
    domain = find_domain(lat, lon, (-10.2, 350.1), (4, 40))
    expected = dataset.isel(lat=domain.lat_indices, lon=domain.lon_indices)
    xr.testing.assert_identical(domain.cut(dataset), expected)
    np.testing.assert_allclose(domain.cut(dataset)["lon"].values[[0, -1]], [350.1, 1.8], atol=1e-9)
