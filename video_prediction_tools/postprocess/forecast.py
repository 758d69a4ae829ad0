"""Postprocessing of a trained model: forecasts of a whole data split, persistence, metrics, files and plots.

Steps (``run_postprocess``): validate and open everything (``open_job``), load the model (``load_model``), create
the results directory (``start_results``), forecast the batches (``forecast_batches``), score them and write the samples
(``evaluate_batch``, ``write_samples``), summarise (``summarise``) and plot. In detail:

1. restore the model with ``training.checkpoints`` (a run dir → best checkpoint, else the newest; a missing or
   incomplete checkpoint is a UserError: random weights are never evaluated);
2. read the test (or val) split with ``ERA5Dataset`` and the normalisation saved with the model, forecast every
   window (``num_stochastic_samples`` members for stochastic models), denormalise to physical units;
3. persistence: the analysis at the same hour of the previous day, i.e. lead h of a forecast initialised at
   ``init`` uses the analysis valid ``init + h - 24 h`` (``load_hours`` reads across months and years; forecasts
   whose previous day is not in the preprocessed data get NaN persistence and a warning);
4. per sample ``vfp_date_<YYYYMMDDHH of init>_sample_ind_<k>.nc`` (CF netCDF, every channel): ``<v>_in
   [in_hour, lat, lon]`` (context, in_hour = -(context-1)..0), ``<v>_ref [fcst_hour, lat, lon]``,
   ``<v>_<model>_fcst [fcst_hour, lat, lon]`` (``[sample, fcst_hour, lat, lon]`` when K > 1 members),
   ``<v>_persistence_fcst``; scalar ``init_time``, ``valid_time(fcst_hour)``; units on everything; uncompressed
   unless ``sample_compression`` is ``zlib`` (see ``SAMPLE_COMPRESSION``);
5. metrics of the evaluated channel (``--channel``, default 0) for the model and persistence, per init time and
   lead hour (see :mod:`.metrics`; with K members the score is the mean of the members' scores); block bootstrap
   and averages (:mod:`.bootstrap`) → ``evaluation_metrics.nc`` with ``<var>_<product>_<metric>``,
   ``..._bootstrapped`` and ``..._avg``; a summary table ``summary_metrics.csv``/``.md`` (averaged scores and skill
   against persistence per lead hour);
6. plots: ``evaluation_<metric>.png``, 11 example forecasts chosen at the 0, 10, ..., 100 % quantiles of the first
   metric, conditional quantile plots per lead hour.

``quick=True`` (``--lquick_evaluation``) computes and writes the model's metrics only (no persistence, no
per-sample files, no plots). ACC-type metrics need ``climatology_file`` covering every month and hour of the
forecasts' valid times: by default they are computed only when a climatology file is given; requested explicitly
without one, or with one that lacks some month/hour, they are a UserError before any forecast. Everything is
validated (:func:`open_job`, :func:`load_model`) before the results directory is created, so a refused run writes
nothing. Runs as one process (forecasting a split is one unit of work; a thread reads persistence, scores and writes
the sample files of each batch while the next batch is forecast, and a helper process, spawned first, lays out its
figures while the model is loaded and draws the example maps and conditional quantiles while the bootstrap and the
score figures are made: see :mod:`.helper`). The log's last line gives the time of each
step. An interrupted run is resumed by running it again: the sample files already written are kept, the rest are
written, and the results are byte-identical to an uninterrupted run.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..data_preprocess.records import yyyymmddhh_to_datetime
from ..utils.errors import UserError
from ..utils.io import atomic_path, remove_stale_temporaries, write_json
from ..utils.log import progress, setup_logging
from . import plots
from .bootstrap import BLOCK_LENGTH, NBOOTS, SEED, number_of_blocks, skill_summary_rows, summarize_metrics, \
    write_table
from .coastlines import find_coastline_file
from .helper import HelperProcess, example_task, quantiles_task
from .metrics import ACC, DEFAULT_CONVENTIONS, METRICS, check_conventions, check_metric_names, load_climatology, \
    make_metrics, needs_climatology

log = logging.getLogger("ambs")
EVALUATION_FILE = "evaluation_metrics.nc"
SUMMARY_STEM = "summary_metrics"
PERSISTENCE = "persistence"
COMPRESSION = {"zlib": True, "complevel": 5}
#: ``--sample_compression`` of the per-sample files. ``none`` (default): writing a 56 x 92 x 3 sample costs 0.016 s
#: of CPU for 3.0 MB; ``zlib`` (level 1 with shuffle; level 5, the original's, is 2 % smaller for 1.5x the time):
#: 0.073 s for 1.9 MB. Thousands of files are written by one thread beside the forecasts: on CPU-only machines
#: compressing takes the cores the forecasts need, on a GPU it is slower than the forecasts themselves.
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


@dataclass
class PostprocessOptions:
    """The options of ``main_visualize_postprocess`` (names as the original CLI)."""

    checkpoint: str
    results_dir: str
    mode: str = "test"
    batch_size: int = 8
    num_stochastic_samples: int = 1
    #: None: every registered metric, ACC-type ones only with a climatology file
    evaluation_metrics: Sequence[str] | None = None
    climatology_file: str | None = None
    lquick_evaluation: bool = False
    seed: int = 7
    channel: int = 0
    block_length: int = BLOCK_LENGTH
    nboots: int = NBOOTS
    data_range: float | None = None
    #: metric definitions (``metrics.CONVENTIONS``): ``ambs`` or ``gmd2022`` (the original's published numbers)
    metric_conventions: str = DEFAULT_CONVENTIONS
    overwrite: bool = False
    #: compression of the per-sample files, a key of ``SAMPLE_COMPRESSION``
    sample_compression: str = "none"


class PersistenceReader:
    """Persistence fields ``[F, H, W, C]`` (analysis 24 h before each valid time) via ``load_hours``."""

    def __init__(self, input_dir: str, forecast_frames: int):
        from ..datasets.era5 import load_hours

        self._load_hours = load_hours
        self.input_dir = input_dir
        self.forecast_frames = forecast_frames
        self.missing: list[np.datetime64] = []

    def hours_for(self, init_time: np.datetime64) -> tuple[np.datetime64, np.datetime64]:
        """First and last analysis time used for a forecast initialised at ``init_time`` (leads 1..F)."""
        day = np.timedelta64(24, "h")
        return init_time + np.timedelta64(1, "h") - day, init_time + np.timedelta64(self.forecast_frames, "h") - day

    def batch(self, init_times: np.ndarray, frame_shape: tuple[int, int, int]) -> np.ndarray:
        """Persistence ``[B, F, H, W, C]`` float32 for ``init_times`` (datetime64[h]); NaN where unavailable."""
        result = np.full((len(init_times), self.forecast_frames, *frame_shape), np.nan, dtype=np.float32)
        first, _ = self.hours_for(init_times.min())
        _, last = self.hours_for(init_times.max())
        try:  # one read for the whole batch; fall back to one read per forecast when some hour is missing
            hours = self._load_hours(self.input_dir, first, last)
            for i, init in enumerate(init_times):
                start, end = self.hours_for(init)
                result[i] = hours.sel(time=slice(start, end)).values
            return result
        except UserError:
            pass
        for i, init in enumerate(init_times):
            try:
                result[i] = self._load_hours(self.input_dir, *self.hours_for(init)).values
            except UserError:
                self.missing.append(init)
        return result


def _check_options(options: PostprocessOptions) -> None:
    if options.mode not in ("test", "val", "train"):
        raise UserError(f"--mode {options.mode!r}: expected test, val or train")
    if options.batch_size < 1:
        raise UserError(f"--batch_size {options.batch_size}: expected a positive integer")
    if options.num_stochastic_samples < 1:
        raise UserError(f"--num_stochastic_samples {options.num_stochastic_samples}: expected a positive integer")
    if options.sample_compression not in SAMPLE_COMPRESSION:
        raise UserError(f"--sample_compression {options.sample_compression!r}: expected one of "
                        f"{', '.join(SAMPLE_COMPRESSION)}")


def resolve_metric_names(requested: Sequence[str] | None, climatology_file: str | None) -> list[str]:
    """The metrics to compute: ``requested`` validated, or by default every registered metric, those that need a
    climatology (ACC) only when ``climatology_file`` is given. An explicitly requested ACC-type metric without an
    existing ``climatology_file`` is a UserError (never skipped silently)."""
    if requested is None:
        requested = [name for name in METRICS if climatology_file or not needs_climatology(name)]
    names = check_metric_names(list(requested))
    wanted = [name for name in names if needs_climatology(name)]
    if wanted and not climatology_file:
        raise UserError(f"metric(s) {', '.join(wanted)} need a climatology: give --climatology_file or drop "
                        f"{', '.join(wanted)} from --evaluation_metrics")
    if wanted and not Path(climatology_file).is_file():
        raise UserError(f"--climatology_file {climatology_file} not found (needed by metric(s) {', '.join(wanted)}): "
                        f"give an existing file or drop {', '.join(wanted)} from --evaluation_metrics")
    return names


def forecast_valid_times(dataset, context_frames: int, forecast_frames: int) -> np.ndarray:
    """Every valid time (datetime64[h], sorted, unique) of the forecasts of ``dataset``'s windows: the rows
    ``context_frames .. context_frames + forecast_frames - 1`` of each gap-free window."""
    rows = np.arange(context_frames, context_frames + forecast_frames)
    parts = [times[starts[:, None] + rows].ravel() for times, starts in zip(dataset.valid_times, dataset.window_starts)]
    return yyyymmddhh_to_datetime(np.unique(np.concatenate(parts)))


def check_climatology_covers(climatology: xr.DataArray, valid_times: np.ndarray, path) -> None:
    """UserError naming the months/hours of ``valid_times`` for which ``climatology`` ``(month, hour, lat, lon)``
    has no field or a field with NaN on the domain (ACC would be NaN there)."""
    months = valid_times.astype("datetime64[M]").astype(int) % 12 + 1
    hours = (valid_times - valid_times.astype("datetime64[D]")).astype(int)
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


def _datetime_label(time: np.datetime64) -> str:
    """``YYYYMMDDHH`` of a time."""
    return str(np.datetime64(time, "h")).replace("-", "").replace("T", "")[:10]


def sample_file_name(init_time: np.datetime64, index: int) -> str:
    return f"vfp_date_{_datetime_label(init_time)}_sample_ind_{index}.nc"


def _coords(lat, lon) -> dict:
    return {"lat": ("lat", np.asarray(lat), {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", np.asarray(lon), {"units": "degrees_east", "standard_name": "longitude"})}


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
        if f"{variable}_in" in data:  # a duplicated channel holds the same data
            continue
        var_attrs = variable_attributes(variable)
        data[f"{variable}_in"] = (("in_hour", "lat", "lon"), inputs[..., channel], var_attrs)
        data[f"{variable}_ref"] = (("fcst_hour", "lat", "lon"), reference[..., channel],
                                   {**var_attrs, "long_name": f"{var_attrs['long_name']} (ERA5 analysis)"})
        members = forecast[..., channel]
        dims = ("sample", "fcst_hour", "lat", "lon") if len(members) > 1 else ("fcst_hour", "lat", "lon")
        data[f"{variable}_{model_name}_fcst"] = (dims, members if len(members) > 1 else members[0],
                                                 {**var_attrs, "long_name": f"{var_attrs['long_name']} forecast "
                                                  f"by {model_name}"})
        if persistence is not None:
            data[f"{variable}_persistence_fcst"] = (("fcst_hour", "lat", "lon"), persistence[..., channel],
                                                    {**var_attrs, "long_name": f"{var_attrs['long_name']} "
                                                     "persistence forecast (analysis 24 h earlier)"})
    return data, coords, {"Conventions": "CF-1.8", **attrs}


def sample_dataset(*args, **kwargs) -> xr.Dataset:
    """The per-sample file as an ``xarray.Dataset`` (arguments as :func:`sample_content`)."""
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


def write_sample(content: tuple[dict, dict, dict], path: Path, compression: dict = SAMPLE_COMPRESSION["none"]) -> None:
    """Write :func:`sample_content` atomically with netCDF4 directly: the same file as ``write_netcdf`` of
    :func:`sample_dataset` with ``compression`` on the data variables (a value of ``SAMPLE_COMPRESSION``; variables,
    dimensions, attributes, encodings: NaN ``_FillValue`` on floats, times as int64 ``<unit> since <first time>``,
    the ``coordinates`` attribute), about 2x faster: xarray's encoding machinery costs as much as the write of a
    small file."""
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
        # metadata of the whole file again (about 40 % of the time of a small file)
        contents = []
        for name, (dims, values, var_attrs) in variables.items():
            dims, values = _dims(dims), np.asarray(values)
            var_attrs = dict(var_attrs)
            if values.dtype.kind == "M":
                var_attrs["units"], values = _time_encoding(values)
                var_attrs["calendar"] = "proleptic_gregorian"
            fill = values.dtype.type(np.nan) if values.dtype.kind == "f" else None
            variable = file.createVariable(name, values.dtype, dims, fill_value=fill,
                                           **(compression if name in data else {}))
            linked = [aux for aux in auxiliary if set(_dims(coords[aux][0])) <= set(dims)] if name in data else []
            variable.setncatts({**var_attrs, **({"coordinates": " ".join(linked)} if linked else {})})
            contents.append((variable, values))
        for variable, values in contents:
            if values.ndim:
                # the whole variable at once through netCDF4's own writer: ``variable[...] = values`` first works
                # out start, count and stride from the key in Python, 80 % of the time of writing a small variable
                shape = np.array(values.shape)
                variable._put(values, np.zeros_like(shape), shape, np.ones_like(shape))
            else:
                variable[...] = values


def _member_seed(seed: int, batch_index: int, member: int) -> int:
    return int(np.random.SeedSequence([seed, batch_index, member]).generate_state(1)[0] % 2**31)


class _Evaluation:
    """Accumulates the per-batch scores and the conditional-quantile histograms."""

    def __init__(self, metrics, products: list[str], variable: str, lead_hours: np.ndarray, quantiles: bool):
        self.metrics, self.products, self.variable = metrics, products, variable
        self.scores: dict[str, list[xr.DataArray]] = {}
        self.lead_hours = lead_hours
        self.calibration = {h: plots.ConditionalQuantiles() for h in lead_hours} if quantiles else {}
        self.likelihood = {h: plots.ConditionalQuantiles() for h in lead_hours} if quantiles else {}

    def add(self, truth: xr.DataArray, forecasts: dict[str, xr.DataArray]) -> None:
        # the truth given each forecast's layout (members first) once: not broadcast again by every metric
        truths = {product: truth.expand_dims(sample=forecast.sizes["sample"]) if "sample" in forecast.dims else truth
                  for product, forecast in forecasts.items()}
        for product, forecast in forecasts.items():
            for metric in self.metrics:
                score = metric.compute(forecast, truths[product])
                if "sample" in score.dims:
                    score = score.mean("sample", keep_attrs=True)
                self.scores.setdefault(f"{self.variable}_{product}_{metric.name}", []).append(score)
        if self.calibration:
            # pairs (model member, truth) per lead hour; plain numpy per lead (xarray's selection and alignment
            # per lead cost as much as all the metrics)
            model = forecasts[self.products[0]]
            model_values = model.values
            truth_values = truths[self.products[0]].values
            lead_axis, leads = model.get_axis_num("fcst_hour"), model.indexes["fcst_hour"]
            for lead in self.lead_hours:
                position = leads.get_loc(lead)
                model_lead = np.take(model_values, position, axis=lead_axis)
                truth_lead = np.take(truth_values, position, axis=lead_axis)
                self.calibration[lead].add(model_lead, truth_lead)
                self.likelihood[lead].add(truth_lead, model_lead)

    def raw_dataset(self, attrs: dict) -> xr.Dataset:
        data = {}
        for name, parts in self.scores.items():
            combined = xr.concat(parts, dim="init_time")
            combined.name = name
            data[name] = combined
        return xr.Dataset(data, attrs=attrs).sortby("init_time")


@dataclass
class _Job:
    """A validated postprocessing job: everything checked and opened, nothing written yet; its model is loaded
    last (:func:`load_model`), the rest needs no TensorFlow."""

    options: PostprocessOptions
    results_dir: Path
    metric_names: list[str]
    run: object
    dataset: object
    variable: str
    climatology: xr.DataArray | None
    #: the trained model (:func:`load_model`), None before
    model: object = None
    members: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def quick(self) -> bool:
        return self.options.lquick_evaluation

    @property
    def products(self) -> list[str]:
        return [self.run.model_name] if self.quick else [self.run.model_name, PERSISTENCE]

    @property
    def context_frames(self) -> int:
        return self.run.context_frames

    @property
    def forecast_frames(self) -> int:
        return self.run.forecast_frames

    @property
    def lead_hours(self) -> np.ndarray:
        return np.arange(1, self.forecast_frames + 1)

    @property
    def provenance(self) -> dict:
        run = self.run
        return {"model": run.model_name, "variable": self.variable, "checkpoint": str(run.checkpoint_dir),
                "checkpoint_step": run.step, "mode": self.options.mode, "input_dir": str(run.input_dir)}


def open_job(options: PostprocessOptions) -> _Job:
    """Validate everything but the model's weights (options, checkpoint, data split, channel, metrics,
    climatology, bootstrap blocks, coastlines) without writing anything and without TensorFlow: a refused run
    leaves no results directory, log or file."""
    from ..datasets.era5 import ERA5Dataset
    from ..training.checkpoints import read_trained_run

    setup_logging()  # console only until the results directory exists
    _check_options(options)
    conventions = check_conventions(options.metric_conventions, options.data_range)
    metric_names = resolve_metric_names(options.evaluation_metrics, options.climatology_file)
    run = read_trained_run(options.checkpoint)
    if run.dataset != "era5":
        raise UserError(f"postprocessing supports ERA5 runs only; {run.run_dir} was trained on {run.dataset!r}")
    hparams = {**run.hparams, "shuffle_on_val": False, "batch_size": options.batch_size}
    dataset = ERA5Dataset(run.input_dir, run.datasplit, options.mode, hparams=hparams,
                          normalization=run.normalization)
    if not 0 <= options.channel < len(dataset.variables):
        raise UserError(f"--channel {options.channel}: the data has channels 0..{len(dataset.variables) - 1} "
                        f"({', '.join(dataset.variables)})")
    variable = dataset.variables[options.channel]
    climatology = None
    if any(needs_climatology(name) for name in metric_names):
        climatology = load_climatology(options.climatology_file, variable, dataset.lat, dataset.lon)
        hour_offset = np.timedelta64(conventions.parameters_for(ACC).get("climatology_hour_offset", 0), "h")
        check_climatology_covers(climatology, forecast_valid_times(dataset, run.context_frames,
                                                                   run.forecast_frames) + hour_offset,
                                 options.climatology_file)
    number_of_blocks(dataset.num_windows, options.block_length)  # fail now, not after hours of forecasting
    if not options.lquick_evaluation:
        find_coastline_file(0.0)  # likewise a bad $AMBS_COASTLINES
    return _Job(options, Path(options.results_dir), metric_names, run, dataset, variable, climatology)


def load_model(job: _Job) -> _Job:
    """``job`` with its trained model (weights that do not fit are a UserError) and the number of forecast
    members (one for a deterministic model)."""
    from ..training.checkpoints import build_trained_model

    model = build_trained_model(job.run)
    members, warnings = job.options.num_stochastic_samples, []
    if members > 1 and not model.stochastic:
        warnings.append(f"model {job.run.model_name} is deterministic: --num_stochastic_samples {members} "
                        "reduced to 1")
        members = 1
    return replace(job, model=model, members=members, warnings=warnings)


def start_results(job: _Job) -> None:
    """Create the results directory (clearing temporaries of an interrupted run), its log and the provenance
    files: the options used, the training options, hparams and data split of the run."""
    options, run, results_dir = job.options, job.run, job.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(results_dir)
    setup_logging(results_dir / "postprocess.log")
    for warning in job.warnings:
        log.warning("%s", warning)
    write_json(results_dir / "options.json", {**asdict(options), "evaluation_metrics": job.metric_names,
                                              "num_stochastic_samples_used": job.members, **job.provenance})
    write_json(results_dir / "options_checkpoints.json", run.options)
    write_json(results_dir / "model_hparams.json", run.hparams)
    write_json(results_dir / "data_split.json", run.datasplit)
    log.info("postprocessing %s (%d windows of the %s split, %d member(s)) into %s", run.checkpoint_dir,
             job.dataset.num_windows, options.mode, job.members, results_dir)


@dataclass
class _Batch:
    """One batch of forecasts in physical units: ``init_times [B]`` (datetime64[h]), ``truth [B, T, H, W, C]``
    (context and reference), ``forecast [K, B, F, H, W, C]``, ``persistence [B, F, H, W, C]`` or None."""

    init_times: np.ndarray
    truth: np.ndarray
    forecast: np.ndarray
    persistence: np.ndarray | None


def forecast_batches(job: _Job):
    """Forecast every window of the split in order: yields :class:`_Batch` without persistence (members seeded per
    batch; :class:`BatchConsumer` adds persistence)."""
    options, run, model, dataset = job.options, job.run, job.model, job.dataset
    total = math.ceil(dataset.num_windows / options.batch_size)
    batches = progress(dataset.batches(options.batch_size), desc=f"forecast {options.mode}", total=total,
                       unit="batch")
    forecast_batch = model.compiled_forecast()
    for batch_index, batch in enumerate(batches):
        images = batch["images"]
        forecast = np.stack([run.normalization.denormalize(
            np.asarray(forecast_batch(images, seed=_member_seed(options.seed, batch_index, k))))
            for k in range(job.members)])
        init_times = yyyymmddhh_to_datetime(batch["t_start"]) + np.timedelta64(job.context_frames - 1, "h")
        yield _Batch(init_times, run.normalization.denormalize(images), forecast, None)


def evaluate_batch(job: _Job, evaluation: _Evaluation, batch: _Batch) -> None:
    """Add the scores of the evaluated channel of the model (and persistence) to ``evaluation``."""
    context, channel = job.context_frames, job.options.channel
    units = variable_attributes(job.variable)["units"]
    coords = {"init_time": batch.init_times.astype("datetime64[ns]"), "fcst_hour": job.lead_hours,
              "lat": job.dataset.lat, "lon": job.dataset.lon}
    dims = ("init_time", "fcst_hour", "lat", "lon")
    reference = batch.truth[:, context:context + job.forecast_frames, ..., channel]
    forecasts = {job.run.model_name: xr.DataArray(batch.forecast[..., channel], dims=("sample", *dims),
                                                  coords=coords, attrs={"units": units})}
    if batch.persistence is not None:
        forecasts[PERSISTENCE] = xr.DataArray(batch.persistence[..., channel], dims=dims, coords=coords,
                                              attrs={"units": units})
    evaluation.add(xr.DataArray(reference, dims=dims, coords=coords, attrs={"units": units}), forecasts)


def write_samples(job: _Job, batch: _Batch, first_index: int) -> list[tuple[np.datetime64, Path]]:
    """Write (or keep, unless ``--overwrite``) the per-sample files of a batch; return (init time, path) each."""
    context, forecast_frames = job.context_frames, job.forecast_frames
    compression = SAMPLE_COMPRESSION[job.options.sample_compression]
    written = []
    for i, init in enumerate(batch.init_times):
        path = job.results_dir / sample_file_name(init, first_index + i)
        written.append((init, path))
        if path.exists() and not job.options.overwrite:
            continue
        write_sample(sample_content(job.dataset.variables, job.run.model_name, init, batch.truth[i, :context],
                                    batch.truth[i, context:context + forecast_frames], batch.forecast[:, i],
                                    batch.persistence[i], job.dataset.lat, job.dataset.lon, job.provenance), path,
                     compression)
    return written


def raw_scores(job: _Job, evaluation: _Evaluation) -> xr.Dataset:
    """The per-forecast scores ``<var>_<product>_<metric> [init_time, fcst_hour]`` sorted by initialisation time,
    with the run's provenance as attributes."""
    return evaluation.raw_dataset({**job.provenance, "products": " ".join(job.products),
                                   "metric_conventions": job.options.metric_conventions})


def summarise(job: _Job, raw: xr.Dataset) -> xr.Dataset:
    """Bootstrap and averages of the ``raw`` scores (:func:`raw_scores`) → ``evaluation_metrics.nc``; the summary
    table; return the evaluation dataset."""
    result = summarize_metrics(raw, job.options.block_length, job.options.nboots, SEED)
    write_netcdf(result, job.results_dir / EVALUATION_FILE)
    perfect = {name: METRICS[name].perfect_score for name in job.metric_names}
    rows = skill_summary_rows(result, job.variable, job.run.model_name, job.metric_names, perfect)
    write_table([{**row, "metric_conventions": job.options.metric_conventions} for row in rows],
                job.results_dir / SUMMARY_STEM)
    return result


def run_postprocess(options: PostprocessOptions) -> Path:
    """Forecast, evaluate and plot (see the module docstring); return the results directory. Runs trained on
    Moving MNIST go to :func:`.moving_mnist.run_moving_mnist_postprocess` (per-frame scores, no persistence)."""
    from .moving_mnist import DATASET as MOVING_MNIST, run_moving_mnist_postprocess, trained_dataset

    if trained_dataset(options.checkpoint) == MOVING_MNIST:
        return run_moving_mnist_postprocess(options)
    _check_options(options)
    # the helper process starts first: its imports, and the layout of its figures, overlap TensorFlow's import and
    # the loading of the model
    with nullcontext() if options.lquick_evaluation else HelperProcess() as helper:
        job = open_job(options)
        if helper:
            helper.prepare(layout_sample(job), job.variable, job.run.model_name, _quantile_labels(job))
        job = load_model(job)
        start_results(job)
        evaluation = _Evaluation(make_metrics(job.metric_names, job.climatology, options.data_range,
                                              options.metric_conventions), job.products,
                                 job.variable, job.lead_hours, quantiles=not job.quick)
        timer = _StepTimer()
        number_of_samples = 0
        with BatchConsumer(job, evaluation) as consumer:
            for batch in timer.timed("forecast", forecast_batches(job)):
                consumer.submit(batch, number_of_samples)
                number_of_samples += len(batch.init_times)
            with timer("scores and sample files (rest)"):
                sample_files = consumer.finish()
        raw = raw_scores(job, evaluation)
        if helper:  # the helper draws the example maps and the conditional quantiles while this process
            # bootstraps and draws the score figures, then takes over what the helper has not started
            helper.submit(helper_figures(job, evaluation, raw, sample_files))
        with timer("summary"):
            result = summarise(job, raw)
        if helper:
            with timer("plots"):
                plot_scores(job, result)
                helper.finish()
    log.info("evaluation of %d forecasts written to %s (%s; beside the forecasts: %s)", number_of_samples,
             job.results_dir, timer, consumer.timer)
    return job.results_dir


def helper_figures(job: _Job, evaluation: _Evaluation, raw: xr.Dataset, sample_files) -> list[tuple]:
    """The figure tasks of the helper process: the example maps (:func:`_example_plots`), then the conditional
    quantiles of every lead hour."""
    examples = _example_plots(raw, job.metric_names[0], job.variable, job.run.model_name, sample_files,
                              job.results_dir)
    return ([example_task(*example) for example in examples]
            + [quantiles_task(*plot) for plot in _conditional_quantile_plots(evaluation, job)])


def plot_scores(job: _Job, result: xr.Dataset) -> None:
    """``evaluation_<metric>.png``: each metric of ``result`` (``evaluation_metrics.nc``) against lead time."""
    with plots.MetricVsLeadFigure() as figure:
        for metric in job.metric_names:
            figure.save(result, job.variable, metric, {product: product for product in job.products},
                        job.results_dir / f"evaluation_{metric}.png")


def layout_sample(job: _Job) -> xr.Dataset:
    """A per-sample dataset of the job's grid, variables and lead times with NaN fields: what the example maps
    of the run will look like before any forecast exists."""
    context, forecast_frames = job.context_frames, job.forecast_frames
    frame = job.dataset.frame_shape
    nan = np.full((context + forecast_frames, *frame), np.nan, dtype=np.float32)
    return sample_dataset(job.dataset.variables, job.run.model_name, np.datetime64("2000-01-01T00", "h"),
                          nan[:context], nan[context:], nan[None, context:], nan[context:], job.dataset.lat,
                          job.dataset.lon, {})


class BatchConsumer:
    """Completes each forecast batch in one background thread while the next batch is forecast: reads its
    persistence, adds its scores to ``evaluation`` and writes its per-sample files (:func:`write_samples`; none with
    ``--lquick_evaluation``). The compiled forecasts and netCDF4 run without holding the GIL, so both proceed at
    once. One thread keeps the batches in order (the scores are the same as computed one batch after the other);
    at most ``MAX_PENDING`` batches wait (bounded memory); each file is written atomically; an error in the thread
    is raised by the next ``submit`` or by ``finish``."""

    MAX_PENDING = 2

    def __init__(self, job: _Job, evaluation: _Evaluation):
        self.job, self.evaluation = job, evaluation
        self.persistence = None if job.quick else PersistenceReader(job.run.input_dir, job.forecast_frames)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-consumer")
        self.pending: list[Future] = []
        self.written: list[tuple[np.datetime64, Path]] = []
        self.timer = _StepTimer()

    def _consume(self, batch: _Batch, first_index: int) -> list[tuple[np.datetime64, Path]]:
        if self.persistence is not None:
            with self.timer("persistence"):
                batch = replace(batch, persistence=self.persistence.batch(batch.init_times,
                                                                          self.job.dataset.frame_shape))
        with self.timer("metrics"):
            evaluate_batch(self.job, self.evaluation, batch)
        if self.job.quick:
            return []
        with self.timer("sample files"):
            return write_samples(self.job, batch, first_index)

    def submit(self, batch: _Batch, first_index: int) -> None:
        while len(self.pending) >= self.MAX_PENDING:
            self.written += self.pending.pop(0).result()
        self.pending.append(self.executor.submit(self._consume, batch, first_index))

    def finish(self) -> list[tuple[np.datetime64, Path]]:
        """Wait for every batch; return (init time, path) of each sample file in order."""
        while self.pending:
            self.written += self.pending.pop(0).result()
        missing = [] if self.persistence is None else self.persistence.missing
        if missing:
            log.warning("persistence unavailable (previous day not preprocessed) for %d forecast(s), first "
                        "initialised %s: their persistence scores are NaN", len(missing), missing[0])
        return self.written

    def __enter__(self) -> "BatchConsumer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _StepTimer:
    """Wall seconds per named step of a postprocessing run, for its log line."""

    def __init__(self):
        import time

        self.clock = time.perf_counter
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - start

    def timed(self, name: str, iterable):
        """Iterate ``iterable``, adding the time spent producing each item to ``name``."""
        iterator = iter(iterable)
        while True:
            with self(name):
                item = next(iterator, None)
            if item is None:
                return
            yield item

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


def example_sample_positions(per_sample_score: np.ndarray, percentiles=range(0, 101, 10)) -> dict[int, int]:
    """Percentile → index of the sample whose lead-averaged score is nearest to that percentile (NaNs ignored)."""
    finite = np.flatnonzero(np.isfinite(per_sample_score))
    if not len(finite):
        return {}
    order = finite[np.argsort(per_sample_score[finite], kind="stable")]
    return {int(p): int(order[int(round(p / 100 * (len(order) - 1)))]) for p in percentiles}


def _example_plots(raw: xr.Dataset, metric: str, variable: str, model_name: str, sample_files,
                   results_dir: Path) -> list[tuple[Path, str, str, Path]]:
    """(sample file, variable, model, PNG path) of the 11 example forecasts: the samples at the 0, 10, ..., 100 %
    percentiles of the model's lead-averaged ``metric`` in ``raw`` (sorted by init time)."""
    per_sample = raw[f"{variable}_{model_name}_{metric}"].mean("fcst_hour").values
    by_time = dict(sample_files)
    init_times = raw["init_time"].values
    examples = []
    for percentile, position in example_sample_positions(per_sample).items():
        init = init_times[position]
        stamp = str(np.datetime64(init, "h")).replace("-", "") + "00"  # YYYYMMDDTHH00
        examples.append((by_time[np.datetime64(init, "h")], variable, model_name,
                         results_dir / f"forecast_{variable}_{stamp}_{metric}_{percentile}percentile.png"))
    return examples


def _quantile_labels(job: _Job) -> tuple[str, str]:
    """Axis labels of the conditional-quantile plots: the model's forecast, the truth (name and units)."""
    long_name, units = variable_attributes(job.variable)["long_name"], variable_attributes(job.variable)["units"]
    return f"{long_name} from {job.run.model_name} [{units}]", f"{long_name} from ERA5 [{units}]"


def _conditional_quantile_plots(evaluation: _Evaluation, job: _Job) -> list[tuple[xr.Dataset, str, str, Path, str]]:
    """Calibration-refinement and likelihood-base rate plots per lead hour: (quantiles, condition label, target
    label, PNG path, title) each (see :func:`.helper.quantiles_task`)."""
    variable, model_name = job.variable, job.run.model_name
    model_label, truth_label = _quantile_labels(job)
    figures = []
    for lead in evaluation.lead_hours:
        stem = job.results_dir / f"cond_quantile_{variable}_{model_name}_fh{lead}"
        figures.append((evaluation.calibration[lead].result(), model_label, truth_label,
                        stem.with_name(f"{stem.name}_calibration_refinement.png"),
                        f"Calibration-refinement, lead {lead} h"))
        figures.append((evaluation.likelihood[lead].result(), truth_label, model_label,
                        stem.with_name(f"{stem.name}_likelihood-base_rate.png"), f"Likelihood-base rate, lead {lead} h"))
    return figures
