"""Climatology for the ACC metric: the mean of a variable per (calendar month, hour of day) over a range of years,
computed from extracted netCDF (``<source_dir>/<YYYY>/<MM>/*.nc``). Months are spread over MPI ranks.

Usage example::

    python -m video_prediction_tools.main_scripts.main_climatology --source_dir ExtractedData --years 1991-2020 \\
        --variable 2t --out climatology_2t_1991-2020.nc
    mpiexec -n 4 python -m video_prediction_tools.main_scripts.main_climatology --source_dir ExtractedData \\
        --years 2017 2018 --variable t_850 --out clim_t850.nc --overwrite

Postprocessing reads this file, or the original's CDO file, through ``postprocess.metrics.load_climatology``.

Output: variable ``<variable>`` float32 with dims ``(month, hour, lat, lon)``, ``month`` = 1..12 and ``hour`` = 0..23
(NaN where the data hold no such month/hour), ``lat``/``lon`` as in the source; ``n_samples`` (month, hour) counts
the time steps averaged. Each month's partial mean goes to ``<out>.parts/`` (netCDF) and is merged by rank 0, so
the result is byte-identical for any number of ranks. The log is written next to ``--out``, and so is
``<out stem>.provenance.json``, the variable, years and extracted files it was made from: a rerun skips ``--out``
only while they are unchanged.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..utils import provenance
from ..utils.errors import UserError
from ..utils.io import atomic_path
from ..utils.log import progress
from ..utils.parallel import on_root, run_units

log = logging.getLogger("ambs")
HOURS = np.arange(24)
MONTHS = np.arange(1, 13)


def _month_files(source_dir: Path, year: int, month: int) -> list[Path]:
    month_dir = source_dir / f"{year:04d}" / f"{month:02d}"
    return sorted(month_dir.glob("*.nc")) if month_dir.is_dir() else []


def month_mean(source_dir, years: Sequence[int], month: int, variable: str) -> xr.Dataset | None:
    """Mean by hour of day of ``variable`` over every time step of calendar ``month`` in ``years``.

    Returns a Dataset with ``<variable>`` (hour, lat, lon) float64 (NaN for hours without data), ``n_samples``
    (hour,) and the variable's attributes, or None when no year has data for this month.
    """
    source_dir = Path(source_dir)
    sums = counts = grid = attributes = None
    for year in progress(years, desc=f"climatology month {month:02d}", unit="year"):
        for path in _month_files(source_dir, year, month):
            try:
                with xr.open_dataset(path) as dataset:
                    if variable not in dataset:
                        log.warning("%s holds no variable %s (it has %s); ignored", path, variable,
                                    ", ".join(map(str, dataset.data_vars)))
                        continue
                    field = dataset[variable].load()
            except (OSError, ValueError) as err:
                raise UserError(f"cannot read extracted netCDF {path}: {err}") from None
            if field.dims != ("time", "lat", "lon"):
                raise UserError(f"{path}: {variable} has dims {field.dims}, expected (time, lat, lon)")
            this_grid = (field["lat"].values, field["lon"].values)
            if grid is None:
                grid, attributes = this_grid, dict(field.attrs)
                sums = np.zeros((24, len(grid[0]), len(grid[1])))
                counts = np.zeros(24, dtype=np.int64)
            elif not (np.array_equal(grid[0], this_grid[0]) and np.array_equal(grid[1], this_grid[1])):
                raise UserError(f"{path}: its lat/lon grid differs from that of the earlier files of month {month:02d}")
            values = field.values.astype(np.float64)
            if not np.all(np.isfinite(values)):
                raise UserError(f"{path}: {variable} contains NaN or infinite values")
            hours = field["time"].dt.hour.values
            for hour in np.unique(hours):
                selected = hours == hour
                sums[hour] += values[selected].sum(axis=0)
                counts[hour] += int(selected.sum())
    if grid is None:
        return None
    with np.errstate(invalid="ignore"):
        means = sums / counts[:, None, None]
    coords = {"hour": HOURS, "lat": ("lat", grid[0], {"units": "degrees_north", "standard_name": "latitude"}),
              "lon": ("lon", grid[1], {"units": "degrees_east", "standard_name": "longitude"})}
    return xr.Dataset({variable: (("hour", "lat", "lon"), means, attributes), "n_samples": (("hour",), counts)},
                      coords=coords)


def merge_months(parts: dict, variable: str, years: Sequence[int]) -> xr.Dataset:
    """Stack the monthly results {month: Dataset or None} into (month, hour, lat, lon); months without data are NaN."""
    present = {month: part for month, part in parts.items() if part is not None}
    if not present:
        raise UserError(f"no extracted data of {variable!r} for the years {years[0]}-{years[-1]}")
    reference = next(iter(present.values()))
    for month, part in present.items():
        if not (np.array_equal(part["lat"], reference["lat"]) and np.array_equal(part["lon"], reference["lon"])):
            raise UserError(f"the lat/lon grid of month {month:02d} differs from that of the other months")
    shape = (12, 24, reference.sizes["lat"], reference.sizes["lon"])
    means = np.full(shape, np.nan, dtype=np.float32)
    counts = np.zeros((12, 24), dtype=np.int32)
    for month, part in present.items():
        means[month - 1] = part[variable].values
        counts[month - 1] = part["n_samples"].values
    attributes = dict(reference[variable].attrs)
    attributes["cell_methods"] = "time: mean within months and hours of day"
    clim = xr.Dataset(
        {variable: (("month", "hour", "lat", "lon"), means, attributes),
         "n_samples": (("month", "hour"), counts, {"long_name": "number of time steps averaged"})},
        coords={"month": ("month", MONTHS, {"long_name": "calendar month"}),
                "hour": ("hour", HOURS, {"long_name": "hour of day (UTC)"}),
                "lat": reference["lat"], "lon": reference["lon"]},
        attrs={"Conventions": "CF-1.8", "title": f"climatology of {variable} by month and hour of day",
               "years": f"{years[0]}-{years[-1]}" if len(years) > 1 else str(years[0])})
    return clim


def compute_climatology(source_dir, years: Sequence[int], variable: str, out, overwrite: bool = False) -> str:
    """Compute and write the climatology file (MPI over months). Returns "written" or "skipped".

    ``out`` is skipped (unless ``overwrite``) only while its provenance record ``<out stem>.provenance.json`` shows
    the same variable, years and extracted files (names and contents, see :mod:`..utils.provenance`); otherwise it
    is recomputed.
    """
    source_dir, out = Path(source_dir), Path(out)
    missing_years = [year for year in years if not (source_dir / f"{year:04d}").is_dir()]
    if missing_years:
        raise UserError(f"no extracted data for year(s) {', '.join(map(str, missing_years))} in {source_dir}")
    record = provenance.record_path(out)
    options = {"variable": variable, "years": list(years)}
    inputs = [path for month in MONTHS.tolist() for year in years for path in _month_files(source_dir, year, month)]
    check = on_root(lambda: provenance.check(record, inputs, base=source_dir, options=options, outputs=[out]))
    if check.skip(str(out), overwrite):
        return "skipped"
    parts_dir = out.with_name(out.name + ".parts")

    def one_month(month: int) -> bool:
        part = month_mean(source_dir, years, month, variable)
        if part is None:
            log.info("month %02d: no data", month)
            return False
        with atomic_path(parts_dir / f"month_{month:02d}.nc") as tmp:
            part.to_netcdf(tmp)
        return True

    has_data = run_units(MONTHS.tolist(), one_month,
                         label=lambda month: f"month {month:02d}")

    def merge() -> None:
        parts = {}
        for month, present in zip(MONTHS.tolist(), has_data):
            parts[month] = xr.load_dataset(parts_dir / f"month_{month:02d}.nc") if present else None
        clim = merge_months(parts, variable, list(years))
        provenance.invalidate(record)
        with atomic_path(out) as tmp:
            clim.to_netcdf(tmp, encoding={variable: {"_FillValue": np.float32(np.nan)}})
        provenance.write(record, out.name, check.fingerprints, options)
        shutil.rmtree(parts_dir, ignore_errors=True)

    on_root(merge)
    log.info("climatology of %s (%s) written to %s", variable, ", ".join(map(str, years)), out)
    return "written"
