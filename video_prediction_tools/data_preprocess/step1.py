"""Preprocessing step 1: cut the target domain out of the extracted ERA5 months, one netCDF + statistics per month.

Input: ``<source_dir>/<YYYY>/<MM>/*.nc`` (extraction output: variables with dims ``(time, lat, lon)``, any number
of files per month, taken in order of their valid times, not their names).
Output in ``<destination_dir>/<EXPNAME>/`` (EXPNAME and metadata.json: see :mod:`.metadata`):

- ``metadata.json``, ``options.json`` (the CLI arguments), ``preprocess_step1.log`` (rank k > 0: ``.rank<k>``);
- ``<YYYY>/X_<MM>.nc``: DataArray ``X`` float32 dims ``(time, lat, lon, channel)`` in physical units; coordinates
  ``time`` (valid time, hourly), ``lat`` (north → south), ``lon`` (west → east as stored in the source, possibly
  wrapping 354.9 … 359.7, 0.0 … 3.6), ``channel`` (variable names in --vars order, duplicates allowed) and
  ``channel_units`` (dim ``channel``, the source ``units`` attribute or "");
- ``<YYYY>/stat_<MM>.json``: :mod:`.statistics` of that month's X per unique variable;
- ``<YYYY>/X_<MM>.provenance.json``, written LAST: the source files (names relative to ``source_dir``, size and
  SHA-256), the variables and the domain the month was made from (see :mod:`..utils.provenance`). A rerun skips a
  month unless ``overwrite`` only while these are unchanged and stat_<MM>.json exists; a month without this record
  (older AMBS, killed run) or with other inputs or options is redone, with a warning naming the change.

Checks before anything is written (rank 0): every requested month directory exists and holds readable ``*.nc``
files; every variable exists with dims (time, lat, lon); all files share one grid; the domain fits the grid; the
hours of a month form one contiguous hourly series starting at 00 UTC on day 1, without duplicates or hours outside
the month. A month that ends early (e.g. a test archive with only its first days) is accepted with a warning;
a gap inside it is an error naming the files and hours around the gap. Every variable has one ``units`` attribute
across all files, agreeing with :data:`..data_extraction.physical.PHYSICAL_RANGES`. While processing a month, a
value inside the domain that is NaN/inf or outside its declared physical range is an error naming the month, file,
variable, time, place and value (:func:`..data_extraction.physical.check_values`).

Months are the units of work, spread over MPI ranks with :func:`utils.parallel.run_units`; the files written do
not depend on the number of ranks.

Example::

    from video_prediction_tools.data_preprocess.step1 import preprocess_step1

    expdir = preprocess_step1("ExtractedData", "PreprocessedData", years=[2017], months=[1, 2],
                              variables=["2t", "tcc", "t_850"], sw_corner=(38.4, 0.0), nyx=(56, 92))
"""
from __future__ import annotations

import calendar
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import xarray as xr

from ..data_extraction.physical import check_units_agree, check_values
from ..utils import provenance
from ..utils.errors import UserError
from ..utils.io import atomic_path, check_writable_directory, remove_stale_temporaries, write_json
from ..utils.log import progress, setup_logging
from ..utils.parallel import on_root, run_units
from .domain import Domain, find_domain
from .metadata import expname, metadata_dict, write_or_check_metadata
from .statistics import channel_stats

log = logging.getLogger("ambs")

LOG_FILE = "preprocess_step1.log"
OPTIONS_FILE = "options.json"
ONE_HOUR = np.timedelta64(1, "h")
HOURS_PER_BLOCK = 24
TIME_ENCODING = {"units": "hours since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian", "dtype": "int64"}


def month_label(unit: dict[str, Any]) -> str:
    return f"{unit['year']:04d}-{unit['month']:02d}"


def month_outputs(experiment_dir: Path, year: int, month: int) -> tuple[Path, Path]:
    """Paths of ``<YYYY>/X_<MM>.nc`` and ``<YYYY>/stat_<MM>.json`` of one month."""
    year_dir = Path(experiment_dir) / f"{year:04d}"
    return year_dir / f"X_{month:02d}.nc", year_dir / f"stat_{month:02d}.json"


def _format_hour(time: np.datetime64) -> str:
    return str(np.datetime_as_string(time, unit="h")).replace("T", " ") + ":00"


def _open(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"cannot read netCDF file {path}: {err}")


def _check_variables(path: Path, dataset: xr.Dataset, variables: Sequence[str]) -> None:
    for variable in dict.fromkeys(variables):
        if variable not in dataset.data_vars:
            available = ", ".join(sorted(map(str, dataset.data_vars)))
            raise UserError(f"{path}: variable '{variable}' not found (file has {available})")
        if set(dataset[variable].dims) != {"time", "lat", "lon"}:
            raise UserError(f"{path}: variable '{variable}' has dims {dataset[variable].dims}, "
                            f"expected (time, lat, lon)")


def _check_hours(label: str, times: np.ndarray, owners: list[str], year: int, month: int) -> bool:
    """Check that ``times`` (sorted by file start) is one hourly series from 00 UTC on day 1 within the month.

    ``owners[k]`` is the file holding ``times[k]``. Returns whether the month is complete (reaches its last hour).
    """
    first = np.datetime64(f"{year:04d}-{month:02d}-01T00", "h")
    last = first + np.timedelta64(calendar.monthrange(year, month)[1] * 24 - 1, "h")
    outside = (times < first) | (times > last)
    if outside.any():
        k = int(np.argmax(outside))
        raise UserError(f"{owners[k]}: time {_format_hour(times[k])} lies outside {label}")
    if times[0] != first:
        raise UserError(f"{label}: hours missing at the start of the month: the first hour is "
                        f"{_format_hour(times[0])} in {owners[0]}, expected {_format_hour(first)}")
    steps = np.diff(times)
    bad = np.flatnonzero(steps != ONE_HOUR)
    if bad.size:
        k = int(bad[0])
        where = (f"{_format_hour(times[k])} ({owners[k]}) and {_format_hour(times[k + 1])} ({owners[k + 1]})")
        if steps[k] <= np.timedelta64(0, "h"):
            raise UserError(f"{label}: hours repeated or out of order between {where}")
        missing = int(steps[k] / ONE_HOUR) - 1
        raise UserError(f"{label}: {missing} hour(s) missing between {where}"
                        + (f" and {bad.size - 1} more gap(s)" if bad.size > 1 else ""))
    return bool(times[-1] == last)


def _inventory_month(source_dir: Path, year: int, month: int, variables: Sequence[str],
                     grid: dict[str, np.ndarray] | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """List and check one month's files; returns the unit description and the grid (lat, lon)."""
    directory = source_dir / f"{year:04d}" / f"{month:02d}"
    label = f"{year:04d}-{month:02d}"
    if not directory.is_dir():
        raise UserError(f"month directory {directory} not found (expected <source_dir>/<YYYY>/<MM>/*.nc)")
    paths = sorted(directory.glob("*.nc"))
    if not paths:
        raise UserError(f"no *.nc files in {directory}")
    pieces = []
    for path in paths:
        with _open(path) as dataset:
            _check_variables(path, dataset, variables)
            units = {name: str(dataset[name].attrs.get("units", "")) for name in dict.fromkeys(variables)}
            if "lat" not in dataset.coords or "lon" not in dataset.coords or "time" not in dataset.coords:
                raise UserError(f"{path}: coordinates lat, lon and time are required")
            if grid is None:
                grid = {axis: dataset[axis].values.astype(np.float64) for axis in ("lat", "lon")}
            elif not (np.array_equal(dataset["lat"].values, grid["lat"])
                      and np.array_equal(dataset["lon"].values, grid["lon"])):
                raise UserError(f"{path}: its lat/lon grid differs from the grid of the other extracted files")
            times = dataset["time"].values.astype("datetime64[h]")
            if times.size == 0:
                raise UserError(f"{path}: no time steps")
        pieces.append((times[0], str(path), times, units))
    pieces.sort(key=lambda piece: (piece[0], piece[1]))
    times = np.concatenate([piece[2] for piece in pieces])
    owners = [piece[1] for piece in pieces for _ in range(len(piece[2]))]
    complete = _check_hours(label, times, owners, year, month)
    unit = {"year": year, "month": month, "files": [piece[1] for piece in pieces],
            "file_hours": [int(piece[2].size) for piece in pieces], "hours": int(times.size),
            "complete": complete, "last_hour": _format_hour(times[-1]), "variable_units": [piece[3] for piece in pieces]}
    return unit, grid


def _default_months(source_dir: Path, year: int) -> list[int]:
    year_dir = source_dir / f"{year:04d}"
    if not year_dir.is_dir():
        raise UserError(f"year directory {year_dir} not found in --source_dir")
    months = sorted(int(p.name) for p in year_dir.iterdir() if p.is_dir() and p.name.isdigit()
                    and len(p.name) == 2 and 1 <= int(p.name) <= 12)
    if not months:
        raise UserError(f"no month directories 01..12 in {year_dir}")
    return months


def _check_arguments(source_dir: Path, years: Sequence[int], months: Sequence[int] | None,
                     variables: Sequence[str]) -> None:
    if not source_dir.is_dir():
        raise UserError(f"--source_dir {source_dir}: directory not found")
    if not years:
        raise UserError("--years: give at least one year")
    for year in years:
        if not 1000 <= int(year) <= 9999:
            raise UserError(f"--years {year}: expected a four-digit year")
    if len(set(years)) != len(years):
        raise UserError(f"--years {list(years)}: repeated year")
    if months is not None:
        if not months or any(not 1 <= int(m) <= 12 for m in months) or len(set(months)) != len(months):
            raise UserError(f"--months {list(months)}: expected distinct months 1..12")
    if not variables:
        raise UserError("--vars: give at least one variable")


def _prepare(source_dir: Path, destination_dir: Path, years: Sequence[int], months: Sequence[int] | None,
             variables: Sequence[str], sw_corner: Sequence[float], nyx: Sequence[int], overwrite: bool,
             options: dict[str, Any]) -> tuple[list[dict[str, Any]], Domain, Path]:
    """Rank 0: check every input file, find the domain, write metadata.json and options.json."""
    months = sorted(months) if months is not None else _default_months(source_dir, min(years))
    units, grid = [], None
    for year in sorted(years):
        for month in months:
            unit, grid = _inventory_month(source_dir, year, month, variables, grid)
            units.append(unit)
    # one unit per variable across all months, before anything is written
    check_units_agree((f"{month_label(unit)} ({path})", units_of) for unit in units
                      for path, units_of in zip(unit["files"], unit["variable_units"]))
    domain = find_domain(grid["lat"], grid["lon"], sw_corner, nyx)
    name = expname(years, months, domain, variables)
    experiment_dir = destination_dir / name
    experiment_dir.mkdir(parents=True, exist_ok=True)
    status = write_or_check_metadata(experiment_dir, metadata_dict(name, destination_dir, domain, variables),
                                     overwrite=overwrite)
    write_json(experiment_dir / OPTIONS_FILE, options)
    for year in years:
        remove_stale_temporaries(experiment_dir / f"{year:04d}")
    log.info("metadata.json %s", status)
    return units, domain, experiment_dir


def _day_blocks(unit: dict[str, Any]) -> Iterator[tuple[str, xr.Dataset, slice]]:
    """Yield (file, its open Dataset, time steps) for pieces of at most one day: bounded memory per read and a
    progress bar in days. Each file is opened once (opening costs far more than reading a day of a small box)."""
    for path, hours in zip(unit["files"], unit["file_hours"]):
        with _open(Path(path)) as dataset:
            for start in range(0, hours, HOURS_PER_BLOCK):
                yield path, dataset, slice(start, min(start + HOURS_PER_BLOCK, hours))


def _cut_block(path: str, dataset: xr.Dataset, steps: slice, domain: Domain, variables: Sequence[str],
               label: str) -> tuple[np.ndarray, np.ndarray, xr.Dataset]:
    """Domain box of some time steps of one file of month ``label``: (float32 [time, ny, nx, channel], valid times,
    the cut Dataset), its values checked for physical sense (:func:`..data_extraction.physical.check_values`)."""
    cut = domain.cut(dataset[list(dict.fromkeys(variables))].isel(time=steps)).load()
    for variable in dict.fromkeys(variables):
        check_values(variable, cut[variable].values, cut["time"].values, cut["lat"].values, cut["lon"].values,
                     f"{label} ({path}), inside the domain")
    data = np.stack([cut[variable].values for variable in variables], axis=-1).astype(np.float32)
    return data, cut["time"].values, cut


def content_options(domain: Domain, variables: Sequence[str]) -> dict[str, Any]:
    """The options that change a month's X and statistics (recorded in its provenance)."""
    return {"variables": list(variables), "sw_corner": [float(v) for v in domain.sw_corner],
            "nyx": [domain.ny, domain.nx]}


def _process_month(unit: dict[str, Any], source_dir: Path, domain: Domain, variables: Sequence[str],
                   experiment_dir: Path, overwrite: bool) -> dict[str, Any]:
    """Write X_<MM>.nc, stat_<MM>.json, then X_<MM>.provenance.json of one month; skip the month (unless
    ``overwrite``) when its provenance shows the same source files, variables and domain."""
    label = month_label(unit)
    x_path, stat_path = month_outputs(experiment_dir, unit["year"], unit["month"])
    record = provenance.record_path(x_path)
    options = content_options(domain, variables)
    check = provenance.check(record, map(Path, unit["files"]), base=source_dir, options=options,
                             outputs=[stat_path])
    if check.skip(label, overwrite):
        return {"month": label, "status": "skipped"}
    # no stale record or statistics may vouch for a month while it is being rewritten
    provenance.invalidate(record)
    stat_path.unlink(missing_ok=True)
    if not unit["complete"]:
        log.warning("%s: the extracted data end at %s, before the end of the month", label, unit["last_hour"])
    blocks, times, cut = [], [], None
    days = sum(-(-hours // HOURS_PER_BLOCK) for hours in unit["file_hours"])
    for path, dataset, steps in progress(_day_blocks(unit), desc=label, total=days, unit="day"):
        data, block_times, cut = _cut_block(path, dataset, steps, domain, variables, label)
        blocks.append(data)
        times.append(block_times)
    data = np.concatenate(blocks, axis=0)
    units_of = [str(cut[variable].attrs.get("units", "")) for variable in variables]
    fields = xr.DataArray(
        data, name="X", dims=("time", "lat", "lon", "channel"),
        coords={"time": np.concatenate(times), "lat": cut["lat"].values, "lon": cut["lon"].values,
                "channel": list(variables), "channel_units": ("channel", units_of)},
        attrs={"description": "ERA5 fields cut to the target domain; lat north to south, lon west to east"})
    fields["lat"].attrs = {"units": "degrees_north", "long_name": "latitude"}
    fields["lon"].attrs = {"units": "degrees_east", "long_name": "longitude"}
    with atomic_path(x_path) as tmp:
        fields.to_netcdf(tmp, engine="netcdf4", encoding={"time": TIME_ENCODING, "X": {"dtype": "float32"}})
    # step 2 finds months by their statistics file, and a rerun trusts a month only with its record: both come last
    write_json(stat_path, channel_stats(data, variables))
    provenance.write(record, label, check.fingerprints, options)
    log.info("%s: %d hours written to %s", label, data.shape[0], x_path)
    return {"month": label, "status": "written", "hours": int(data.shape[0])}


def preprocess_step1(source_dir: str | Path, destination_dir: str | Path, years: Sequence[int],
                     months: Sequence[int] | None, variables: Sequence[str], sw_corner: Sequence[float],
                     nyx: Sequence[int], overwrite: bool = False, options: dict[str, Any] | None = None) -> Path:
    """Run step 1 for ``years`` x ``months`` (None: the month folders present for the first year).

    Returns ``<destination_dir>/<EXPNAME>``. Raises :class:`UserError` on bad input (on every MPI rank).
    """
    source_dir, destination_dir = Path(source_dir), Path(destination_dir)
    years = [int(year) for year in years]
    months = None if months is None else [int(month) for month in months]
    variables = list(variables)
    _check_arguments(source_dir, years, months, variables)
    check_writable_directory(destination_dir, "--destination_dir")
    setup_logging(None)
    options = options if options is not None else {
        "source_dir": str(source_dir), "destination_dir": str(destination_dir), "years": years, "months": months,
        "vars": variables, "sw_corner": list(sw_corner), "nyx": list(nyx), "overwrite": overwrite}
    units, domain, experiment_dir = on_root(lambda: _prepare(source_dir, destination_dir, years, months, variables,
                                                             sw_corner, nyx, overwrite, options))
    setup_logging(experiment_dir / LOG_FILE)
    log.info("experiment %s: %d month(s), domain %d x %d, SW corner %s", experiment_dir, len(units), domain.ny,
             domain.nx, domain.sw_corner)
    results = run_units(units, lambda unit: _process_month(unit, source_dir, domain, variables, experiment_dir,
                                                             overwrite),
                        label=lambda unit: f"month {month_label(unit)}")
    written = sum(result["status"] == "written" for result in results)
    log.info("step 1 done: %d month(s) written, %d skipped, in %s", written, len(results) - written, experiment_dir)
    return experiment_dir
