"""Climatology for the ACC metric: the mean of a variable per (calendar month, hour of day) over a range of years,
computed from extracted netCDF (``<source_dir>/<YYYY>/<MM>/*.nc``), and its reading for postprocessing. This module
owns the climatology: its month x hour layout (:data:`MONTHS`, :data:`HOURS`), which month and hour a valid time
takes (:func:`month_and_hour`), the files it writes and the original's CDO file it also reads
(:func:`load_climatology`), and whether a climatology covers the valid times of a forecast
(:func:`check_climatology_covers`). Months are spread over MPI ranks.

Usage example::

    python -m video_prediction_tools.main_scripts.main_climatology --source_dir ExtractedData --years 1991-2020 \\
        --variable 2t --out climatology_2t_1991-2020.nc
    mpiexec -n 4 python -m video_prediction_tools.main_scripts.main_climatology --source_dir ExtractedData \\
        --years 2017 2018 --variable t_850 --out clim_t850.nc --overwrite

Postprocessing reads this file, or the original's CDO file, with :func:`load_climatology` and hands the ACC metric
the climatology of its domain as an array.

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
from .physical import physical_range, units_match

log = logging.getLogger("ambs")
#: coordinates of a month x hour-of-day climatology
MONTHS = np.arange(1, 13)
HOURS = np.arange(24)


def month_and_hour(valid_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calendar month (1..12) and hour of day (0..23) of each of ``valid_times`` (datetime64, any shape)."""
    valid_times = np.asarray(valid_times)
    months = valid_times.astype("datetime64[M]").astype(int) % 12 + 1
    hours = (valid_times.astype("datetime64[h]") - valid_times.astype("datetime64[D]")).astype(int)
    return months, hours


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
                sums = np.zeros((len(HOURS), len(grid[0]), len(grid[1])))
                counts = np.zeros(len(HOURS), dtype=np.int64)
            elif not (np.array_equal(grid[0], this_grid[0]) and np.array_equal(grid[1], this_grid[1])):
                raise UserError(f"{path}: its lat/lon grid differs from that of the earlier files of month {month:02d}")
            values = field.values.astype(np.float64)
            if not np.all(np.isfinite(values)):
                raise UserError(f"{path}: {variable} contains NaN or infinite values")
            _, hours = month_and_hour(field["time"].values)
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
    shape = (len(MONTHS), len(HOURS), reference.sizes["lat"], reference.sizes["lon"])
    means = np.full(shape, np.nan, dtype=np.float32)
    counts = np.zeros(shape[:2], dtype=np.int32)
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


def _positions(available: np.ndarray, wanted: np.ndarray, what: str) -> np.ndarray:
    """Index of every ``wanted`` value in ``available`` (a climatology coordinate); missing → ValueError."""
    available = np.asarray(available).astype(int)
    order = np.argsort(available)
    found = np.searchsorted(available[order], wanted)
    found = np.minimum(found, len(available) - 1)
    positions = order[found]
    bad = available[positions] != wanted
    if bad.any():
        raise ValueError(f"the climatology has no {what} {sorted(set(wanted[bad].tolist()))}")
    return positions


def month_hour_indices(climatology: xr.DataArray, valid_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions along ``climatology``'s ``month`` and ``hour`` dims of the field valid at each of ``valid_times``
    (datetime64 ``[n]``); a month or hour the climatology lacks → ValueError."""
    months, hours = month_and_hour(valid_times)
    return (_positions(climatology["month"].values, months, "month"),
            _positions(climatology["hour"].values, hours, "hour"))


def check_climatology_covers(climatology: xr.DataArray, valid_times: np.ndarray, path) -> None:
    """UserError naming the months/hours of ``valid_times`` for which ``climatology`` ``(month, hour, lat, lon)``
    has no field or a field with NaN on the domain (ACC would be NaN there)."""
    months, hours = month_and_hour(valid_times)
    finite = np.isfinite(climatology.values).all(axis=(2, 3))
    available = {(int(month), int(hour)) for (i, month) in enumerate(climatology["month"].values)
                 for (j, hour) in enumerate(climatology["hour"].values) if finite[i, j]}
    missing: dict[int, list[int]] = {}
    for month, hour in sorted(set(zip(months.tolist(), hours.tolist())) - available):
        missing.setdefault(month, []).append(hour)
    if missing:
        needed = {month: sorted(set(hours[months == month].tolist())) for month in missing}
        described = [f"month {month} (all {len(needed[month])} hours)" if missing[month] == needed[month]
                     else f"month {month} hour(s) {', '.join(map(str, missing[month]))}" for month in missing]
        raise UserError(f"climatology {path} has no values for {'; '.join(described)} of the evaluated forecasts' "
                        f"valid times ({valid_times[0]} .. {valid_times[-1]}): use a climatology covering them "
                        f"or drop acc/weighted_acc from --evaluation_metrics")


# ------------------------------------------------------------------------------------------- reading a climatology
#: how far (in climatology grid steps, + 1e-6 deg) a domain point may lie from the climatology grid point whose value
#: it takes, per ``--climatology_regridding``: ``none`` (default) accepts float noise only, so a climatology on
#: another grid (0.25 deg for 0.3 deg data, or shifted by half a cell) is refused instead of matched silently;
#: ``nearest`` takes the nearest point within half a step (recorded in the outputs by postprocessing)
CLIMATOLOGY_REGRIDDINGS = {"none": 0.01, "nearest": 0.5}
#: groups of names under which one variable is found in climatology files: AMBS's and ERA5's short names and
#: CDO's GRIB-code name (``var167`` in the published ``climatology_t2m_1991-2020.nc``)
CLIMATOLOGY_ALIASES = (("2t", "t2m", "var167"),)
#: time steps of a climatology in CDO layout ``(time, lat, lon)``: month 1..12 x hour 0..23, by month then hour
CDO_TIME_STEPS = len(MONTHS) * len(HOURS)


def require_climatology_file(path: str | Path, remedy: str = "") -> Path:
    """``path`` as a Path; UserError when no such file exists (followed by ``remedy``, how to do without)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"climatology file {path} does not exist" + (f" ({remedy})" if remedy else ""))
    return path


def _nearest_indices(source: np.ndarray, target: np.ndarray, period: float | None, what: str,
                     path: Path, regridding: str) -> np.ndarray:
    """Index of the nearest ``source`` coordinate for every ``target`` value, each within the tolerance of
    ``regridding`` (:data:`CLIMATOLOGY_REGRIDDINGS`); ``period`` (360 for longitudes) makes 359.7 and -0.3 equal."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    distance = target[:, None] - source[None, :]
    if period is not None:
        distance = (distance + period / 2) % period - period / 2
    nearest = np.abs(distance).argmin(axis=1)
    step = np.median(np.abs(np.diff(source))) if len(source) > 1 else 0.0
    tolerance = CLIMATOLOGY_REGRIDDINGS[regridding] * step + 1e-6
    offset = np.abs(distance[np.arange(len(target)), nearest])
    off = offset > CLIMATOLOGY_REGRIDDINGS["nearest"] * step + 1e-6
    if off.any():
        raise UserError(f"climatology {path} does not cover the domain: no {what} within half a grid step "
                        f"({0.5 * step:g} deg) of {target[off][:3].tolist()} (its {what} range is "
                        f"{source.min():g}..{source.max():g})")
    if (offset > tolerance).any():
        raise UserError(f"climatology {path} is on another grid: its nearest {what} lies up to {offset.max():g} deg "
                        f"from the data's (grid step {step:g} deg); give a climatology on the data's grid, or "
                        f"--climatology_regridding nearest to take the nearest point (recorded in the outputs)")
    return nearest


def check_climatology_units(field: xr.DataArray, variable: str, path: Path) -> None:
    """UserError when the climatology of ``variable`` is in other units than the data: a ``units`` attribute that
    is no spelling of the variable's declared units (``data_extraction.physical``), or, without one, finite values
    outside the variable's physical range (a 2 m temperature climatology in degC lies below 150 K)."""
    entry = physical_range(variable)
    if entry is None:
        return
    units = str(field.attrs.get("units", "")).strip()
    if units and not units_match(variable, units):
        raise UserError(f"climatology {path}: {field.name!r} is in units '{units}', the data's {variable} in "
                        f"{entry.units}: give a climatology in {entry.units}")
    finite = field.values[np.isfinite(field.values)]
    if finite.size and (finite.min() < entry.low or finite.max() > entry.high):
        raise UserError(f"climatology {path}: {field.name!r} holds {finite.min():.6g}..{finite.max():.6g}"
                        f"{'' if units else ' (no units attribute)'}, outside the physical range of {variable} "
                        f"({entry.low:g} to {entry.high:g} {entry.units}): give a climatology in {entry.units}")


def _climatology_names(variable: str) -> list[str]:
    """``variable`` followed by its aliases (:data:`CLIMATOLOGY_ALIASES`)."""
    for group in CLIMATOLOGY_ALIASES:
        if variable in group:
            return [variable] + [name for name in group if name != variable]
    return [variable]


def _cdo_month_hour_field(field: xr.DataArray, path: Path) -> xr.DataArray:
    """A CDO climatology variable ``(time, lat, lon)``, 288 steps ordered by month, then hour, as ``(month, hour,
    lat, lon)``. When the time coordinate holds dates, their months and hours must follow that order (else
    UserError), so a file in another order is never misread."""
    name = field.name
    field = field.transpose("time", "lat", "lon")
    if field.sizes["time"] != CDO_TIME_STEPS:
        raise UserError(f"climatology {path}: variable {name!r} has {field.sizes['time']} time steps, expected "
                        f"{CDO_TIME_STEPS} (month 1..12 x hour 0..23, ordered by month, then hour)")
    expected_months, expected_hours = np.repeat(MONTHS, len(HOURS)), np.tile(HOURS, len(MONTHS))
    try:
        months, hours = field["time"].dt.month.values, field["time"].dt.hour.values
    except (AttributeError, TypeError):  # undecoded time values: the order is taken as documented
        months, hours = expected_months, expected_hours
    wrong = np.flatnonzero((months != expected_months) | (hours != expected_hours))
    if wrong.size:
        step = int(wrong[0])
        raise UserError(f"climatology {path}: time step {step} is month {months[step]} hour {hours[step]}, expected "
                        f"month {expected_months[step]} hour {expected_hours[step]} ({CDO_TIME_STEPS} steps ordered "
                        f"by month, then hour)")
    values = field.values.reshape(len(MONTHS), len(HOURS), field.sizes["lat"], field.sizes["lon"])
    return xr.DataArray(values, dims=("month", "hour", "lat", "lon"), name=name, attrs=field.attrs,
                        coords={"month": MONTHS, "hour": HOURS, "lat": field["lat"].values,
                                "lon": field["lon"].values})


def _month_hour_field(field: xr.DataArray, path: Path) -> xr.DataArray:
    """A climatology variable as ``(month, hour, lat, lon)``, from either accepted layout: AMBS's (this module's
    files: dims ``(month, hour, lat, lon)`` in any order) or CDO's (the original's ``climatology_t2m_1991-2020.nc``,
    see :func:`_cdo_month_hour_field`). ``latitude``/``longitude`` dims are renamed ``lat``/``lon``."""
    field = field.rename({old: new for old, new in (("latitude", "lat"), ("longitude", "lon")) if old in field.dims})
    if set(field.dims) == {"month", "hour", "lat", "lon"}:
        return field.transpose("month", "hour", "lat", "lon")
    if set(field.dims) != {"time", "lat", "lon"}:
        raise UserError(f"climatology {path}: variable {field.name!r} must have dims (month, hour, lat, lon) or "
                        f"CDO's (time, lat, lon) with {CDO_TIME_STEPS} time steps, got {field.dims}")
    return _cdo_month_hour_field(field, path)


def _read_climatology(path: str | Path, variable: str | None) -> xr.DataArray:
    """The climatology of ``variable`` (or an alias) in ``path`` as ``(month, hour, lat, lon)``; ``variable``
    None: the first data variable with lat/lon dims. Missing file, variable or wrong layout → UserError."""
    # the backend class itself: naming the engine makes xarray discover every installed backend first (felt in
    # the runscript generator, which checks the climatology file at its question)
    from xarray.backends.netCDF4_ import NetCDF4BackendEntrypoint

    path = require_climatology_file(path)
    try:
        with xr.open_dataset(path, engine=NetCDF4BackendEntrypoint) as dataset:
            present = [str(name) for name in dataset.data_vars]
            if variable is None:
                candidates = [name for name in present if {"lat", "lon"} <= set(dataset[name].dims)
                              or {"latitude", "longitude"} <= set(dataset[name].dims)]
            else:
                candidates = [name for name in _climatology_names(variable) if name in dataset]
            if not candidates:
                wanted = ("by month and hour on a lat/lon grid, dims (month, hour, lat, lon) or CDO's (time, lat, "
                          "lon)" if variable is None else " or ".join(map(repr, _climatology_names(variable))))
                raise UserError(f"climatology {path} has no variable {wanted} (it has {', '.join(present) or 'none'})")
            field = dataset[candidates[0]].load()
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read climatology {path}: {err}") from None
    return _month_hour_field(field, path)


def check_climatology_file(path: str | Path, variable: str | None = None) -> None:
    """UserError unless ``path`` is a climatology that :func:`load_climatology` reads (either layout; the domain is
    checked only when postprocessing knows it). For the runscript generator, which does not know the variable."""
    _read_climatology(path, variable)


def load_climatology(path: str | Path, variable: str, lat: Sequence[float], lon: Sequence[float],
                     regridding: str = "none") -> xr.DataArray:
    """Read a month x hour climatology of ``variable`` for the domain ``lat``/``lon`` [degrees].

    Accepted files (see :func:`_month_hour_field`): this module's ``(month, hour, lat, lon)`` file, or the
    original's CDO file (``climatology_t2m_1991-2020.nc``: ``(time, lat, lon)``, 288 steps month x hour), float32 or
    float64, the variable under its name or an alias (``2t``/``t2m``/``var167``), in the data's units
    (:func:`check_climatology_units`). Latitudes may run either way, longitudes may be 0..360 or -180..180. Every
    domain point takes the climatology grid point at its place (within 1 % of a climatology grid step), or with
    ``regridding="nearest"`` the nearest one within half a step (:data:`CLIMATOLOGY_REGRIDDINGS`); else UserError.
    Returns a float32 DataArray ``(month, hour, lat, lon)`` carrying exactly the domain's coordinates.
    """
    if regridding not in CLIMATOLOGY_REGRIDDINGS:
        raise UserError(f"--climatology_regridding {regridding!r}: expected one of "
                        f"{', '.join(CLIMATOLOGY_REGRIDDINGS)}")
    path = Path(path)
    field = _read_climatology(path, variable)
    check_climatology_units(field, variable, path)
    lat_index = _nearest_indices(field["lat"].values, np.asarray(lat), None, "latitude", path, regridding)
    lon_index = _nearest_indices(field["lon"].values, np.asarray(lon), 360.0, "longitude", path, regridding)
    field = field.isel(lat=lat_index, lon=lon_index).astype(np.float32)
    return field.assign_coords(lat=np.asarray(lat), lon=np.asarray(lon))
