"""What an ERA5 archive holds: its data files (GRIB 1/2 or Climate Data Store netCDF, any names, anywhere under the
root) and which months and variables they cover.

Layouts read, also mixed in one archive:

* the original's hourly files ``<root>/<YYYY>/<MM>/<YYYYMMDDHH>_sf.grb`` / ``_ml.grb``, or any files directly in a
  month folder ``<root>/<YYYY>/<MM>/``: they belong to that month (checked when the month is extracted), so finding
  the months needs no reading;
* any other file under the root, holding a day, a month, a year or any period: its headers are read once (a fast
  scan, no values) to learn which variables, levels and hours it holds. Files under ``<root>/<YYYY>/`` of a year
  that was not asked for are not read.

A data file is one with a GRIB or netCDF suffix (``.grb``, ``.grib``, ``.grib2``, ``.nc``, ...) or, whatever its
name, one whose first bytes are a GRIB or netCDF signature; hidden files and folders are ignored. :func:`survey`
tells which months and variables an archive holds; :func:`months_of_work` picks the months to extract.

Example::

    from video_prediction_tools.data_extraction.archive import survey, months_of_work
    archive = survey("era5")                   # e.g. one CDS file era5/era5-2mt-2019-03-uk.grib
    archive.months()                           # [(2019, 3)]
    archive.variables()                        # {"2t": [("surface", 0.0)]}
    archive, units = months_of_work("era5", years=[2019], months=None)    # [(2019, 3)]
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils.errors import UserError
from . import grib, netcdf_source
from .fields import Message

GRIB_SUFFIXES = (".grb", ".grib", ".grb1", ".grib1", ".grb2", ".grib2")
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
#: first bytes of GRIB files and of netCDF classic (CDF1, CDF2, CDF5) and netCDF-4 (HDF5) files
SIGNATURES = {b"GRIB": "grib", b"CDF\x01": "netcdf", b"CDF\x02": "netcdf", b"CDF\x05": "netcdf",
              b"\x89HDF": "netcdf"}
#: files of the first month folder whose fields are listed by :meth:`Archive.variables` (the files of its first
#: hours hold every field of an hourly archive)
FOLDER_FILES_LISTED = 4


def file_format(path: Path) -> str | None:
    """"grib", "netcdf", or None for a file that is neither (by suffix, else by its first bytes)."""
    suffix = path.suffix.lower()
    if suffix in GRIB_SUFFIXES:
        return "grib"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    try:
        with open(path, "rb") as stream:
            return SIGNATURES.get(stream.read(4))
    except OSError as err:
        raise UserError(f"data file {path} cannot be read: {err.strerror}") from None


def index_files(paths: Sequence[Path], wanted: set[str] | None = None, seen: set[str] | None = None) -> list[Message]:
    """Headers of the fields of GRIB and netCDF ``paths`` (shortNames in ``wanted``, all when None), in order."""
    messages: list[Message] = []
    for path in paths:
        if file_format(path) == "netcdf":
            messages.extend(netcdf_source.index_netcdf(path, wanted, seen))
        else:
            messages.extend(grib.index_messages([path], wanted, seen))
    return messages


def _month_of(time: np.datetime64) -> tuple[int, int]:
    date = time.astype(object)
    return date.year, date.month


def _in_month(message: Message, year: int, month: int) -> bool:
    return message.valid_time.astype("datetime64[M]") == np.datetime64(f"{year:04d}-{month:02d}", "M")


def _folder_month(relative: Path) -> tuple[int, int] | None:
    """(year, month) of a file lying directly in a month folder ``<YYYY>/<MM>/``, else None."""
    parts = relative.parts
    if len(parts) == 3 and len(parts[0]) == 4 and parts[0].isdigit() and len(parts[1]) == 2 \
            and parts[1].isdigit() and 1 <= int(parts[1]) <= 12:
        return int(parts[0]), int(parts[1])
    return None


def describe_months(months: Sequence[tuple[int, int]]) -> str:
    """Months as compact runs, e.g. "2017-01..2017-03, 2019-03" ("nothing" when empty)."""
    runs: list[list[tuple[int, int]]] = []
    for year, month in sorted(months):
        if runs and (runs[-1][-1][0] * 12 + runs[-1][-1][1]) + 1 == year * 12 + month:
            runs[-1].append((year, month))
        else:
            runs.append([(year, month)])
    text = [f"{run[0][0]:04d}-{run[0][1]:02d}" + (f"..{run[-1][0]:04d}-{run[-1][1]:02d}" if len(run) > 1 else "")
            for run in runs]
    return ", ".join(text) or "nothing"


@dataclass
class Archive:
    """The data files of an archive: month-folder files by (year, month), other files with all their headers."""

    root: Path
    folder_files: dict = field(default_factory=dict)  # (year, month) -> [Path]
    period_messages: dict = field(default_factory=dict)  # Path -> [Message] (every field of the file)
    period_months: dict = field(default_factory=dict)  # Path -> {(year, month)} of its fields' valid times

    def add_period_file(self, path: Path) -> None:
        """Read the headers of a file outside the month folders."""
        self.period_messages[path] = index_files([path])
        self.period_months[path] = {_month_of(time) for time in {m.valid_time for m in self.period_messages[path]}}

    def months(self) -> list[tuple[int, int]]:
        """Sorted (year, month) pairs of which the archive holds hours."""
        return sorted(set(self.folder_files).union(*self.period_months.values()))

    def variables(self) -> dict[str, list[tuple[str, float]]]:
        """{GRIB shortName: sorted (level type, level)} of the fields the archive holds (month folders: the fields
        of the first files of the first month)."""
        first = sorted(self.folder_files)[:1]
        listed = index_files(self.folder_files[first[0]][:FOLDER_FILES_LISTED]) if first else []
        levels = defaultdict(set)
        for message in listed + [m for messages in self.period_messages.values() for m in messages]:
            levels[message.short_name].add((message.level_type, message.level))
        return {name: sorted(found) for name, found in sorted(levels.items())}

    def files_of_month(self, year: int, month: int) -> list[Path]:
        """Files holding hours of the month: those of its month folder, then other files holding any of its hours."""
        periods = [path for path, months in self.period_months.items() if (year, month) in months]
        return self.folder_files.get((year, month), []) + periods

    def where(self, year: int, month: int) -> str:
        """The source of a month, for messages: its month folder, or the root and the month."""
        if not any(path not in self.folder_files.get((year, month), []) for path in self.files_of_month(year, month)):
            return str(self.root / f"{year:04d}" / f"{month:02d}")
        return f"{self.root} for {year:04d}-{month:02d}"

    def month_messages(self, year: int, month: int, wanted: set[str], seen: set[str]) -> list[Message]:
        """Headers of the wanted fields valid in the month (month-folder files are read now); the shortNames of
        every file holding hours of the month are added to ``seen``. UserError for a month-folder file holding
        fields of another month."""
        folder = self.folder_files.get((year, month), [])
        messages = index_files(folder, wanted, seen)
        outside = [m for m in messages if not _in_month(m, year, month)]
        if outside:
            raise UserError(f"{outside[0].path} lies in the month folder {year:04d}/{month:02d} but holds fields "
                            f"valid outside {year:04d}-{month:02d}, e.g. at {outside[0].valid_time}; move it out "
                            "of the month folders (files elsewhere under the archive may hold any period)")
        for path in self.files_of_month(year, month)[len(folder):]:
            seen.update(m.short_name for m in self.period_messages[path])
            messages.extend(m for m in self.period_messages[path]
                            if m.short_name in wanted and _in_month(m, year, month))
        return messages


def _data_files(root: Path, years: set[int] | None, exclude: Path | None) -> list[tuple[Path, Path]]:
    """(path, path relative to root) of the data files under ``root``, sorted; year folders of other years and the
    ``exclude`` folder (extraction's own output, when it lies inside the archive) pruned."""
    found = []
    excluded = exclude.resolve() if exclude is not None else None
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        relative = Path(directory).relative_to(root)
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith(".") and not (
            years is not None and relative == Path(".") and len(name) == 4 and name.isdigit()
            and int(name) not in years) and (Path(directory) / name).resolve() != excluded)
        for name in sorted(names):
            path = Path(directory) / name
            if not name.startswith(".") and path.is_file() and file_format(path):
                found.append((path, relative / name))
    return found


def survey(root, years: Sequence[int] | None = None, exclude=None) -> Archive:
    """The :class:`Archive` under ``root``: which data files it holds and, for files outside month folders, every
    field header (read now). With ``years``, folders ``<root>/<YYYY>/`` of other years are not read; the folder
    ``exclude`` (e.g. the extraction's target) is never read.

    This is the function that tells which months (:meth:`Archive.months`) and variables
    (:meth:`Archive.variables`) an archive holds."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"archive directory {root} does not exist")
    archive = Archive(root)
    for path, relative in _data_files(root, set(years) if years else None, Path(exclude) if exclude else None):
        month = _folder_month(relative)
        if month is not None:
            archive.folder_files.setdefault(month, []).append(path)
        else:
            archive.add_period_file(path)
    return archive


def months_of_work(root, years: Sequence[int] | None = None, months: Sequence[int] | None = None,
                   exclude=None) -> tuple[Archive, list[tuple[int, int]]]:
    """The archive under ``root`` (without the folder ``exclude``) and the (year, month) units to extract: every
    month held in ``years`` (all years held when None), or exactly ``years`` x ``months`` when ``months`` is given.
    UserError naming what the archive holds when it holds none of the asked months, or not every month asked for."""
    archive = survey(root, years, exclude)
    held = archive.months()
    chosen_years = sorted(years) if years else sorted({year for year, _ in held})
    if months:
        units = [(year, month) for year in chosen_years for month in sorted(months)]
        missing = [unit for unit in units if unit not in held]
    else:
        units = [unit for unit in held if unit[0] in chosen_years]
        missing = [] if units else [(year, month) for year in chosen_years for month in range(1, 13)]
    if missing or not units:
        everything = survey(root, exclude=exclude).months() if years else held
        asked = describe_months(missing) if months else ", ".join(map(str, chosen_years)) or "any month"
        raise UserError(f"the archive {root} holds no data for {asked} (it holds {describe_months(everything)})")
    return archive, units
