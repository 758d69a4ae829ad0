"""The header of one 2-D field of an ERA5 archive, whatever file format holds it (GRIB message or netCDF slice).

A :class:`Message` says which variable (GRIB shortName), level and valid time a field is, on which grid, and where
it lies: a byte offset for GRIB, a variable name and dimension indices for netCDF. The grid is described by the
GRIB keys :data:`GRID_KEYS` for both formats, so that fields of either kind are compared and arranged alike.

Example::

    from video_prediction_tools.data_extraction.fields import GRID_KEYS, Message
    grid = dict(zip(GRID_KEYS, message.grid))    # {"gridType": "regular_ll", "Ni": 49, "Nj": 33, ...}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRID_KEYS = ("gridType", "Ni", "Nj", "latitudeOfFirstGridPointInDegrees", "latitudeOfLastGridPointInDegrees",
             "longitudeOfFirstGridPointInDegrees", "longitudeOfLastGridPointInDegrees",
             "iDirectionIncrementInDegrees", "jDirectionIncrementInDegrees", "iScansNegatively",
             "jScansPositively", "jPointsAreConsecutive")


@dataclass(frozen=True)
class Message:
    """Header of one field and where it lies."""

    path: Path
    offset: int  # bytes from the start of a GRIB file (0 for a netCDF field)
    short_name: str
    level_type: str
    level: float
    member: int
    valid_time: np.datetime64  # datetime64[s]
    grid: tuple  # values of GRID_KEYS
    units: str
    long_name: str
    #: netCDF fields only: (variable name, ((dimension, index), ...)) selecting the 2-D (lat, lon) slice
    location: tuple | None = None
