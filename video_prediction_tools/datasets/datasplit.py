"""Data split: which hours (ERA5) or sequence index ranges (Moving MNIST) belong to train, val and test.

ERA5 JSON, two forms (a mode may use either; year keys are strings, months 1..12, hours ``YYYY-MM-DDTHH`` UTC)::

    {"train": {"2007": [1, 2, ..., 12], "2008": [...]}, "val": {"2016": [1, ..., 12]}, "test": {"2019": [...]}}
    {"train": [["2019-03-01T00", "2019-03-21T23"]], "val": [["2019-03-22T00", "2019-03-25T23"]],
     "test": [["2019-03-26T00", "2019-03-31T23"]]}

The second form lists inclusive hour ranges per mode; they may start and end inside a month. Both forms are read
into one: inclusive hour ranges per mode (:func:`load_datasplit`; a month is the range of its first to its last
hour), so the reader serves both with one code path. A window of the reader lies wholly inside one range and one
month (:func:`window_rows`). No hour may be in two ranges (of two modes or of one). Checked against the data, a
named month must hold data (whatever hours of it step 2 wrote), a range every hour it names.

Moving MNIST JSON (inclusive sequence index ranges; every group is used)::

    {"train": {"index1": [0, 7999]}, "val": {"index1": [8000, 8999]}, "test": {"index1": [9000, 9999]}}

Templates: ``templates/data_split/era5/datasplit_template.json``, ``templates/data_split/moving_mnist/...``.

Example::

    from video_prediction_tools.datasets.datasplit import load_datasplit, window_rows
    hours = np.arange(np.datetime64("2019-03-01T00"), np.datetime64("2019-04-01T00"))   # hours with data
    split = load_datasplit("data_split.json", available=hours)   # UserError naming the hours without data
    split["test"]                                  # [(numpy.datetime64('2019-03-26T00'), ...('2019-03-31T23'))]
    window_rows(hours, split["test"], 24)          # rows of ``hours`` where a 24-h test window starts
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..data_preprocess.records import contiguous_blocks, window_starts
from ..utils.errors import UserError
from ..utils.io import read_json

MODES = ("train", "val", "test")
#: an inclusive range of hours ``(first, last)``, both ``numpy.datetime64[h]``
HourRange = tuple[np.datetime64, np.datetime64]
_HOUR_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")
_ONE_HOUR = np.timedelta64(1, "h")


def check_mode(mode: str) -> None:
    """UserError unless ``mode`` is one of :data:`MODES`."""
    if mode not in MODES:
        raise UserError(f"mode {mode!r}: expected one of {', '.join(MODES)}")


def _read(path_or_dict, what: str) -> tuple[dict, str]:
    if isinstance(path_or_dict, dict):
        return path_or_dict, "data split"
    path = Path(path_or_dict)
    return read_json(path, what=what), f"data split {path}"


def _check_modes(split, source: str) -> None:
    if not isinstance(split, dict) or not split:
        raise UserError(f"{source}: expected a JSON object with keys among {', '.join(MODES)}")
    unknown = [key for key in split if key not in MODES]
    if unknown:
        raise UserError(f"{source}: unknown mode(s) {', '.join(map(str, unknown))}; expected {', '.join(MODES)}")


# ---------------------------------------------------------------------------------------------------------------
# ERA5: months or hour ranges, read as hour ranges

@dataclass(frozen=True)
class _Period:
    """One month or hour range of a mode, as the split names it (``label``) and as hours."""
    mode: str
    label: str
    first: np.datetime64
    last: np.datetime64
    whole_month: bool


def month_range(year: int, month: int) -> HourRange:
    """The first and the last hour of a calendar month."""
    start = np.datetime64(f"{year:04d}-{month:02d}", "M")
    return start.astype("datetime64[h]"), (start + 1).astype("datetime64[h]") - _ONE_HOUR


def format_hour(hour) -> str:
    """``YYYY-MM-DDTHH`` of a ``datetime64`` hour (the form a data split names hours in)."""
    return str(np.datetime64(hour, "h"))


def _month_periods(mode: str, years: dict, source: str) -> list[_Period]:
    periods = []
    for year, months in sorted(years.items()):
        if not (isinstance(year, str) and len(year) == 4 and year.isdigit()):
            raise UserError(f"{source}: '{mode}' year key {year!r} is not a four-digit year string")
        if not isinstance(months, list) or not months or not all(
                isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12 for m in months):
            raise UserError(f"{source}: '{mode}' {year}: expected a non-empty list of months 1..12, got {months!r}")
        periods += [_Period(mode, f"{year}-{month:02d}", *month_range(int(year), month), whole_month=True)
                    for month in months]
    return periods


def _parse_hour(text, mode: str, source: str) -> np.datetime64:
    if isinstance(text, str) and _HOUR_PATTERN.match(text):
        try:
            return np.datetime64(text, "h")
        except ValueError:
            pass
    raise UserError(f"{source}: '{mode}' hour {text!r} is not a date and hour YYYY-MM-DDTHH (e.g. 2019-03-01T00)")


def _range_periods(mode: str, ranges: list, source: str) -> list[_Period]:
    if not ranges:
        raise UserError(f"{source}: '{mode}' lists no hour range; expected e.g. [[\"2019-03-01T00\", "
                        f"\"2019-03-21T23\"]]")
    periods = []
    for bounds in ranges:
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise UserError(f"{source}: '{mode}' range {bounds!r}: expected [first hour, last hour], e.g. "
                            f"[\"2019-03-01T00\", \"2019-03-21T23\"]")
        first, last = (_parse_hour(text, mode, source) for text in bounds)
        if last < first:
            raise UserError(f"{source}: '{mode}' range [{bounds[0]}, {bounds[1]}] ends before it starts")
        periods.append(_Period(mode, f"[{bounds[0]}, {bounds[1]}]", first, last, whole_month=False))
    return periods


def _mode_periods(mode: str, value, source: str) -> list[_Period]:
    if isinstance(value, dict):
        return _month_periods(mode, value, source)
    if isinstance(value, list):
        return _range_periods(mode, value, source)
    raise UserError(f"{source}: '{mode}' must map years to month lists, e.g. {{\"2017\": [1, 2]}}, or list inclusive "
                    f"hour ranges, e.g. [[\"2019-03-01T00\", \"2019-03-21T23\"]]")


def _check_overlaps(periods: list[_Period], source: str) -> None:
    """UserError naming two periods that share an hour (of two modes or of one)."""
    ordered = sorted(periods, key=lambda period: (period.first, period.last))
    for before, after in zip(ordered, ordered[1:]):
        if after.first <= before.last:
            raise UserError(f"{source}: {before.label} of '{before.mode}' and {after.label} of '{after.mode}' overlap "
                            f"(hours {format_hour(after.first)} to {format_hour(min(before.last, after.last))} are "
                            f"in both)")


def sorted_hours(hours: Iterable) -> np.ndarray:
    """``hours`` (any iterable of hours, numpy array included) as a sorted ``datetime64[h]`` array without
    duplicates."""
    return np.unique(np.asarray(hours if isinstance(hours, np.ndarray) else list(hours), dtype="datetime64[h]"))


def _describe_months(hours: np.ndarray) -> str:
    months = np.unique(hours.astype("datetime64[M]"))
    if not len(months):
        return "none"
    return f"{len(months)} month(s) from {months[0]} to {months[-1]}"


def _check_available(period: _Period, hours: np.ndarray, source: str) -> None:
    """UserError unless ``hours`` (sorted, unique ``datetime64[h]``) hold data for ``period``: some hour of a
    named month, every hour of a named range."""
    low, high = np.searchsorted(hours, period.first, side="left"), np.searchsorted(hours, period.last, side="right")
    if period.whole_month:
        if high == low:
            raise UserError(f"{source}: '{period.mode}' names {period.label}, which step 2 did not write "
                            f"(available: {_describe_months(hours)})")
        return
    wanted = np.arange(period.first, period.last + _ONE_HOUR, dtype="datetime64[h]")
    missing = np.setdiff1d(wanted, hours[low:high], assume_unique=True)
    if len(missing):
        raise UserError(f"{source}: '{period.mode}' range {period.label} names {len(missing)} hour(s) without data "
                        f"(first {format_hour(missing[0])}, last {format_hour(missing[-1])}; available: "
                        f"{_describe_months(hours)})")


def load_datasplit(path_or_dict, available: Iterable | None = None) -> dict[str, list[HourRange]]:
    """Validated ERA5 split (either form, see the module docstring) as ``{mode: [(first, last), ...]}``: inclusive
    ``datetime64[h]`` hour ranges in chronological order, a named month being the range of its hours.

    Checks: modes among train/val/test; year keys four digits; months integers 1..12; hours ``YYYY-MM-DDTHH``;
    a range's last hour not before its first; no hour in two months or ranges; with ``available`` (the hours with
    data, ``datetime64[h]``, any order), every named month holds data and every hour of a range exists.
    Raises UserError naming the file and the value.
    """
    split, source = _read(path_or_dict, "data split JSON")
    _check_modes(split, source)
    periods = [period for mode, value in split.items() for period in _mode_periods(mode, value, source)]
    _check_overlaps(periods, source)
    if available is not None:
        hours = sorted_hours(available)
        for period in periods:
            _check_available(period, hours, source)
    return {mode: sorted((period.first, period.last) for period in periods if period.mode == mode) for mode in split}


def hours_of_months(months: Iterable[tuple[int, int]]) -> np.ndarray:
    """Every hour (``datetime64[h]``, sorted) of the calendar months ``(year, month)``."""
    spans = [month_range(year, month) for year, month in sorted(set(months))]
    return np.concatenate([np.zeros(0, "datetime64[h]")]
                          + [np.arange(first, last + _ONE_HOUR, dtype="datetime64[h]") for first, last in spans])


def range_index(hours: np.ndarray, ranges: list[HourRange]) -> np.ndarray:
    """Position in ``ranges`` (sorted, disjoint) of the range holding each of ``hours`` (``datetime64[h]``), -1 for
    an hour outside every range: int64, the shape of ``hours``."""
    hours = np.asarray(hours, dtype="datetime64[h]")
    if not ranges:
        return np.full(hours.shape, -1, np.int64)
    firsts = np.array([first for first, _ in ranges], dtype="datetime64[h]")
    lasts = np.array([last for _, last in ranges], dtype="datetime64[h]")
    index = np.searchsorted(firsts, hours, side="right") - 1
    inside = (index >= 0) & (hours <= lasts[np.maximum(index, 0)])
    return np.where(inside, index, -1)


def window_rows(hours: np.ndarray, ranges: list[HourRange], length: int) -> np.ndarray:
    """Rows of ``hours`` (the valid times ``datetime64[h]`` of a month file, ascending) at which a window of
    ``length`` consecutive hours starts that lies wholly inside one of ``ranges``: int64, ascending. A window
    crosses no gap in time and no range boundary (nor a month's end: it is cut from one month file)."""
    hours = np.asarray(hours, dtype="datetime64[h]")
    return window_starts(hours, length, labels=range_index(hours, ranges))


#: shares of the days that :func:`propose_date_split` gives validation and test (training takes the rest)
PROPOSED_SHARES = {"val": 0.15, "test": 0.15}


def _runs(hours: np.ndarray) -> list[list[str]]:
    """The gap-free runs of sorted ``hours`` as inclusive ``[first, last]`` ranges (split JSON form)."""
    return [[format_hour(hours[first]), format_hour(hours[first + count - 1])]
            for first, count in contiguous_blocks(hours)]


def propose_date_split(available: Iterable) -> dict[str, list[list[str]]]:
    """A date-range split (JSON form) of the hours with data ``available`` (``datetime64[h]``): whole days in time
    order, the first about 70 % for training, the next about 15 % for validation, the last about 15 % for testing
    (:data:`PROPOSED_SHARES`, at least one day each); each mode lists the gap-free runs of its hours, so it names
    only hours with data. UserError for fewer than three days."""
    hours = sorted_hours(available)
    days = np.unique(hours.astype("datetime64[D]"))
    if len(days) < 3:
        raise UserError(f"the data holds {len(days)} day(s): a split by dates needs at least three (train, val, "
                        f"test)")
    val_days, test_days = (max(1, round(len(days) * PROPOSED_SHARES[mode])) for mode in ("val", "test"))
    train_days = len(days) - val_days - test_days
    day_of_hour = np.searchsorted(days, hours.astype("datetime64[D]"))
    parts = {"train": day_of_hour < train_days, "val": (day_of_hour >= train_days) & (day_of_hour < len(days)
                                                                                          - test_days),
             "test": day_of_hour >= len(days) - test_days}
    return {mode: _runs(hours[chosen]) for mode, chosen in parts.items()}


# ---------------------------------------------------------------------------------------------------------------
# Moving MNIST: sequence index ranges

def load_index_split(path_or_dict, num_sequences: int | None = None) -> dict[str, list[tuple[int, int]]]:
    """Validated Moving MNIST split ``{mode: [(first, last), ...]}`` (inclusive ranges, all groups kept).

    Ranges must be integer pairs ``first <= last``, not overlap across or within modes, and (given
    ``num_sequences``) lie inside ``0 .. num_sequences - 1``.
    """
    split, source = _read(path_or_dict, "data split JSON")
    _check_modes(split, source)
    result: dict[str, list[tuple[int, int]]] = {}
    taken: list[tuple[int, int, str]] = []
    for mode, groups in split.items():
        if not isinstance(groups, dict) or not groups:
            raise UserError(f"{source}: '{mode}' must map group names to [first, last] index ranges")
        result[mode] = []
        for name, bounds in groups.items():
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)
                    and 0 <= bounds[0] <= bounds[1]):
                raise UserError(f"{source}: '{mode}' {name}: expected [first, last] with 0 <= first <= last, "
                                f"got {bounds!r}")
            first, last = bounds
            if num_sequences is not None and last >= num_sequences:
                raise UserError(f"{source}: '{mode}' {name}: index {last} beyond the {num_sequences} sequences "
                                f"converted (0..{num_sequences - 1})")
            for other_first, other_last, other_mode in taken:
                if first <= other_last and other_first <= last:
                    raise UserError(f"{source}: '{mode}' {name} [{first}, {last}] overlaps [{other_first}, "
                                    f"{other_last}] of '{other_mode}'")
            taken.append((first, last, mode))
            result[mode].append((first, last))
        result[mode].sort()
    return result
