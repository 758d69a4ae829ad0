"""Decode ERA5 fields with eccodes (GRIB editions 1 and 2; netCDF slices through :mod:`.netcdf_source`): pick
fields by shortName and level type, interpolate model-level (hybrid) fields to pressure levels, and refuse broken
input with one clear line naming the file.

Two passes keep memory small and report bad input before any heavy work:

1. :func:`index_messages` reads only the headers of every message (shortName, level type and level, ensemble
   member, valid time, grid) and checks that each file consists of complete GRIB messages only (plus the zero
   bytes with which ECMWF's MARS pads GRIB 1 messages);
2. :func:`decode_hour` decodes the values of one valid time, interpolating hybrid-level fields with the ``pv``
   coefficients and ``lnsp`` like CDO ``ml2pl`` (linear in log-pressure between full levels).

Example::

    from video_prediction_tools.data_extraction.grib import index_messages, plan_month, decode_hour
    from video_prediction_tools.data_extraction.varmapping import load_varmapping

    mapping = load_varmapping("templates/data_extraction/era5_varmapping_template.json")
    index = index_messages(sorted(Path("grib/2017/01").glob("*.grb")), {"2t", "tcc", "msl", "t"})
    plan = plan_month(index, mapping)                  # validated: every variable at every valid time
    fields = decode_hour(plan, plan.times[0])          # {"2t": (lat, lon) float64, ..., "t_850": ...}
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..utils.errors import UserError
from . import netcdf_source
from .fields import GRID_KEYS, Message
from .varmapping import VarMapping

#: level types of multi-level fields; anything else (surface, heightAboveGround, meanSea, ...) is single-level
PRESSURE_LEVEL_TYPES = {"isobaricInhPa": 100.0, "isobaricInPa": 1.0}  # factor to Pa
HYBRID_LEVEL_TYPE = "hybrid"
NON_SURFACE_LEVEL_TYPES = set(PRESSURE_LEVEL_TYPES) | {HYBRID_LEVEL_TYPE, "theta", "potentialVorticity",
                                                        "soilLayer", "depthBelowLandLayer", "generalVertical"}


#: integer header keys that determine shortName, typeOfLevel, units and name (GRIB "concepts"). Concepts are slow
#: to evaluate (milliseconds per GRIB 2 message), so they are looked up once per distinct combination of these keys.
CONCEPT_SIGNATURE_KEYS = {
    1: ("centre", "table2Version", "indicatorOfParameter", "indicatorOfTypeOfLevel", "level", "timeRangeIndicator"),
    2: ("centre", "tablesVersion", "localTablesVersion", "discipline", "parameterCategory", "parameterNumber",
        "productDefinitionTemplateNumber", "typeOfFirstFixedSurface", "scaleFactorOfFirstFixedSurface",
        "scaledValueOfFirstFixedSurface", "typeOfSecondFixedSurface", "scaleFactorOfSecondFixedSurface",
        "scaledValueOfSecondFixedSurface", "typeOfStatisticalProcessing"),
}
CONCEPT_KEYS = ("shortName", "typeOfLevel", "units", "name")


class _ConceptCache:
    """shortName, typeOfLevel, units and name of messages, evaluated once per concept signature."""

    def __init__(self, eccodes):
        self.eccodes = eccodes
        self.known: dict = {}

    def __call__(self, handle) -> tuple:
        eccodes = self.eccodes
        edition = eccodes.codes_get(handle, "edition")
        signature = (edition,) + tuple(
            eccodes.codes_get(handle, key, int) if eccodes.codes_is_defined(handle, key) else None
            for key in CONCEPT_SIGNATURE_KEYS.get(edition, ()))
        if signature not in self.known:
            self.known[signature] = tuple(eccodes.codes_get(handle, key) for key in CONCEPT_KEYS)
        return self.known[signature]


@dataclass
class Grid:
    """A regular lat/lon grid as decoded: ``latitudes`` north→south [degrees_north], ``longitudes`` ascending in
    [0, 360) [degrees_east]; ``column_order`` puts the decoded columns into that order and ``flip_rows`` says
    whether the decoded rows run south→north."""

    latitudes: np.ndarray
    longitudes: np.ndarray
    column_order: np.ndarray
    flip_rows: bool

    @classmethod
    def from_keys(cls, keys: dict) -> "Grid":
        ni, nj = keys["Ni"], keys["Nj"]
        lat_first, lat_last = keys["latitudeOfFirstGridPointInDegrees"], keys["latitudeOfLastGridPointInDegrees"]
        lon_first, lon_last = keys["longitudeOfFirstGridPointInDegrees"], keys["longitudeOfLastGridPointInDegrees"]
        latitudes = np.round(np.linspace(lat_first, lat_last, nj), 6)
        step = ((lon_last - lon_first) % 360.0) / (ni - 1) if ni > 1 else 0.0
        if keys["iScansNegatively"]:
            step = -(((lon_first - lon_last) % 360.0) / (ni - 1)) if ni > 1 else 0.0
        longitudes = np.round((lon_first + step * np.arange(ni)) % 360.0, 6) % 360.0
        column_order = np.argsort(longitudes, kind="stable")
        flip_rows = bool(nj > 1 and latitudes[0] < latitudes[-1])
        if flip_rows:
            latitudes = latitudes[::-1]
        return cls(latitudes, longitudes[column_order], column_order, flip_rows)

    def arrange(self, values: np.ndarray) -> np.ndarray:
        """Decoded (Nj, Ni) values → (lat north→south, lon ascending)."""
        if self.flip_rows:
            values = values[::-1]
        return values[:, self.column_order]


@dataclass
class MonthPlan:
    """Validated plan of a month: for each valid time, which messages make each output variable."""

    mapping: VarMapping
    grid_keys: dict
    grid: Grid
    times: list  # sorted datetime64[s]
    surface: dict = field(default_factory=dict)  # (time, name) -> Message
    pressure: dict = field(default_factory=dict)  # (time, output_name) -> Message
    hybrid: dict = field(default_factory=dict)  # (time, short_name) -> {level: Message}
    lnsp: dict = field(default_factory=dict)  # time -> Message
    attributes: dict = field(default_factory=dict)  # output name -> {"units", "long_name"}


def _eccodes():
    import eccodes

    return eccodes


def _valid_time(eccodes, handle) -> np.datetime64:
    date = eccodes.codes_get(handle, "validityDate")
    hhmm = eccodes.codes_get(handle, "validityTime")
    return np.datetime64(f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}T"
                         f"{hhmm // 100:02d}:{hhmm % 100:02d}", "s")


def _only_padding(stream, start: int, end: int) -> bool:
    """Whether bytes ``start``..``end`` of ``stream`` are zeros (MARS pads GRIB 1 messages to 120 bytes)."""
    return end <= start or not os.pread(stream.fileno(), end - start, start).strip(b"\0")


def _header(eccodes, concepts, handle, path: Path, offset: int, wanted: set[str] | None,
            seen: set[str] | None) -> Message | None:
    """The :class:`Message` of ``handle``, or None when its shortName is not wanted."""
    short_name, level_type, units, long_name = concepts(handle)
    if seen is not None:
        seen.add(short_name)
    if wanted is not None and short_name not in wanted:
        return None
    member = int(eccodes.codes_get(handle, "number")) if eccodes.codes_is_defined(handle, "number") else 0
    grid = tuple(eccodes.codes_get(handle, key) if eccodes.codes_is_defined(handle, key) else None
                 for key in GRID_KEYS)
    return Message(path=path, offset=offset, short_name=short_name, level_type=level_type,
                   level=float(eccodes.codes_get(handle, "level", float)), member=member,
                   valid_time=_valid_time(eccodes, handle), grid=grid, units=units, long_name=long_name)


def _index_file(eccodes, concepts, path: Path, wanted, seen, messages: list) -> int:
    """Append the wanted headers of ``path`` to ``messages``; return where its last complete message ends."""
    position = 0
    with open(path, "rb") as stream:
        while True:
            handle = eccodes.codes_grib_new_from_file(stream, headers_only=True)
            if handle is None:
                break
            try:
                offset = int(eccodes.codes_get(handle, "offset"))
                if not _only_padding(stream, position, offset):
                    raise UserError(f"GRIB file {path} is corrupt: {offset - position} unexpected bytes "
                                    f"before the message at byte {offset}")
                position = offset + int(eccodes.codes_get(handle, "totalLength"))
                message = _header(eccodes, concepts, handle, path, offset, wanted, seen)
                if message is not None:
                    messages.append(message)
            finally:
                eccodes.codes_release(handle)
        size = os.fstat(stream.fileno()).st_size
        if position and not _only_padding(stream, position, size):
            raise UserError(f"GRIB file {path} is corrupt or truncated: only {position} of its {size} bytes "
                            "form complete GRIB messages")
    return position


def index_messages(paths: Sequence[Path], wanted_short_names: set[str] | None = None,
                   seen_short_names: set[str] | None = None) -> list[Message]:
    """Headers of the messages whose shortName is in ``wanted_short_names`` (all when None), in file order;
    every shortName met is added to ``seen_short_names`` when given.

    Raises UserError naming the file when it is empty, unreadable, truncated, or holds bytes outside complete GRIB
    messages other than zero padding (which a lenient reader would silently skip).
    """
    eccodes = _eccodes()
    concepts = _ConceptCache(eccodes)
    messages: list[Message] = []
    for path in map(Path, paths):
        try:
            position = _index_file(eccodes, concepts, path, wanted_short_names, seen_short_names, messages)
        except UserError:
            raise
        except (eccodes.GribInternalError, ValueError, OSError) as err:
            raise UserError(f"GRIB file {path} is corrupt or truncated: {type(err).__name__}: {err}") from None
        if position == 0:
            raise UserError(f"GRIB file {path} holds no GRIB message")
    return messages


def _grid_of(messages: Sequence[Message]) -> dict:
    """The GRIB grid keys shared by all ``messages``; UserError on mixed or unsupported grids."""
    first = messages[0]
    for message in messages:
        if message.grid != first.grid:
            raise UserError(f"mixed grids: {message.short_name} in {message.path} is on "
                            f"{_describe_grid(message.grid)}, but {first.short_name} in {first.path} is on "
                            f"{_describe_grid(first.grid)}")
    grid_keys = dict(zip(GRID_KEYS, first.grid))
    if grid_keys["gridType"] != "regular_ll":
        raise UserError(f"{first.path}: grid type {grid_keys['gridType']!r} is not supported (regular_ll expected; "
                        "retrieve ERA5 with GRID=0.3/0.3)")
    if grid_keys["jPointsAreConsecutive"]:
        raise UserError(f"{first.path}: column-major grids (jPointsAreConsecutive=1) are not supported")
    return grid_keys


def _put(table: dict, key, message: Message) -> None:
    if key in table:
        raise UserError(f"duplicate field {message.short_name} ({message.level_type} {message.level:g}) at "
                        f"{message.valid_time}: offered by both {table[key].path} and {message.path}")
    table[key] = message


def _plan_surface(plan: MonthPlan, by_name: dict, found: str, where: str) -> None:
    for name in plan.mapping.surface:
        candidates = [m for m in by_name.get(name, []) if m.level_type not in NON_SURFACE_LEVEL_TYPES]
        if not candidates:
            raise UserError(f"variable {name!r} (single level) not found in the files of {where}{found}")
        for message in candidates:
            _put(plan.surface, (message.valid_time, name), message)
        plan.attributes[name] = {"units": candidates[0].units, "long_name": candidates[0].long_name}


def _plan_pressure_level(plan: MonthPlan, item, on_pressure: list[Message]) -> Message:
    at_level = [m for m in on_pressure if m.level * PRESSURE_LEVEL_TYPES[m.level_type] == item.pressure_pa]
    if not at_level:
        levels = sorted({m.level * PRESSURE_LEVEL_TYPES[m.level_type] / 100 for m in on_pressure})
        raise UserError(f"level {item.pressure_pa / 100:g} hPa of {item.short_name!r} not found in "
                        f"{on_pressure[0].path} (pressure levels there: {', '.join(f'{p:g}' for p in levels)} hPa)")
    for message in at_level:
        _put(plan.pressure, (message.valid_time, item.output_name), message)
    return at_level[0]


def _plan_model_levels(plan: MonthPlan, item, on_hybrid: list[Message], by_name: dict, where: str) -> Message:
    if item.short_name not in {name for _, name in plan.hybrid}:
        for message in on_hybrid:
            levels = plan.hybrid.setdefault((message.valid_time, item.short_name), {})
            _put(levels, message.level, message)
    lnsp = [m for m in by_name.get("lnsp", []) if m.level_type == HYBRID_LEVEL_TYPE]
    if not lnsp:
        raise UserError(f"{item.short_name!r} is on model levels in {on_hybrid[0].path}, but no 'lnsp' "
                        f"(log surface pressure) is in the files of {where}, so it cannot be "
                        "interpolated to pressure levels")
    for message in lnsp:
        plan.lnsp.setdefault(message.valid_time, message)
    return on_hybrid[0]


def _plan_levels(plan: MonthPlan, by_name: dict, found: str, where: str) -> None:
    for item in plan.mapping.levels:
        on_pressure = [m for m in by_name.get(item.short_name, []) if m.level_type in PRESSURE_LEVEL_TYPES]
        on_hybrid = [m for m in by_name.get(item.short_name, []) if m.level_type == HYBRID_LEVEL_TYPE]
        if on_pressure:
            template = _plan_pressure_level(plan, item, on_pressure)
        elif on_hybrid:
            template = _plan_model_levels(plan, item, on_hybrid, by_name, where)
        else:
            raise UserError(f"variable {item.short_name!r} on pressure or model levels not found in the files "
                            f"of {where}{found}")
        plan.attributes[item.output_name] = {"units": template.units, "long_name": template.long_name}


def _check_complete(plan: MonthPlan, messages: Sequence[Message]) -> None:
    """Every output variable at every valid time, else UserError naming the hour and its files."""
    files_of_time = defaultdict(set)
    for message in messages:
        files_of_time[message.valid_time].add(str(message.path))
    for time in plan.times:
        missing = [name for name in plan.mapping.surface if (time, name) not in plan.surface]
        for item in plan.mapping.levels:
            if (time, item.output_name) in plan.pressure:
                continue
            levels = plan.hybrid.get((time, item.short_name), {})
            if len(levels) < 2 or time not in plan.lnsp:
                missing.append(item.output_name)
        if missing:
            raise UserError(f"{', '.join(missing)} missing at {time} in {', '.join(sorted(files_of_time[time]))}")


def plan_month(messages: Sequence[Message], mapping: VarMapping, member: int = 0, where: str = "",
               available: set[str] | None = None) -> MonthPlan:
    """Check that ``messages`` give every variable of ``mapping`` at every valid time, on one grid, each field
    from one file only.

    Multi-level variables come from pressure-level messages when the source has the variable on pressure levels,
    otherwise from hybrid levels plus ``lnsp``. ``where`` names the source (a directory) in error messages;
    ``available`` lists every variable the source holds (for the message naming what was found).
    """
    messages = [m for m in messages if m.member == member]
    if not messages:
        raise UserError(f"no field of ensemble member {member} for the requested variables in {where}")
    grid_keys = _grid_of(messages)
    plan = MonthPlan(mapping, grid_keys, Grid.from_keys(grid_keys), sorted({m.valid_time for m in messages}))
    by_name = defaultdict(list)
    for message in messages:
        by_name[message.short_name].append(message)
    found = f" (found: {', '.join(sorted(available or by_name))})"
    _plan_surface(plan, by_name, found, where)
    _plan_levels(plan, by_name, found, where)
    _check_complete(plan, messages)
    return plan


def _describe_grid(grid: tuple) -> str:
    keys = dict(zip(GRID_KEYS, grid))
    return (f"{keys['gridType']} {keys['Nj']}x{keys['Ni']} from ({keys['latitudeOfFirstGridPointInDegrees']:g}N, "
            f"{keys['longitudeOfFirstGridPointInDegrees']:g}E) step {keys['jDirectionIncrementInDegrees']}")


def _decode_grib(eccodes, message: Message, stream) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Values of the GRIB ``message`` (flat), its count of missing values, and its pv array for hybrid fields."""
    stream.seek(message.offset)
    handle = eccodes.codes_grib_new_from_file(stream)
    if handle is None:
        raise UserError(f"GRIB file {message.path} changed while being read (no message at byte {message.offset})")
    try:
        values = eccodes.codes_get_values(handle)
        missing = eccodes.codes_get(handle, "numberOfMissing") if eccodes.codes_is_defined(
            handle, "numberOfMissing") else 0
        pv = eccodes.codes_get_array(handle, "pv") if message.level_type == HYBRID_LEVEL_TYPE and \
            eccodes.codes_get(handle, "PVPresent") else None
    except eccodes.GribInternalError as err:
        raise UserError(f"GRIB file {message.path} is corrupt: cannot decode {message.short_name}: {err}") from None
    finally:
        eccodes.codes_release(handle)
    return values, int(missing), pv


def _decode(eccodes, message: Message, streams: "_Streams", shape: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of ``message`` (GRIB or netCDF) as (Nj, Ni) float64, and its pv array for hybrid GRIB fields."""
    if message.location is not None:
        values, missing, pv = netcdf_source.read_field(streams.netcdf(message.path), message), 0, None
    else:
        values, missing, pv = _decode_grib(eccodes, message, streams(message.path))
    if missing or not np.all(np.isfinite(values)):
        count = missing or int(np.count_nonzero(~np.isfinite(values)))
        raise UserError(f"{'netCDF' if message.location else 'GRIB'} file {message.path}: {message.short_name} "
                        f"({message.level_type} {message.level:g}) at {message.valid_time} has {count} missing or "
                        "NaN values")
    return values.reshape(shape), pv


def full_level_pressure(pv: np.ndarray, levels: np.ndarray, surface_pressure: np.ndarray) -> np.ndarray:
    """Full-level pressure [Pa] of hybrid ``levels`` (1-based) from the GRIB ``pv`` array (A half-level values,
    then B): the mean of the two bounding half-level pressures, as in CDO/IFS. Shape (level,) + ps.shape."""
    half = len(pv) // 2
    a, b = np.asarray(pv[:half]), np.asarray(pv[half:])
    levels = np.asarray(levels, dtype=int)
    ps = surface_pressure[None]
    upper = a[levels - 1, None, None] + b[levels - 1, None, None] * ps
    lower = a[levels, None, None] + b[levels, None, None] * ps
    return 0.5 * (upper + lower)


def interpolate_to_pressure(values: np.ndarray, level_pressure: np.ndarray, target_pa: float) -> np.ndarray | None:
    """Interpolate ``values`` (level, lat, lon) given at ``level_pressure`` (same shape, increasing along levels)
    to ``target_pa``, linearly in log-pressure. Below the lowest level the lowest value is kept (CDO ml2pl without
    surface geopotential); returns None where the target lies above the highest level (the caller reports it)."""
    log_p = np.log(level_pressure)
    log_target = np.log(target_pa)
    if np.any(log_target < log_p[0]):
        return None
    below = np.sum(log_p <= log_target, axis=0)  # levels at or above the target (lower pressure)
    upper = np.clip(below - 1, 0, len(values) - 2)[None]
    lower = upper + 1
    log_upper, log_lower = np.take_along_axis(log_p, upper, 0)[0], np.take_along_axis(log_p, lower, 0)[0]
    weight = np.clip((log_target - log_upper) / (log_lower - log_upper), 0.0, 1.0)
    value_upper, value_lower = np.take_along_axis(values, upper, 0)[0], np.take_along_axis(values, lower, 0)[0]
    return value_upper + weight * (value_lower - value_upper)


class _Streams:
    """Open files of one decoding pass (hourly files: a handful at a time): GRIB byte streams, netCDF datasets."""

    def __init__(self):
        self.open: dict = {}

    def __call__(self, path):
        if path not in self.open:
            self.open[path] = open(path, "rb")
        return self.open[path]

    def netcdf(self, path):
        if path not in self.open:
            self.open[path] = netcdf_source.open_netcdf(path)
        return self.open[path]

    def close(self):
        for stream in self.open.values():
            stream.close()
        self.open = {}


def decode_hour(plan: MonthPlan, time: np.datetime64, streams: _Streams | None = None) -> dict:
    """Decode every output variable of ``plan`` at valid ``time``: {name: (lat, lon) float64}, lat north→south,
    lon ascending in [0, 360)."""
    eccodes = _eccodes()
    own_streams = streams is None
    streams = streams or _Streams()
    shape = (plan.grid_keys["Nj"], plan.grid_keys["Ni"])
    result, columns = {}, {}  # columns: short_name -> decoded model-level column, shared by its pressure levels
    try:
        for name in plan.mapping.surface:
            message = plan.surface[(time, name)]
            result[name] = _decode(eccodes, message, streams, shape)[0]
        for item in plan.mapping.levels:
            if (time, item.output_name) in plan.pressure:
                message = plan.pressure[(time, item.output_name)]
                result[item.output_name] = _decode(eccodes, message, streams, shape)[0]
                continue
            if item.short_name not in columns:
                columns[item.short_name] = _model_level_column(eccodes, plan, time, item.short_name, streams, shape)
            levels, pressure, values, path = columns[item.short_name]
            interpolated = interpolate_to_pressure(values, pressure, item.pressure_pa)
            if interpolated is None:
                raise UserError(f"{item.output_name}: {item.pressure_pa / 100:g} hPa lies above the highest model "
                                f"level ({levels[0]:g}) given in {path} at {time}")
            result[item.output_name] = interpolated
    finally:
        if own_streams:
            streams.close()
    return {name: plan.grid.arrange(values) for name, values in result.items()}


def _model_level_column(eccodes, plan, time, short_name, streams, shape) -> tuple:
    """Decode ``short_name`` on all its hybrid levels at ``time``: (levels, full-level pressure [Pa], values,
    path of the top level's file); pressure and values have shape (level, Nj, Ni), levels top → bottom."""
    level_messages = plan.hybrid[(time, short_name)]
    lnsp_message = plan.lnsp[time]
    lnsp = _decode(eccodes, lnsp_message, streams, shape)[0]
    levels = sorted(level_messages)
    stack, pv = [], None
    for level in levels:
        message = level_messages[level]
        values, message_pv = _decode(eccodes, message, streams, shape)
        if message_pv is None:
            raise UserError(f"GRIB file {message.path}: {short_name} on hybrid level {level:g} carries no pv "
                            "coefficients, so its pressure is unknown")
        if pv is None:
            pv = message_pv
        elif len(message_pv) != len(pv) or not np.array_equal(message_pv, pv):
            raise UserError(f"GRIB file {message.path}: the pv coefficients of {short_name} level {level:g} "
                            f"differ from those of level {levels[0]:g}")
        stack.append(values)
    max_level = len(pv) // 2 - 1
    if len(pv) % 2 or levels[-1] > max_level or levels[0] < 1:
        raise UserError(f"GRIB file {level_messages[levels[0]].path}: hybrid levels {levels[0]:g}..{levels[-1]:g} do "
                        f"not fit its {len(pv)} pv coefficients")
    pressure = full_level_pressure(pv, np.array(levels, dtype=int), np.exp(lnsp))
    return levels, pressure, np.stack(stack), level_messages[levels[0]].path
