"""The target domain of preprocessing: which grid rows and columns a (SW corner, ny x nx) box selects.

Rule (as in the original preprocessing): the box has exactly ``ny`` rows ordered north → south whose southern-most
row is the grid latitude nearest to the SW-corner latitude, and ``nx`` columns ordered west → east starting at the
grid longitude nearest to the SW-corner longitude. On a cyclic (global) grid the columns wrap across 0°/360°; on a
regional grid the box must stay inside the grid. Longitudes may be stored in [0, 360) or [-180, 180), also for
regional grids that cross 0° (e.g. stored ascending as 0..10, 350..359.5: west → east is then 350..359.5, 0..10).
A box that leaves the grid is a :class:`UserError` naming the limit it crosses.

Example (the GMD domain on the 0.3° ERA5 grid)::

    import numpy as np
    from video_prediction_tools.data_preprocess.domain import find_domain

    lat = np.linspace(90, -90, 601)              # degrees_north, north → south as in ERA5
    lon = np.arange(1200) * 0.3                  # degrees_east in [0, 360)
    dom = find_domain(lat, lon, sw_corner=(38.4, 0.0), nyx=(56, 92))
    dom.lat_indices[[0, -1]], dom.lon_indices[[0, -1]]     # (117, 172), (0, 91)
    cropped = dom.cut(dataset)                   # xarray object with dims lat, lon → (ny, nx) box
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..utils.errors import UserError

#: tolerance (in grid steps) when deciding whether a point lies within half a grid step of the grid
_HALF_STEP_TOLERANCE = 0.5 + 1e-6


@dataclass(frozen=True)
class Domain:
    """A box of the source grid.

    ``lat_indices`` (ny,) and ``lon_indices`` (nx,) index the source arrays ``lat``/``lon``; ``lat`` (degrees_north,
    north → south) and ``lon`` (degrees_east, west → east, as stored in the source, so possibly 354..359.7, 0..3.6)
    are the selected grid values. ``sw_corner`` = (lat, lon) of the south-west grid point, lon signed in (-180, 180].
    """

    lat_indices: np.ndarray
    lon_indices: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    sw_corner: tuple[float, float]

    @property
    def ny(self) -> int:
        return len(self.lat_indices)

    @property
    def nx(self) -> int:
        return len(self.lon_indices)

    def cut(self, data, lat_dim: str = "lat", lon_dim: str = "lon"):
        """Select the box from an xarray Dataset/DataArray with dims ``lat_dim``/``lon_dim`` (rows N→S, cols W→E)."""
        return _select_runs(_select_runs(data, lat_dim, self.lat_indices), lon_dim, self.lon_indices)


def _select_runs(data, dim: str, indices: np.ndarray):
    """``data.isel({dim: indices})`` done as one slice per run of consecutive indices.

    netCDF backends read slices far faster than integer-array selections; a box has one run of rows and one or
    two runs of columns (two when it wraps).
    """
    runs, start = [], 0
    for k in range(1, len(indices) + 1):
        if (k == len(indices) or abs(indices[k] - indices[k - 1]) != 1
                or (k - start > 1 and indices[k] - indices[k - 1] != indices[start + 1] - indices[start])):
            runs.append(indices[start:k])
            start = k
    parts = []
    for run in runs:
        if len(run) > 1 and run[1] < run[0]:  # descending run: read ascending, then reverse
            parts.append(data.isel({dim: slice(int(run[-1]), int(run[0]) + 1)}).isel({dim: slice(None, None, -1)}))
        else:
            parts.append(data.isel({dim: slice(int(run[0]), int(run[-1]) + 1)}))
    if len(parts) == 1:
        return parts[0]
    import xarray as xr  # here, not at the top: the runscript generator uses find_domain and must start at once

    return xr.concat(parts, dim=dim, data_vars="minimal", coords="minimal", compat="override")


def signed_longitude(lon: float) -> float:
    """Longitude in degrees_east mapped to (-180, 180]."""
    lon = float(lon) % 360.0
    return lon - 360.0 if lon > 180.0 else lon


def _check_box_size(nyx: Sequence[int]) -> tuple[int, int]:
    if len(nyx) != 2:
        raise UserError(f"--nyx expects two integers NY NX, got {list(nyx)}")
    ny, nx = nyx
    if int(ny) != ny or int(nx) != nx or ny < 2 or nx < 2:
        raise UserError(f"--nyx {ny} {nx}: the domain needs at least 2 rows and 2 columns (integers)")
    return int(ny), int(nx)


def _latitude_rows(lat: np.ndarray, lat0: float, ny: int) -> np.ndarray:
    """Indices of ny rows north → south ending at the grid latitude nearest ``lat0``."""
    if lat.ndim != 1 or len(lat) < 2:
        raise UserError(f"the source grid needs a 1-D latitude axis with at least 2 values, got shape {lat.shape}")
    north_to_south = np.argsort(-lat, kind="stable")
    ordered = lat[north_to_south]
    steps = -np.diff(ordered)
    if np.any(steps <= 0):
        raise UserError("the source grid has repeated latitudes; expected strictly monotonic latitudes")
    step = float(np.median(steps))
    if not (ordered[-1] - _HALF_STEP_TOLERANCE * step <= lat0 <= ordered[0] + _HALF_STEP_TOLERANCE * step):
        raise UserError(f"SW corner latitude {lat0} lies outside the grid latitudes "
                        f"[{ordered[-1]:g}, {ordered[0]:g}] degrees_north")
    south_row = int(np.argmin(np.abs(ordered - lat0)))
    north_row = south_row - ny + 1
    if north_row < 0:
        raise UserError(f"a domain of {ny} rows with SW corner latitude {ordered[south_row]:g} reaches beyond the "
                        f"northern edge of the grid ({ordered[0]:g} degrees_north); at most {south_row + 1} rows fit")
    return north_to_south[north_row:south_row + 1]


def _longitude_columns(lon: np.ndarray, lon0: float, nx: int) -> np.ndarray:
    """Indices of nx columns west → east starting at the grid longitude nearest ``lon0`` (wrapping if cyclic)."""
    if lon.ndim != 1 or len(lon) < 2:
        raise UserError(f"the source grid needs a 1-D longitude axis with at least 2 values, got shape {lon.shape}")
    nlon = len(lon)
    lon360 = np.mod(lon.astype(np.float64), 360.0)
    ascending = np.argsort(lon360, kind="stable")
    sorted_lon = lon360[ascending]
    # circular gaps between neighbours; the gap after the last value wraps to the first one
    gaps = np.append(np.diff(sorted_lon), sorted_lon[0] + 360.0 - sorted_lon[-1])
    if np.any(gaps <= 0):
        raise UserError("the source grid has repeated longitudes (modulo 360); expected distinct longitudes")
    step = float(np.median(gaps))
    cyclic = bool(gaps.max() < 1.5 * step)
    # west → east order: start after the largest gap (the western edge of a regional grid)
    start = (int(np.argmax(gaps)) + 1) % nlon
    west_to_east = np.roll(ascending, -start)
    offsets = np.mod(lon360[west_to_east] - lon360[west_to_east[0]], 360.0)
    offset0 = np.mod(lon0 - lon360[west_to_east[0]], 360.0)
    if cyclic:
        distance = np.abs(np.mod(offsets - offset0 + 180.0, 360.0) - 180.0)
        first = int(np.argmin(distance))
        positions = np.arange(first, first + nx)
        if nx > nlon:
            raise UserError(f"--nyx asks for {nx} columns but the global grid has only {nlon} longitudes")
        return west_to_east[positions % nlon]
    if offset0 > 360.0 - _HALF_STEP_TOLERANCE * step:  # just west of the western edge
        offset0 -= 360.0
    west, east = lon360[west_to_east[0]], lon360[west_to_east[-1]]
    if not (-_HALF_STEP_TOLERANCE * step <= offset0 <= offsets[-1] + _HALF_STEP_TOLERANCE * step):
        raise UserError(f"SW corner longitude {lon0:g} lies outside the grid longitudes "
                        f"(from {signed_longitude(west):g} eastwards to {signed_longitude(east):g} degrees_east)")
    first = int(np.argmin(np.abs(offsets - offset0)))
    if first + nx > nlon:
        raise UserError(f"a domain of {nx} columns starting at longitude {lon[west_to_east[first]]:g} reaches "
                        f"beyond the eastern edge of the grid ({signed_longitude(east):g} degrees_east); "
                        f"at most {nlon - first} columns fit")
    return west_to_east[first:first + nx]


def find_domain(lat: Sequence[float], lon: Sequence[float], sw_corner: Sequence[float],
                nyx: Sequence[int]) -> Domain:
    """Select the (ny, nx) box whose south-west grid point is nearest ``sw_corner`` = (lat, lon) in degrees.

    ``lat``/``lon`` are the source grid's 1-D coordinates in any order (ERA5: lat descending, lon ascending).
    Raises :class:`UserError` when ny or nx < 2 or the box leaves a non-cyclic grid.
    """
    if len(sw_corner) != 2:
        raise UserError(f"--sw_corner expects two numbers LAT LON, got {list(sw_corner)}")
    lat0, lon0 = float(sw_corner[0]), float(sw_corner[1])
    if not -90.0 <= lat0 <= 90.0:
        raise UserError(f"SW corner latitude {lat0} is not in [-90, 90]")
    ny, nx = _check_box_size(nyx)
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    rows = _latitude_rows(lat, lat0, ny)
    columns = _longitude_columns(lon, lon0, nx)
    return Domain(lat_indices=rows, lon_indices=columns, lat=lat[rows], lon=lon[columns],
                  sw_corner=(float(lat[rows[-1]]), signed_longitude(lon[columns[0]])))
