"""Extract one month of ERA5 into one CF netCDF file: ``<target>/<YYYY>/<MM>/era5_<YYYY>_<MM>.nc``.

Input: the files of an ERA5 archive holding hours of the month (see :mod:`.archive`: the files of the month folder
``<source>/<YYYY>/<MM>/``, and files of any period anywhere under ``<source>``; GRIB 1 or 2 or Climate Data Store
netCDF; any split of fields over files; fields are picked by shortName and level type, see :mod:`.grib`). Output: float32 variables named as in the
variable mapping with dims ``(time, lat, lon)``, ``lat`` north→south, ``lon`` ascending in [0, 360), ``time`` = GRIB
valid times (any step; gaps are logged as a warning), ``units``/``long_name`` from GRIB. Units and values are
checked against :data:`.physical.PHYSICAL_RANGES` (a non-finite value, or one outside its variable's declared range,
is a UserError naming the variable, month, time, place and value; nothing is written). The file is written
atomically and contains no creation date, so reruns and any number of MPI ranks give identical bytes. Next to it,
``era5_<YYYY>_<MM>.provenance.json`` records the GRIB files and options it was made from: a rerun skips the month
only while these are unchanged (see :func:`extract_month`).

Example::

    from video_prediction_tools.data_extraction.extract import extract_month
    from video_prediction_tools.data_extraction.varmapping import load_varmapping

    mapping = load_varmapping("templates/data_extraction/era5_varmapping_template.json")
    summary = extract_month("grib", "ExtractedData", 2017, 1, mapping)   # {"status": "written", "hours": 744, ...}
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import xarray as xr

from ..utils.errors import UserError
from ..utils.io import atomic_path, remove_stale_temporaries
from ..utils import provenance
from ..utils.log import progress
from . import grib
from .archive import Archive, file_format, survey
from .physical import check_units_agree, check_values
from .varmapping import VarMapping

log = logging.getLogger("ambs")

TIME_UNITS = "hours since 1900-01-01 00:00:00"  # as ERA5 netCDF from the CDS


def month_output_path(target_dir, year: int, month: int) -> Path:
    return Path(target_dir) / f"{year:04d}" / f"{month:02d}" / f"era5_{year:04d}_{month:02d}.nc"


def list_gaps(times: np.ndarray) -> list[str]:
    """Human-readable gaps of a valid-time axis: intervals longer than its smallest step."""
    if len(times) < 2:
        return []
    steps = np.diff(times)
    regular = steps.min()
    return [f"{times[i]} -> {times[i + 1]}" for i in np.flatnonzero(steps > regular)]


def content_options(mapping: VarMapping, member: int) -> dict:
    """The options that change an extracted month's content (recorded in its provenance)."""
    return {"surface": list(mapping.surface),
            "levels": [[item.short_name, item.pressure_pa, item.output_name] for item in mapping.levels],
            "member": int(member)}


def extract_month(source_dir, target_dir, year: int, month: int, mapping: VarMapping, overwrite: bool = False,
                  member: int = 0, archive: Archive | None = None) -> dict:
    """Extract the hours of ``year``-``month`` that the archive under ``source_dir`` holds (``archive``: its
    :func:`.archive.survey`, made here when None) to :func:`month_output_path`.

    A month is skipped, unless ``overwrite``, when its provenance record (``era5_<YYYY>_<MM>.provenance.json``,
    see :mod:`..utils.provenance`) shows the same input files (names and contents), variable mapping and ensemble
    member; otherwise it is redone. Returns a small summary {"status": "written"|"skipped", "path", "hours", "gaps"}.
    """
    output = month_output_path(target_dir, year, month)
    archive = archive or survey(source_dir, [year], exclude=target_dir)
    files = archive.files_of_month(year, month)
    if not files:
        raise UserError(f"no GRIB or netCDF file under {source_dir} holds hours of {year:04d}-{month:02d}")
    record = provenance.record_path(output)
    options = content_options(mapping, member)
    check = provenance.check(record, files, base=source_dir, options=options, outputs=[output])
    if check.skip(f"{year:04d}-{month:02d} ({output})", overwrite):
        return {"status": "skipped", "path": str(output), "hours": None, "gaps": []}
    wanted = set(mapping.surface) | {item.short_name for item in mapping.levels} | {"lnsp"}
    available: set[str] = set()
    messages = archive.month_messages(year, month, wanted, available)
    plan = grib.plan_month(messages, mapping, member=member, where=archive.where(year, month), available=available)
    times = np.array(plan.times, dtype="datetime64[s]")
    where = f"{year:04d}-{month:02d} (extracted from {len(files)} file(s) under {source_dir})"
    check_units_agree([(where, {name: str(plan.attributes[name]["units"]) for name in plan.mapping.output_names})])
    data = _decode_month(plan, times, f"{year}-{month:02d}")
    for name, values in data.items():
        check_values(name, values, times, plan.grid.latitudes, plan.grid.longitudes, where)
    gaps = list_gaps(times)
    if gaps:
        log.warning("%d-%02d: %d gap(s) in the valid times: %s", year, month, len(gaps), "; ".join(gaps))
    dataset = _to_dataset(data, times, plan, year, month, files)
    remove_stale_temporaries(output.parent)
    provenance.invalidate(record)
    with atomic_path(output) as tmp:
        dataset.to_netcdf(tmp, format="NETCDF4", encoding=_encoding(dataset, times))
    provenance.write(record, f"{year:04d}-{month:02d}", check.fingerprints, options)
    log.info("%d-%02d: %d valid times, %d variables from %d file(s) -> %s", year, month, len(times),
             len(data), len(files), output)
    return {"status": "written", "path": str(output), "hours": int(len(times)), "gaps": gaps}


def _decode_month(plan: grib.MonthPlan, times: np.ndarray, label: str) -> dict:
    """{output name: (time, lat, lon) float32} of every valid time of ``plan``."""
    shape = (len(times), len(plan.grid.latitudes), len(plan.grid.longitudes))
    data = {name: np.empty(shape, dtype=np.float32) for name in plan.mapping.output_names}
    streams = grib._Streams()
    try:
        for index, time in enumerate(progress(plan.times, desc=f"extract {label}", unit="h")):
            for name, values in grib.decode_hour(plan, time, streams).items():
                data[name][index] = values
    finally:
        streams.close()
    return data


def _describe_source(files: list, year: int, month: int) -> str:
    """The ``source`` attribute: today's wording for GRIB, with the formats named when netCDF is among them."""
    kinds = sorted({"netCDF" if file_format(Path(path)) == "netcdf" else "GRIB" for path in files})
    return (f"ECMWF {' and '.join(kinds)}, {len(files)} file(s) of {year:04d}/{month:02d}, decoded with ecCodes"
            + (" and xarray" if "netCDF" in kinds else ""))


def _to_dataset(data: dict, times: np.ndarray, plan: grib.MonthPlan, year: int, month: int,
                files: list) -> xr.Dataset:
    coords = {
        "time": ("time", times.astype("datetime64[ns]"), {"standard_name": "time", "long_name": "valid time",
                                                          "axis": "T"}),
        "lat": ("lat", plan.grid.latitudes.astype(np.float64), {"units": "degrees_north", "standard_name": "latitude",
                                                                "long_name": "latitude", "axis": "Y"}),
        "lon": ("lon", plan.grid.longitudes.astype(np.float64), {"units": "degrees_east", "standard_name": "longitude",
                                                                 "long_name": "longitude", "axis": "X"}),
    }
    variables = {name: (("time", "lat", "lon"), values, dict(plan.attributes[name])) for name, values in data.items()}
    # no creation date or host name: the bytes must not depend on when or where (which rank) the file was made
    attributes = {"Conventions": "CF-1.8", "title": f"ERA5 fields {year:04d}-{month:02d}",
                  "source": _describe_source(files, year, month),
                  "institution": "AMBS data extraction"}
    return xr.Dataset(variables, coords=coords, attrs=attributes)


def _encoding(dataset: xr.Dataset, times: np.ndarray) -> dict:
    hours = (times - np.datetime64("1900-01-01T00", "s")) / np.timedelta64(1, "h")
    whole_hours = bool(np.all(hours == np.round(hours)))
    encoding = {"time": {"units": TIME_UNITS if whole_hours else TIME_UNITS.replace("hours", "minutes"),
                         "calendar": "proleptic_gregorian", "dtype": "int64"}}
    for name in dataset.data_vars:
        encoding[name] = {"dtype": "float32", "_FillValue": None}
    for name in ("lat", "lon"):
        encoding[name] = {"_FillValue": None}
    return encoding
