"""Physical sense of the fields where data enter AMBS: extraction (a decoded month) and step 1 (the extracted
months it reads). Later steps trust what passed here, so a value like ``1e30`` or a month in °C beside months in K
is refused once, with one line naming the variable, month, time, place and value, instead of ending as a NaN loss
or a huge MSE downstream.

:data:`PHYSICAL_RANGES` declares, per variable (ERA5 shortName, or the output name of a pressure-level variable
such as ``t_850``, which takes the entry of ``t``), the units AMBS expects and the closed range of values that
make physical sense. GRIB packing rounds a field to steps of its own range / 2**bits, so that a cloud cover of 1
decodes as 1.000006: a bound holds within :data:`PACKING_SLACK` of the declared width. Variables not in the table
pass a finiteness check only.

Example::

    from video_prediction_tools.data_extraction.physical import check_units_agree, check_values

    check_units_agree([("2017-01 (a.nc)", {"2t": "K"}), ("2017-02 (b.nc)", {"2t": "degC"})])
    # UserError: 2017-02 (b.nc): '2t' is in units 'degC', expected K (2t is declared in K, 150 to 350 K)
    check_values("2t", values, times, lat, lon, "2017-01 (a.nc)")      # values: float32 [time, lat, lon]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..utils.errors import UserError


@dataclass(frozen=True)
class PhysicalRange:
    """What a variable's values must be: ``units`` (as written in the message), the spellings of those units that
    ERA5 GRIB and netCDF files use (compared lower-case, without blanks), and the closed range [low, high]."""

    units: str
    spellings: frozenset
    low: float
    high: float


#: part of a range's width by which a decoded value may pass a bound (GRIB packing)
PACKING_SLACK = 1e-3

_KELVIN = frozenset({"k", "kelvin"})
_PASCAL = frozenset({"pa"})
_FRACTION = frozenset({"(0-1)", "0-1", "1", "fraction", "dimensionless"})
_WIND = frozenset({"ms**-1", "ms-1", "m/s"})

#: variable → what makes physical sense; temperatures cover the coldest tropopause and the hottest surface
PHYSICAL_RANGES = {
    "2t": PhysicalRange("K", _KELVIN, 150.0, 350.0),
    "2d": PhysicalRange("K", _KELVIN, 150.0, 350.0),
    "t": PhysicalRange("K", _KELVIN, 150.0, 350.0),
    "tcc": PhysicalRange("(0 - 1)", _FRACTION, 0.0, 1.0),
    "msl": PhysicalRange("Pa", _PASCAL, 85_000.0, 110_000.0),
    "10u": PhysicalRange("m s**-1", _WIND, -150.0, 150.0),
    "10v": PhysicalRange("m s**-1", _WIND, -150.0, 150.0),
    "u": PhysicalRange("m s**-1", _WIND, -150.0, 150.0),
    "v": PhysicalRange("m s**-1", _WIND, -150.0, 150.0),
}


def physical_range(variable: str) -> PhysicalRange | None:
    """The table entry of ``variable``: its own, else that of its shortName when it is a level output name
    (``t_850`` → ``t``), else None."""
    if variable in PHYSICAL_RANGES:
        return PHYSICAL_RANGES[variable]
    short_name, _, level = variable.rpartition("_")
    return PHYSICAL_RANGES.get(short_name) if level.isdigit() else None


def _spelling(units: str) -> str:
    return "".join(units.split()).lower()


def units_match(variable: str, units: str) -> bool:
    """Whether ``units`` is one of the spellings of the declared units of ``variable`` (True for a variable the
    table does not declare)."""
    entry = physical_range(variable)
    return entry is None or _spelling(units) in entry.spellings


def _describe(variable: str, entry: PhysicalRange) -> str:
    return f"{variable} is declared in {entry.units}, {entry.low:g} to {entry.high:g} {entry.units}"


def check_units_agree(sources: Iterable[tuple[str, dict[str, str]]]) -> None:
    """Refuse units that contradict :data:`PHYSICAL_RANGES` or differ between sources (months, files).

    ``sources``: ``(where, {variable: units attribute})`` per source, ``where`` naming its month and file. Empty
    units are accepted against the table (the values are still range-checked) but must agree like any other.
    """
    first: dict[str, tuple[str, str]] = {}
    for where, units_of in sources:
        for variable, units in units_of.items():
            entry = physical_range(variable)
            if entry is not None and units.strip() and not units_match(variable, units):
                raise UserError(f"{where}: '{variable}' is in units '{units}', expected {entry.units} "
                                f"({_describe(variable, entry)})")
            seen_units, seen_where = first.setdefault(variable, (units, where))
            if _spelling(units) != _spelling(seen_units):
                raise UserError(f"{where}: '{variable}' is in units '{units}' but in '{seen_units}' in "
                                f"{seen_where}: every month must give a variable in the same units")


def _place(lat: float, lon: float) -> str:
    lon = (lon + 180.0) % 360.0 - 180.0
    return f"{abs(lat):.2f}{'N' if lat >= 0 else 'S'} {abs(lon):.2f}{'E' if lon >= 0 else 'W'}"


def check_values(variable: str, values: np.ndarray, times: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 where: str) -> None:
    """Refuse non-finite values of ``variable``, and values outside its :data:`PHYSICAL_RANGES` entry.

    ``values``: ``[time, lat, lon]`` (any float dtype) on the valid ``times`` (datetime64) and coordinates ``lat``,
    ``lon`` (degrees); ``where`` names the month and file. The check costs one min and one max; only a refused
    array is searched for its first bad value, which the message names with its time and place.
    """
    entry = physical_range(variable)
    slack = PACKING_SLACK * (entry.high - entry.low) if entry else 0.0
    low, high = (entry.low - slack, entry.high + slack) if entry else (-np.inf, np.inf)
    smallest, largest = values.min(), values.max()
    if np.isfinite(smallest) and np.isfinite(largest) and low <= smallest and largest <= high:
        return
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    time_index, row, column = np.argwhere(bad)[0]
    value = values[time_index, row, column]
    time = str(np.datetime_as_string(np.asarray(times[time_index]).astype("datetime64[m]"))).replace("T", " ")
    count = int(bad.sum())
    what = (f"{count} NaN/inf value(s)" if not np.isfinite(value) else
            f"{count} value(s) outside the physical range ({_describe(variable, entry)})")
    raise UserError(f"{where}: {what} of '{variable}', first {value:.7g}{' ' + entry.units if entry else ''} at "
                    f"{time} UTC, {_place(float(lat[row]), float(lon[column]))}")
