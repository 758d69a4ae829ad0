"""Coastline polylines for the example forecast maps, read from a local shapefile (nothing is downloaded).

The maps are plain longitude/latitude axes (equirectangular, "PlateCarree"), so coastlines are drawn as ordinary
matplotlib lines. Shapefiles are read with the pure-Python ``pyshp`` package; cartopy is deliberately not used
(its shapely/pyproj wheels and netCDF4 in one process corrupted the heap at exit, which crashed postprocessing).

The first coastline file found is used, in this order:

1. ``$AMBS_COASTLINES``: a ``.shp`` file with polygons or lines in degrees (lon, lat); set but missing or
   unreadable is an error;
2. Natural Earth ``ne_{10m,50m,110m}_coastline.shp`` in the usual cartopy data folders;
3. GSHHS level-1 shorelines as shipped by Debian/Ubuntu (``apt-get install python-cartopy-data``, crude
   resolution only), ``/usr/share/cartopy/data/shapefiles/gshhs/<res>/GSHHS_<res>_L1.shp``.

For 2 and 3 the resolution suits the domain size (finer for smaller domains, falling back to what is installed).
Without any file, maps stay plain (logged once at INFO level).

Example::

    from video_prediction_tools.postprocess.coastlines import coastline_segments
    segments = coastline_segments(-0.9, 2.4, 42.9, 45.0)  # list of (N, 2) arrays of (lon, lat) in degrees
"""
from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import numpy as np
import shapefile

from ..utils.errors import UserError

LOGGER = logging.getLogger(__name__)
ENVIRONMENT_VARIABLE = "AMBS_COASTLINES"
NATURAL_EARTH_DIRS = (Path.home() / ".local/share/cartopy/shapefiles/natural_earth/physical",
                      Path("/usr/share/cartopy/data/shapefiles/natural_earth/physical"))
GSHHS_DIR = Path("/usr/share/cartopy/data/shapefiles/gshhs")
#: (resolution, largest domain extent in degrees it is preferred for), finest first
NATURAL_EARTH_RESOLUTIONS = (("10m", 60.0), ("50m", 180.0), ("110m", math.inf))
#: GSHHS full resolution ("f") is only a last resort: its continents hold millions of points
GSHHS_RESOLUTIONS = (("h", 4.0), ("i", 15.0), ("l", 60.0), ("c", math.inf), ("f", math.inf))


def coastline_segments(lon_min: float, lon_max: float, lat_min: float, lat_max: float) -> list[np.ndarray]:
    """Coastlines inside the box, as a list of float64 arrays ``(N, 2)`` of (lon, lat) in degrees, N >= 2.

    The lines are clipped exactly to the box. Longitudes are returned in the box's convention: a box such as
    -0.9..2.4 (crossing 0°E) or 170..190 (crossing the date line) gets file longitudes shifted by multiples of
    360°, whatever convention ([-180, 180) or [0, 360)) the file uses. Empty list when no coastline file exists.
    Results are cached per (file, box), so drawing many maps of one domain reads the file once.
    """
    if not (lon_min < lon_max and lat_min < lat_max and lon_max - lon_min <= 360.0):
        raise ValueError(f"invalid coastline box lon {lon_min}..{lon_max}, lat {lat_min}..{lat_max}")
    path = find_coastline_file(max(lon_max - lon_min, lat_max - lat_min))
    if path is None:
        return []
    box = (float(lon_min), float(lon_max), float(lat_min), float(lat_max))
    return [segment.copy() for segment in _read_segments(str(path), path.stat().st_mtime_ns, box)]


def find_coastline_file(extent_degrees: float) -> Path | None:
    """The coastline shapefile to use for a domain ``extent_degrees`` wide (see the module docstring)."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise UserError(f"{ENVIRONMENT_VARIABLE}={configured}: no such coastline shapefile (expected a .shp "
                            f"file with coastline polygons or lines in degrees; unset it to use installed data)")
        return path
    candidates = [folder / f"ne_{resolution}_coastline.shp"
                  for resolution in _preferred_resolutions(NATURAL_EARTH_RESOLUTIONS, extent_degrees)
                  for folder in NATURAL_EARTH_DIRS]
    candidates += [GSHHS_DIR / resolution / f"GSHHS_{resolution}_L1.shp"
                   for resolution in _preferred_resolutions(GSHHS_RESOLUTIONS, extent_degrees)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    _report_missing_data()
    return None


def _preferred_resolutions(resolutions, extent_degrees: float) -> list[str]:
    """The resolution meant for ``extent_degrees``, then the coarser ones, then the finer ones."""
    names = [name for name, _ in resolutions]
    preferred = next(i for i, (_, largest) in enumerate(resolutions) if extent_degrees <= largest)
    return names[preferred:] + names[:preferred][::-1]


@functools.lru_cache(maxsize=None)
def _report_missing_data() -> None:
    LOGGER.info("No coastline data found (set %s to a .shp file, or install Natural Earth coastlines or the "
                "Debian package python-cartopy-data); maps are drawn without coastlines", ENVIRONMENT_VARIABLE)


@functools.lru_cache(maxsize=16)
def _read_segments(path: str, modified_ns: int, box: tuple[float, float, float, float]) -> tuple[np.ndarray, ...]:
    """Every part of every shape in ``path`` that overlaps ``box`` (after shifts by 360°), clipped to the box.
    ``modified_ns`` only makes a rewritten file miss the cache."""
    lon_min, lon_max, lat_min, lat_max = box
    parts = []
    try:
        with shapefile.Reader(path) as reader:
            file_lon_min, _, file_lon_max, _ = reader.bbox
            for shift in _longitude_shifts(file_lon_min, file_lon_max, lon_min, lon_max):
                # pyshp skips the points of shapes whose bounding box misses the query box
                query = (lon_min - shift, lat_min, lon_max - shift, lat_max)
                for shape in reader.iterShapes(bbox=query):
                    if shape is None or not shape.points:
                        continue
                    points = np.asarray(shape.points, dtype=np.float64)[:, :2] + (shift, 0.0)
                    bounds = [*shape.parts, len(points)]
                    parts += [points[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
    except Exception as error:  # pyshp reports a damaged file as any of OSError, KeyError, struct.error, ...
        raise UserError(f"coastline shapefile {path} could not be read ({type(error).__name__}: {error}); expected "
                        f"a .shp file with coastline polygons or lines (set {ENVIRONMENT_VARIABLE} to another "
                        f"file)") from error
    return tuple(segment for part in parts for segment in clip_polyline(part, box))


def _longitude_shifts(data_min: float, data_max: float, box_min: float, box_max: float) -> range:
    """Multiples of 360° that, added to longitudes in [data_min, data_max], can land in [box_min, box_max]."""
    first = math.ceil((box_min - data_max) / 360.0)
    last = math.floor((box_max - data_min) / 360.0)
    return range(first * 360, last * 360 + 1, 360)


def clip_polyline(points: np.ndarray, box: tuple[float, float, float, float]) -> list[np.ndarray]:
    """The pieces of the polyline ``points`` ``(N, 2)`` (x, y) inside ``box`` = (x_min, x_max, y_min, y_max).

    Each segment is clipped with the Liang-Barsky parametrisation; consecutive visible segments that meet inside
    the box are joined into one piece. A closed ring (first point == last point) whose start lies inside the box
    is joined across its start, so an island cut by the box edge gives one piece per visit, not two.
    """
    x_min, x_max, y_min, y_max = box
    if len(points) < 2:
        return []
    start, delta = points[:-1], np.diff(points, axis=0)
    # boundary i is crossed where t = q_i / p_i; p < 0: the segment enters there, p > 0: it leaves there
    p = np.stack([-delta[:, 0], delta[:, 0], -delta[:, 1], delta[:, 1]], axis=1)
    q = np.stack([start[:, 0] - x_min, x_max - start[:, 0], start[:, 1] - y_min, y_max - start[:, 1]], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = q / p
    t_enter = np.max(np.where(p < 0, ratio, 0.0), axis=1, initial=0.0)
    t_leave = np.min(np.where(p > 0, ratio, 1.0), axis=1, initial=1.0)
    visible = (t_enter <= t_leave) & ~np.any((p == 0) & (q < 0), axis=1)
    lower, upper = (x_min, y_min), (x_max, y_max)  # clip away rounding just outside the edges
    entry = np.clip(start + t_enter[:, None] * delta, lower, upper)
    exit_ = np.clip(start + t_leave[:, None] * delta, lower, upper)

    pieces: list[list[np.ndarray]] = []
    previous = None  # index of the previous visible segment
    for index in np.flatnonzero(visible):
        # a segment continues the current piece when it starts where the previous one ended, inside the box
        if previous == index - 1 and t_leave[previous] == 1.0 and t_enter[index] == 0.0:
            piece = pieces[-1]
        else:
            piece = [entry[index]]
            pieces.append(piece)
        if not np.array_equal(exit_[index], piece[-1]):
            piece.append(exit_[index])
        previous = index
    closed = np.array_equal(points[0], points[-1])
    if (closed and len(pieces) > 1 and visible[0] and visible[-1] and t_enter[0] == 0.0
            and t_leave[-1] == 1.0):
        pieces[0] = pieces.pop()[:-1] + pieces[0]
    return [np.array(piece) for piece in pieces if len(piece) > 1]  # one point: the box touched at a corner
