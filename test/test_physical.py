"""The declared physical ranges and units of the variables where data enter AMBS (extraction, step 1)."""
import numpy as np
import pytest

from video_prediction_tools.data_extraction.physical import (PHYSICAL_RANGES, check_units_agree, check_values,
                                                             physical_range)
from video_prediction_tools.utils.errors import UserError

TIMES = np.arange("2017-01-01T00", "2017-01-01T04", dtype="datetime64[h]")
LAT = np.array([46.5, 46.2, 45.9])
LON = np.array([358.8, 359.1, 359.4, 359.7, 0.0])


def two_metre_temperature():
    """float32 [4 time, 3 lat, 5 lon] around 280 K."""
    return np.full((len(TIMES), len(LAT), len(LON)), 280.0, dtype=np.float32)


def test_level_output_names_take_the_entry_of_their_short_name():
    assert physical_range("t_850") is PHYSICAL_RANGES["t"]
    assert physical_range("2t") is PHYSICAL_RANGES["2t"]
    assert physical_range("t_upper") is None and physical_range("q_850") is None


def test_physical_values_pass():
    values = two_metre_temperature()
    values[0, 0, 0], values[-1, -1, -1] = 150.0, 350.0   # the declared range is closed
    check_values("2t", values, TIMES, LAT, LON, "2017-01 (a.nc)")
    check_values("q", np.full((1, 1, 1), 1e30, dtype=np.float32), TIMES, LAT, LON, "x")  # not declared: finite


@pytest.mark.parametrize("value, fragments", [
    (1e30, ("1 value(s) outside the physical range", "first 1e+30 K")),
    (-1e30, ("1 value(s) outside the physical range", "first -1e+30 K")),
    (283.15 - 273.15, ("first 10 K",)),
    (np.nan, ("1 NaN/inf value(s)",)),
    (np.inf, ("1 NaN/inf value(s)",)),
])
def test_one_value_without_physical_sense_is_named_with_month_time_and_place(value, fragments):
    values = two_metre_temperature()
    values[2, 1, 3] = value
    with pytest.raises(UserError) as refused:
        check_values("2t", values, TIMES, LAT, LON, "2017-01 (a.nc)")
    message = str(refused.value)
    for fragment in ("2017-01 (a.nc)", "'2t'", "2017-01-01 02:00 UTC", "46.20N 0.30W", *fragments):
        assert fragment in message, (fragment, message)


def test_cloud_cover_above_one_and_wind_beyond_150_m_s_are_refused():
    with pytest.raises(UserError, match=r"'tcc', first 1.5 \(0 - 1\)"):
        check_values("tcc", np.full((1, 1, 1), 1.5, dtype=np.float32), TIMES, LAT, LON, "x")
    with pytest.raises(UserError, match=r"'u_250', first -151 m s\*\*-1"):
        check_values("u_250", np.full((1, 1, 1), -151.0, dtype=np.float32), TIMES, LAT, LON, "x")


def test_units_are_compared_with_the_table_in_any_spelling():
    check_units_agree([("a", {"2t": "K", "tcc": "(0 - 1)", "10u": "m s**-1", "msl": "Pa", "q": "kg kg**-1"}),
                       ("b", {"2t": "K", "tcc": "(0-1)", "10u": "m s**-1", "msl": "Pa", "q": "kg kg**-1"})])
    with pytest.raises(UserError, match=r"^2017-02 \(b.nc\): '2t' is in units 'degC', expected K"):
        check_units_agree([("2017-01 (a.nc)", {"2t": "K"}), ("2017-02 (b.nc)", {"2t": "degC"})])


def test_units_must_agree_across_months_for_undeclared_variables_too():
    with pytest.raises(UserError, match=r"^2017-02 \(b.nc\): 'q' is in units 'g kg\*\*-1' but in 'kg kg\*\*-1' in "
                                        r"2017-01 \(a.nc\)"):
        check_units_agree([("2017-01 (a.nc)", {"q": "kg kg**-1"}), ("2017-02 (b.nc)", {"q": "g kg**-1"})])
    with pytest.raises(UserError, match="'2t' is in units 'K' but in ''"):
        check_units_agree([("a", {"2t": ""}), ("b", {"2t": "K"})])
