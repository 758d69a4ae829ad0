"""The data name convention (EXPNAME) and ``PreprocessedData/<EXPNAME>/metadata.json``.

EXPNAME = ``era5-Y<first>-<last>M<mm>to<mm>-<nx>x<ny>-<LAT><N|S><LON><E|W>-<var1>_<var2>_..._<varN>``
(the original's data name convention): ``<LAT>`` = |lat| of the SW grid point with 2 decimals and no zero padding,
``<LON>`` = |lon| (lon in (-180, 180]) with 2 decimals zero-padded to 2 integer digits, decimal points removed;
variables in --vars order (duplicates kept). Unlike the original, the corner stored in metadata.json keeps its sign
and the ``lon`` list is in the order of the data (west → east, e.g. 354.9 … 359.7, 0.0 … 3.6).

metadata.json (key order as written)::

    {"expname": "<EXPNAME>", "expdir": "<PreprocessedData dir>",
     "sw_corner_frame": {"lat": 38.4, "lon": -9.9},                  # signed degrees, lon in (-180, 180]
     "coordinates": {"lat": [ny values north → south], "lon": [nx values west → east, as stored in the data]},
     "frame_size": {"nx": 92, "ny": 56},
     "variables": [{"var1": "2t"}, {"var2": "tcc"}, {"var3": "t_850"}]}

Coordinates are rounded to 4 decimals (removes float32 noise such as 38.400001525878906).

Example::

    from video_prediction_tools.data_preprocess.metadata import expname, metadata_dict, write_or_check_metadata

    expname([2007, 2019], [1, 12], domain, ["2t", "tcc", "t_850"])
    # 'era5-Y2007-2019M01to12-92x56-3840N0000E-2t_tcc_t_850'
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..utils.errors import UserError
from ..utils.io import read_json, write_json
from .domain import Domain

METADATA_FILE = "metadata.json"
COORDINATE_DECIMALS = 4


def corner_code(lat: float, lon: float) -> str:
    """``<LAT><N|S><LON><E|W>`` of a SW corner in degrees, e.g. (50.91 → '5091N'), (-10.2, 350.1) → '1020S0990W'."""
    lat = round(float(lat), 2)
    lon = round(float(lon) % 360.0, 2)
    if lon > 180.0:
        lon = round(lon - 360.0, 2)
    lat_text = f"{abs(lat):.2f}".replace(".", "")
    lon_text = f"{abs(lon):05.2f}".replace(".", "")
    return f"{lat_text}{'S' if lat < 0 else 'N'}{lon_text}{'W' if lon < 0 else 'E'}"


def expname(years: Sequence[int], months: Sequence[int], domain: Domain, variables: Sequence[str]) -> str:
    """The data name convention for the given years, months, domain and channel variables (in --vars order)."""
    if not years or not months or not variables:
        raise UserError("years, months and variables must not be empty")
    return (f"era5-Y{min(years)}-{max(years)}M{min(months):02d}to{max(months):02d}-{domain.nx}x{domain.ny}-"
            f"{corner_code(*domain.sw_corner)}-{'_'.join(variables)}")


def metadata_dict(name: str, expdir: str | Path, domain: Domain, variables: Sequence[str]) -> dict[str, Any]:
    """The content of metadata.json (see the module docstring)."""
    def rounded(values):
        return [round(float(v), COORDINATE_DECIMALS) for v in values]

    lat, lon = domain.sw_corner
    return {
        "expname": name,
        "expdir": str(expdir),
        "sw_corner_frame": {"lat": round(lat, COORDINATE_DECIMALS), "lon": round(lon, COORDINATE_DECIMALS)},
        "coordinates": {"lat": rounded(domain.lat), "lon": rounded(domain.lon)},
        "frame_size": {"nx": domain.nx, "ny": domain.ny},
        "variables": [{f"var{k}": variable} for k, variable in enumerate(variables, start=1)],
    }


def write_or_check_metadata(experiment_dir: str | Path, metadata: dict[str, Any], overwrite: bool = False) -> str:
    """Write ``<experiment_dir>/metadata.json``; if one exists it must describe the same data.

    Returns ``"new"``, ``"same"`` or ``"replaced"`` (only with ``overwrite``). ``expdir`` is not compared (the tree
    may have been moved). A mismatch without ``overwrite`` is a :class:`UserError` naming the differing keys.
    """
    path = Path(experiment_dir) / METADATA_FILE
    if not path.exists():
        write_json(path, metadata)
        return "new"
    existing = read_json(path, what="metadata file")
    differing = sorted(key for key in set(existing) | set(metadata)
                       if key != "expdir" and existing.get(key) != metadata.get(key))
    if not differing:
        return "same"
    if not overwrite:
        raise UserError(f"{path} describes other data (differs in {', '.join(differing)}); "
                        f"rerun with --overwrite to replace the experiment or choose another destination")
    write_json(path, metadata)
    return "replaced"


def read_metadata(experiment_dir: str | Path) -> dict[str, Any]:
    """Read and check ``<experiment_dir>/metadata.json``; returns the dict plus ``"variable_list"`` (ordered)."""
    path = Path(experiment_dir) / METADATA_FILE
    metadata = read_json(path, what="metadata file")
    missing = [key for key in ("expname", "coordinates", "frame_size", "variables") if key not in metadata]
    if missing:
        raise UserError(f"{path} lacks the key(s) {', '.join(missing)}")
    try:
        metadata["variable_list"] = [entry[f"var{k}"] for k, entry in enumerate(metadata["variables"], start=1)]
    except (KeyError, TypeError):
        raise UserError(f"{path}: 'variables' must be a list [{{\"var1\": name}}, {{\"var2\": name}}, ...]")
    return metadata
