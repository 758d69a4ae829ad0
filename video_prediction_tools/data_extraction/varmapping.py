"""The variable-mapping JSON of data extraction (``--varslist_path``): which GRIB fields become which variables.

Form (as the original's working form; template ``templates/data_extraction/era5_varmapping_template.json``)::

    {"surface": ["2t", "tcc", "msl"], "multi": {"t": {"pl": 85000}}}

* ``surface``: GRIB shortNames of single-level fields; each is also the netCDF variable name.
* ``multi``: ``{<GRIB shortName>: {<any label>: <pressure in Pa>, ...}}``; each entry becomes ``<name>_<hPa>``
  (here ``t_850``), taken from pressure-level data or interpolated from model-level data.

Either key may be left out (``{"surface": ["2t"]}`` for an archive of single-level fields); at least one variable
must be requested.

Example::

    from video_prediction_tools.data_extraction.varmapping import load_varmapping
    mapping = load_varmapping("templates/data_extraction/era5_varmapping_template.json")
    mapping.output_names    # ('2t', 'tcc', 'msl', 't_850')
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..utils.errors import UserError
from ..utils.io import read_json

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
MAX_PRESSURE_PA = 110000


@dataclass(frozen=True)
class LevelVariable:
    """One field on a pressure level: GRIB ``short_name`` at ``pressure_pa`` [Pa], written as ``output_name``."""

    short_name: str
    pressure_pa: int
    output_name: str


@dataclass(frozen=True)
class VarMapping:
    surface: tuple[str, ...]
    levels: tuple[LevelVariable, ...]

    @property
    def output_names(self) -> tuple[str, ...]:
        """netCDF variable names in output order: surface variables, then level variables."""
        return self.surface + tuple(item.output_name for item in self.levels)


def parse_varmapping(data, source: str = "variable mapping") -> VarMapping:
    """Validate the decoded JSON ``data``; every wrong shape is a UserError naming ``source`` and the culprit."""
    def fail(problem: str):
        raise UserError(f"{source}: {problem} (expected e.g. "
                        '{"surface": ["2t", "tcc", "msl"], "multi": {"t": {"pl": 85000}}})')

    if not isinstance(data, dict):
        fail(f"the top level must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - {"surface", "multi"})
    if unknown:
        fail(f"unknown key(s) {', '.join(map(repr, unknown))}; only 'surface' and 'multi' are allowed")
    surface, multi = data.get("surface", []), data.get("multi", {})
    if not isinstance(surface, list):
        fail(f"'surface' must be a list of GRIB shortNames, not {type(surface).__name__}")
    for name in surface:
        if not isinstance(name, str) or not _NAME.match(name):
            fail(f"'surface' entry {name!r} is not a GRIB shortName")
    if not isinstance(multi, dict):
        fail(f"'multi' must be an object {{shortName: {{label: pressure_Pa}}}}, not {type(multi).__name__}")
    levels = []
    for name, entries in multi.items():
        if not _NAME.match(name):
            fail(f"'multi' key {name!r} is not a GRIB shortName")
        if not isinstance(entries, dict) or not entries:
            fail(f"'multi'.{name} must be a non-empty object {{label: pressure_Pa}}, e.g. {{\"pl\": 85000}}")
        for label, pressure in entries.items():
            if isinstance(pressure, bool) or not isinstance(pressure, (int, float)):
                fail(f"'multi'.{name}.{label} = {pressure!r} is not a number (pressure in Pa)")
            if not 0 < pressure <= MAX_PRESSURE_PA or pressure % 100 != 0:
                fail(f"'multi'.{name}.{label} = {pressure!r}: expected a pressure in Pa that is a whole number "
                     f"of hPa in (0, {MAX_PRESSURE_PA}], e.g. 85000")
            levels.append(LevelVariable(name, int(pressure), f"{name}_{int(pressure) // 100}"))
    mapping = VarMapping(tuple(surface), tuple(levels))
    names = mapping.output_names
    if not names:
        fail("no variable is requested")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        fail(f"output variable(s) {', '.join(duplicates)} requested more than once")
    return mapping


def load_varmapping(path) -> VarMapping:
    """Read and validate a variable-mapping JSON file (UserError for a missing file, bad JSON or a wrong shape)."""
    path = Path(path)
    return parse_varmapping(read_json(path, what="variable mapping (--varslist_path)"), source=str(path))
