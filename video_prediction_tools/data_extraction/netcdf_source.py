"""Read ERA5 netCDF files as the Copernicus Climate Data Store delivers them, field by field like GRIB messages.

Accepted: a time coordinate ``valid_time`` (CDS since 2024) or ``time`` (earlier CDS files); ``latitude``/``lat``
descending or ascending and ``longitude``/``lon`` in 0..360 or -180..180 on a regular grid of any spacing [degrees];
variables with dims ``(time, [level,] [number,] lat, lon)`` in any order, packed (``scale_factor``/``add_offset``)
or not. The pressure dimension is ``pressure_level`` (CDS since 2024) or ``level`` [hPa, or Pa when its units say
so]; ``number`` is the ensemble member. Variable names are the CDS short names (``t2m``, ``tcc``, ``msl``, ``t``,
...); they are matched to GRIB shortNames (``2t``, ...) through their ``GRIB_shortName`` attribute when present,
else :data:`NETCDF_TO_GRIB_NAMES`. Other variables (bounds, ``expver``) are ignored; a field with another dimension
is refused.

Example::

    from video_prediction_tools.data_extraction.netcdf_source import index_netcdf
    messages = index_netcdf(Path("era5_t2m_2019.nc"), {"2t"})    # one Message per variable, level and hour
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..utils.errors import UserError
from .fields import Message

if TYPE_CHECKING:  # xarray is imported when a netCDF file is opened: GRIB-only users (and the generator) skip it
    import xarray as xr

#: CDS netCDF names whose GRIB shortName differs (the rest carry the GRIB shortName: tcc, msl, t, sp, ...)
NETCDF_TO_GRIB_NAMES = {"t2m": "2t", "d2m": "2d", "u10": "10u", "v10": "10v", "u100": "100u", "v100": "100v",
                        "si10": "10si", "fg10": "10fg"}
TIME_NAMES = ("valid_time", "time")
LATITUDE_NAMES = ("latitude", "lat")
LONGITUDE_NAMES = ("longitude", "lon")
LEVEL_NAMES = ("pressure_level", "level", "isobaricInhPa", "plev")
MEMBER_NAME = "number"
#: largest departure from a regular spacing accepted in coordinates [degrees] (CDS coordinates are float32 or rounded)
SPACING_TOLERANCE = 1e-4


def open_netcdf(path: Path) -> xr.Dataset:
    """Open ``path`` lazily (values are read field by field); UserError naming it when it is no readable netCDF."""
    import xarray as xr

    try:
        return xr.open_dataset(path, decode_timedelta=False, cache=False)
    except Exception as err:  # netCDF4/h5py raise many types for broken files; all mean the same to the user
        raise UserError(f"netCDF file {path} cannot be read: {type(err).__name__}: {err}") from None


def _dimension(dataset: xr.Dataset, names: tuple, path: Path, what: str) -> str:
    for name in names:
        if name in dataset.coords or name in dataset.dims:
            return name
    raise UserError(f"netCDF file {path} has no {what} coordinate (expected one of {', '.join(names)})")


def _regular_step(values: np.ndarray, path: Path, what: str, wrap: bool = False) -> float:
    steps = np.diff(values) % 360.0 if wrap else np.diff(values)
    if wrap:  # a longitude axis running westwards: steps of -d read as 360 - d
        steps = np.where(steps > 180.0, steps - 360.0, steps)
    if len(values) > 1 and (np.any(steps == 0) or np.ptp(steps) > SPACING_TOLERANCE):
        raise UserError(f"netCDF file {path}: the {what} coordinate is not a regular grid "
                        f"(steps from {steps.min():g} to {steps.max():g} degrees)")
    return float(np.mean(steps)) if len(values) > 1 else 0.0


def grid_of(dataset: xr.Dataset, lat_name: str, lon_name: str, path: Path) -> tuple:
    """The grid of ``dataset`` as values of :data:`.fields.GRID_KEYS` (first/last points in file order)."""
    lat = np.asarray(dataset[lat_name].values, dtype=np.float64)
    lon = np.asarray(dataset[lon_name].values, dtype=np.float64)
    lat_step = _regular_step(lat, path, "latitude")
    lon_step = _regular_step(lon, path, "longitude", wrap=True)
    return ("regular_ll", len(lon), len(lat), round(lat[0], 6), round(lat[-1], 6), round(lon[0], 6),
            round(lon[-1], 6), round(abs(lon_step), 6), round(abs(lat_step), 6), int(lon_step < 0),
            int(lat_step > 0), 0)


def grib_short_name(name: str, variable: xr.DataArray) -> str:
    """The GRIB shortName a CDS netCDF variable stands for."""
    return str(variable.attrs.get("GRIB_shortName") or NETCDF_TO_GRIB_NAMES.get(name, name))


def _level_axis(dataset: xr.Dataset, dims: list[str], path: Path, name: str) -> tuple:
    """(dimension, level type, levels) of a variable's pressure axis, or (None, "surface", [0.0])."""
    levels = [dim for dim in dims if dim in LEVEL_NAMES]
    others = [dim for dim in dims if dim not in LEVEL_NAMES and dim != MEMBER_NAME]
    if others or len(levels) > 1:
        raise UserError(f"netCDF file {path}: variable {name!r} has the dimension(s) {', '.join(others or levels)} "
                        f"besides time, {MEMBER_NAME}, a pressure level, latitude and longitude; select or "
                        "combine them before extraction (e.g. one expver per file)")
    if not levels:
        return None, "surface", [0.0]
    values = [float(value) for value in dataset[levels[0]].values]
    pascal = str(dataset[levels[0]].attrs.get("units", "hPa")).strip() == "Pa"
    return levels[0], "isobaricInPa" if pascal else "isobaricInhPa", values


def _members(dataset: xr.Dataset, dims: list[str]) -> list[tuple]:
    """(index or None, member number) pairs of a variable: its ``number`` dimension, else the scalar ``number``."""
    if MEMBER_NAME in dims:
        return [(index, int(value)) for index, value in enumerate(dataset[MEMBER_NAME].values)]
    scalar = dataset.coords.get(MEMBER_NAME)
    return [(None, int(scalar.values) if scalar is not None and scalar.ndim == 0 else 0)]


def index_netcdf(path: Path, wanted_short_names: set[str] | None = None,
                 seen_short_names: set[str] | None = None) -> list[Message]:
    """One :class:`.fields.Message` per variable (GRIB shortName in ``wanted_short_names``, all when None), level,
    member and valid time of the netCDF file ``path``; every shortName met is added to ``seen_short_names``."""
    with open_netcdf(path) as dataset:
        time_name = _dimension(dataset, TIME_NAMES, path, "time")
        lat_name = _dimension(dataset, LATITUDE_NAMES, path, "latitude")
        lon_name = _dimension(dataset, LONGITUDE_NAMES, path, "longitude")
        grid = grid_of(dataset, lat_name, lon_name, path)
        times = np.atleast_1d(dataset[time_name].values).astype("datetime64[s]")
        messages = []
        for name, variable in dataset.data_vars.items():
            if not {time_name, lat_name, lon_name} <= set(variable.dims):
                continue
            short_name = grib_short_name(str(name), variable)
            if seen_short_names is not None:
                seen_short_names.add(short_name)
            if wanted_short_names is not None and short_name not in wanted_short_names:
                continue
            extra = [dim for dim in variable.dims if dim not in (time_name, lat_name, lon_name)]
            level_dim, level_type, levels = _level_axis(dataset, extra, path, str(name))
            header = dict(path=Path(path), offset=0, short_name=short_name, level_type=level_type, grid=grid,
                          units=str(variable.attrs.get("units", "")),
                          long_name=str(variable.attrs.get("long_name", name)))
            for member_index, member in _members(dataset, extra):
                for level_index, level in enumerate(levels):
                    selection = ((level_dim, level_index),) if level_dim else ()
                    selection += ((MEMBER_NAME, member_index),) if member_index is not None else ()
                    messages.extend(
                        Message(level=level, member=member, valid_time=time,
                                location=(str(name), ((time_name, index),) + selection), **header)
                        for index, time in enumerate(times))
    return messages


def read_field(dataset: xr.Dataset, message: Message) -> np.ndarray:
    """The values of ``message`` as float64 (Nj, Ni) in the file's row and column order (missing values: NaN)."""
    name, selection = message.location
    variable = dataset[name]
    field = variable.isel(dict(selection))
    lat_name = next(dim for dim in field.dims if dim in LATITUDE_NAMES)
    lon_name = next(dim for dim in field.dims if dim in LONGITUDE_NAMES)
    return np.asarray(field.transpose(lat_name, lon_name).values, dtype=np.float64)
