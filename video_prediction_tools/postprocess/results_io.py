"""The files of a results directory: their names, the JSON files that start it, and the netCDF writers.

* ``evaluation_metrics.nc`` (:data:`EVALUATION_FILE`, :func:`write_netcdf`) and ``summary_metrics.csv``/``.md``
  (:data:`SUMMARY_STEM`, written by ``bootstrap.write_table``): the scores of every pipeline;
* ``vfp_date_<YYYYMMDDHH of init>_sample_ind_<k>.nc`` (:func:`sample_file_name`, :func:`sample_content`,
  :func:`write_sample`): one ERA5 forecast, CF netCDF with every channel: ``<v>_in [in_hour, lat, lon]`` (context,
  in_hour = -(context-1)..0), ``<v>_ref [fcst_hour, lat, lon]``, ``<v>_<model>_fcst [fcst_hour, lat, lon]``
  (``[sample, fcst_hour, lat, lon]`` when K > 1 members), ``<v>_persistence_fcst``; scalar ``init_time``,
  ``valid_time(fcst_hour)``; units on everything; uncompressed unless ``sample_compression`` is ``zlib``
  (:data:`SAMPLE_COMPRESSION`). The fields of the ``copy_last_frame`` baseline are ``<v>_in`` at ``in_hour`` 0
  at every lead, so they are not stored again;
* ``postprocess.log`` and the JSON files of the run's provenance (:func:`start_results_dir`);
* ``results_provenance.json`` (:data:`PROVENANCE_FILE`, :func:`made_from`): what the outputs are made from (the
  checkpoint, the SHA-256 of its weights, the fingerprint of the evaluated data, the options that change the
  forecasts), also in the attributes of every netCDF output. A rerun whose inputs differ removes every output of
  the directory before it writes any; every rerun removes the figures, the scores and the summary first (they are
  all made again), so nothing in the directory was made from something else or is no longer asked for.

Every file is written atomically.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..training.checkpoints import WEIGHTS_FILE
from ..training.run_identity import input_fingerprint
from ..utils import provenance
from ..utils.io import atomic_path, remove_stale_temporaries, write_json
from ..utils.locks import lock_directory
from ..utils.log import setup_logging
from .file_names import EVALUATION_FILE, LOG_FILE, PROVENANCE_FILE, SAMPLE_PATTERN, SUMMARY_STEM

if TYPE_CHECKING:  # xarray only where a dataset is built
    import xarray as xr

    from ..datasets.registry import Reader
    from ..training.checkpoints import TrainedRun

log = logging.getLogger("ambs")
COMPRESSION = {"zlib": True, "complevel": 5}
#: ``--sample_compression`` of the per-sample files. ``none`` (default); ``zlib``: level 1 with shuffle (level 5,
#: the original's, is 2 % smaller for 1.5x the time). Thousands of files are written by one thread beside the
#: forecasts: on CPU-only machines compressing takes the cores the forecasts need.
SAMPLE_COMPRESSION = {"none": {}, "zlib": {"zlib": True, "complevel": 1}}
#: CF attributes of the ERA5 variables AMBS knows (others: units "unknown")
VARIABLE_ATTRIBUTES = {
    "2t": ("2 metre temperature", "K"), "tcc": ("total cloud cover", "1"), "msl": ("mean sea level pressure", "Pa"),
    "sp": ("surface pressure", "Pa"), "10u": ("10 metre U wind component", "m s-1"),
    "10v": ("10 metre V wind component", "m s-1"), "t": ("temperature", "K"), "u": ("U wind component", "m s-1"),
    "v": ("V wind component", "m s-1"), "z": ("geopotential", "m2 s-2"), "q": ("specific humidity", "kg kg-1"),
}


def variable_attributes(name: str) -> dict:
    """``long_name``/``units`` of a channel name such as ``2t`` or ``t_850`` (level in hPa after ``_``)."""
    base, _, level = name.partition("_")
    long_name, units = VARIABLE_ATTRIBUTES.get(name) or VARIABLE_ATTRIBUTES.get(base) or (name, "unknown")
    if level and name not in VARIABLE_ATTRIBUTES and base in VARIABLE_ATTRIBUTES:
        long_name = f"{long_name} at {level} hPa"
    return {"long_name": long_name, "units": units}


def _recorded(results_dir: Path) -> dict[str, Any]:
    """The content of ``results_dir``'s :data:`PROVENANCE_FILE` (empty when absent or unreadable)."""
    try:
        record = json.loads((results_dir / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def made_from(results_dir: Path, run: TrainedRun, dataset: Reader, options: dict[str, Any]) -> dict[str, Any]:
    """What the outputs written into ``results_dir`` are made from: the checkpoint and the SHA-256 of its weights,
    the fingerprint of the evaluated data (files and their descriptions), the ``options`` that change the outputs;
    each file's digest is reused from the directory's record while the file is untouched."""
    cached = _recorded(results_dir).get("file_digests", {})
    weights = provenance.fingerprint(run.checkpoint_dir / WEIGHTS_FILE, cached.get("weights"))
    data_fingerprint, data_files = input_fingerprint(dataset.input_files(), dataset.description_files(),
                                                     cached.get("data", {}))
    return {"checkpoint": str(run.checkpoint_dir), "checkpoint_step": run.step, "weights_sha256": weights["sha256"],
            "data_fingerprint": data_fingerprint, **options,
            "file_digests": {"weights": weights, "data": data_files}}


def _clear_outputs(results_dir: Path, inputs: dict[str, Any]) -> None:
    """Remove what a run is about to make again (scores, summary, figures) and, when the directory's outputs were
    made from other ``inputs`` (:func:`made_from`) or from unknown ones, every sample file too."""
    recorded = {key: value for key, value in _recorded(results_dir).items() if key != "file_digests"}
    current = {key: value for key, value in inputs.items() if key != "file_digests"}
    patterns = [EVALUATION_FILE, f"{SUMMARY_STEM}.*", "*.png"]
    if recorded != current:
        patterns.append(SAMPLE_PATTERN)
        changed = sorted(key for key in current.keys() | recorded.keys() if recorded.get(key) != current.get(key))
        if recorded or any(results_dir.glob(SAMPLE_PATTERN)):
            log.warning("%s: outputs made from other inputs (%s differ) are removed and made again", results_dir,
                        ", ".join(changed))
    for pattern in patterns:
        for path in results_dir.glob(pattern):
            path.unlink()
    write_json(results_dir / PROVENANCE_FILE, inputs)


def start_results_dir(results_dir: Path, json_files: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Create and lock ``results_dir`` (a directory in use by another run is a UserError), clear the temporaries
    of an interrupted run, log into its ``postprocess.log``, remove the outputs the run makes again or that were
    made from other ``inputs`` (:func:`made_from`) and write the ``json_files`` (file name → content)."""
    lock_directory(results_dir, "postprocessing")  # before the clean-up: another run's temporaries are live
    remove_stale_temporaries(results_dir)
    setup_logging(results_dir / LOG_FILE)
    _clear_outputs(results_dir, inputs)
    for name, content in json_files.items():
        write_json(results_dir / name, content)


def _datetime_label(time: np.datetime64) -> str:
    """``YYYYMMDDHH`` of a time."""
    return str(np.datetime64(time, "h")).replace("-", "").replace("T", "")[:10]


def sample_file_name(init_time: np.datetime64, index: int) -> str:
    return f"vfp_date_{_datetime_label(init_time)}_sample_ind_{index}.nc"


def _coords(lat, lon) -> dict:
    return {"lat": ("lat", np.asarray(lat), {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", np.asarray(lon), {"units": "degrees_east", "standard_name": "longitude"})}


def _channel_content(variable: str, channel: int, model_name: str, inputs: np.ndarray, reference: np.ndarray,
                     forecast: np.ndarray, persistence: np.ndarray | None) -> dict:
    """The per-sample file's variables of one channel (see :func:`sample_content`)."""
    var_attrs = variable_attributes(variable)
    data = {f"{variable}_in": (("in_hour", "lat", "lon"), inputs[..., channel], var_attrs),
            f"{variable}_ref": (("fcst_hour", "lat", "lon"), reference[..., channel],
                                {**var_attrs, "long_name": f"{var_attrs['long_name']} (ERA5 analysis)"})}
    members = forecast[..., channel]
    dims = ("sample", "fcst_hour", "lat", "lon") if len(members) > 1 else ("fcst_hour", "lat", "lon")
    data[f"{variable}_{model_name}_fcst"] = (dims, members if len(members) > 1 else members[0],
                                             {**var_attrs, "long_name": f"{var_attrs['long_name']} forecast "
                                              f"by {model_name}"})
    if persistence is not None:
        data[f"{variable}_persistence_fcst"] = (("fcst_hour", "lat", "lon"), persistence[..., channel],
                                                {**var_attrs, "long_name": f"{var_attrs['long_name']} "
                                                 "persistence forecast (analysis 24 h earlier)"})
    return data


def sample_content(variables: Sequence[str], model_name: str, init_time: np.datetime64, inputs: np.ndarray,
                   reference: np.ndarray, forecast: np.ndarray, persistence: np.ndarray | None, lat, lon,
                   attrs: dict) -> tuple[dict, dict, dict]:
    """The per-sample file's content: ``inputs [ctx, H, W, C]``, ``reference [F, H, W, C]``, ``forecast [K, F, H,
    W, C]``, ``persistence [F, H, W, C]`` (physical units) → ``(data, coords, attrs)``, each variable as ``(dims,
    values, attributes)`` in file order (see the module docstring). :func:`sample_dataset` makes it an
    ``xarray.Dataset``, :func:`write_sample` writes it."""
    context, forecast_frames = inputs.shape[0], reference.shape[0]
    fcst_hour = np.arange(1, forecast_frames + 1)
    init = np.datetime64(init_time, "ns")
    coords = {**_coords(lat, lon),
              "in_hour": ("in_hour", np.arange(-(context - 1), 1), {"units": "h", "long_name": "hour relative to "
                                                                     "the initialisation time"}),
              "fcst_hour": ("fcst_hour", fcst_hour, {"units": "h", "long_name": "forecast lead time"}),
              "init_time": ((), init, {"long_name": "initialisation time (last context frame)"}),
              "valid_time": ("fcst_hour", init + fcst_hour.astype("timedelta64[h]"), {"long_name": "valid time"})}
    data = {}
    for channel, variable in enumerate(variables):
        if f"{variable}_in" not in data:  # a duplicated channel holds the same data
            data.update(_channel_content(variable, channel, model_name, inputs, reference, forecast, persistence))
    return data, coords, {"Conventions": "CF-1.8", **attrs}


def sample_dataset(*args, **kwargs) -> xr.Dataset:
    """The per-sample file as an ``xarray.Dataset`` (arguments as :func:`sample_content`)."""
    import xarray as xr

    data, coords, attrs = sample_content(*args, **kwargs)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def write_netcdf(dataset: xr.Dataset, path: Path, compression: dict = COMPRESSION) -> None:
    """Write atomically, compressing every data variable (default: zlib level 5)."""
    encoding = {name: dict(compression) for name in dataset.data_vars}
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def _time_encoding(times: np.ndarray) -> tuple[str, np.ndarray]:
    """CF ``units`` and int64 values of whole-hour datetime64 ``times`` as xarray encodes them: ``days since`` the
    first time when every step between them is a whole number of days, else ``hours since``."""
    hours = np.atleast_1d(times).astype("datetime64[h]")
    offsets = (hours - hours[0]).astype(np.int64)  # h
    unit, step = ("days", 24) if np.all(np.diff(offsets) % 24 == 0) else ("hours", 1)
    reference = str(hours[0]).replace("T", " ") + ":00:00"
    return f"{unit} since {reference}", (offsets // step).reshape(np.shape(times))


def _dims(dims) -> tuple[str, ...]:
    """Dimension names of an ``xarray``-style ``(dims, values, attrs)`` entry (a name, a tuple or ``()``)."""
    return (dims,) if isinstance(dims, str) else tuple(dims)


def _define_variable(file, name: str, entry: tuple, compression: dict, linked: list[str]):
    """Define the netCDF variable of an ``(dims, values, attributes)`` entry with xarray's encodings (NaN
    ``_FillValue`` on floats, times as int64 ``<unit> since <first time>``, the ``coordinates`` attribute of the
    ``linked`` auxiliary coordinates); return ``(variable, values to write)``."""
    dims, values, var_attrs = _dims(entry[0]), np.asarray(entry[1]), dict(entry[2])
    if values.dtype.kind == "M":
        var_attrs["units"], values = _time_encoding(values)
        var_attrs["calendar"] = "proleptic_gregorian"
    fill = values.dtype.type(np.nan) if values.dtype.kind == "f" else None
    variable = file.createVariable(name, values.dtype, dims, fill_value=fill, **compression)
    variable.setncatts({**var_attrs, **({"coordinates": " ".join(linked)} if linked else {})})
    return variable, values


def write_sample(content: tuple[dict, dict, dict], path: Path, compression: dict = SAMPLE_COMPRESSION["none"]) -> None:
    """Write :func:`sample_content` atomically with netCDF4 directly: the same file as ``write_netcdf`` of
    :func:`sample_dataset` with ``compression`` on the data variables (a value of :data:`SAMPLE_COMPRESSION`;
    variables, dimensions, attributes and encodings as xarray writes them) without xarray's encoding machinery,
    which costs as much as the write of a small file."""
    import netCDF4

    data, coords, attrs = content
    auxiliary = [name for name, (dims, _, _) in coords.items() if (name,) != _dims(dims)]  # init_time, valid_time
    with atomic_path(path) as tmp, netCDF4.Dataset(tmp, "w", format="NETCDF4") as file:
        file.setncatts(attrs)
        variables = {**data, **coords}
        for dims, values, _ in variables.values():
            for dim, size in zip(_dims(dims), np.shape(values)):
                if dim not in file.dimensions:
                    file.createDimension(dim, size)
        # every variable defined before any is written: each write after a definition makes netCDF-C write the
        # metadata of the whole file again
        contents = []
        for name, entry in variables.items():
            linked = [aux for aux in auxiliary if set(_dims(coords[aux][0])) <= set(_dims(entry[0]))] \
                if name in data else []
            contents.append(_define_variable(file, name, entry, compression if name in data else {}, linked))
        for variable, values in contents:
            variable[...] = values
