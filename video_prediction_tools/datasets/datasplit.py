"""Data split: which months (ERA5) or sequence index ranges (Moving MNIST) belong to train, val and test.

ERA5 JSON (year keys are strings, months 1..12)::

    {"train": {"2007": [1, 2, ..., 12], "2008": [...]}, "val": {"2016": [1, ..., 12]}, "test": {"2019": [...]}}

Moving MNIST JSON (inclusive sequence index ranges; every group is used)::

    {"train": {"index1": [0, 7999]}, "val": {"index1": [8000, 8999]}, "test": {"index1": [9000, 9999]}}

Templates: ``templates/data_split/era5/datasplit_template.json``, ``templates/data_split/moving_mnist/...``.

Example::

    from video_prediction_tools.datasets.datasplit import load_datasplit, split_months
    split = load_datasplit("data_split.json", available={(2017, 1), (2017, 2)})   # UserError if 2017-03 named
    split_months(split, "train")                                                   # [(2017, 1), (2017, 2)]
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..utils.errors import UserError
from ..utils.io import read_json

MODES = ("train", "val", "test")


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


def load_datasplit(path_or_dict, available: Iterable[tuple[int, int]] | None = None) -> dict[str, dict[str, list[int]]]:
    """Validated ERA5 split ``{mode: {"YYYY": sorted months}}``.

    Checks: modes among train/val/test; year keys four digits; months integers 1..12 without duplicates; no month
    in two modes; with ``available`` (set of ``(year, month)``), every named month exists. Raises UserError.
    """
    split, source = _read(path_or_dict, "data split JSON")
    _check_modes(split, source)
    result: dict[str, dict[str, list[int]]] = {}
    owner: dict[tuple[int, int], str] = {}
    available = None if available is None else {(int(y), int(m)) for y, m in available}
    for mode, years in split.items():
        if not isinstance(years, dict):
            raise UserError(f"{source}: '{mode}' must map years to month lists, e.g. {{\"2017\": [1, 2]}}")
        result[mode] = {}
        for year, months in sorted(years.items()):
            if not (isinstance(year, str) and len(year) == 4 and year.isdigit()):
                raise UserError(f"{source}: '{mode}' year key {year!r} is not a four-digit year string")
            if not isinstance(months, list) or not months or not all(
                    isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12 for m in months):
                raise UserError(f"{source}: '{mode}' {year}: expected a non-empty list of months 1..12, got {months!r}")
            if len(set(months)) != len(months):
                raise UserError(f"{source}: '{mode}' {year}: duplicated months in {months}")
            for month in months:
                key = (int(year), month)
                if key in owner:
                    raise UserError(f"{source}: {year}-{month:02d} is in both '{owner[key]}' and '{mode}'")
                owner[key] = mode
                if available is not None and key not in available:
                    raise UserError(f"{source}: '{mode}' names {year}-{month:02d}, which step 2 did not write "
                                    f"(available: {_describe(available)})")
            result[mode][year] = sorted(months)
    return result


def _describe(available: set[tuple[int, int]]) -> str:
    if not available:
        return "none"
    ordered = sorted(available)
    first, last = ordered[0], ordered[-1]
    return f"{len(ordered)} month(s) from {first[0]}-{first[1]:02d} to {last[0]}-{last[1]:02d}"


def split_months(split: dict[str, dict[str, list[int]]], mode: str) -> list[tuple[int, int]]:
    """Months ``(year, month)`` of ``mode``, in chronological order (empty if the mode is absent)."""
    return sorted((int(year), month) for year, months in split.get(mode, {}).items() for month in months)


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
