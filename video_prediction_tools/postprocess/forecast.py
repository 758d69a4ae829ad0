"""Postprocessing of a trained model: forecasts of a whole data split, persistence, metrics, files and plots.

Steps (``run_postprocess``):

1. restore the model with ``training.checkpoints.load_trained_model`` (a run dir → best checkpoint, else the
   newest; a missing or incomplete checkpoint is a UserError: random weights are never evaluated);
2. read the test (or val) split with ``ERA5Dataset`` and the normalisation saved with the model, forecast every
   window (``num_stochastic_samples`` members for stochastic models), denormalise to physical units;
3. persistence: the analysis at the same hour of the previous day, i.e. lead h of a forecast initialised at
   ``init`` uses the analysis valid ``init + h - 24 h`` (``load_hours`` reads across months and years; forecasts
   whose previous day is not in the preprocessed data get NaN persistence and a warning);
4. per sample ``vfp_date_<YYYYMMDDHH of init>_sample_ind_<k>.nc`` (CF netCDF, every channel): ``<v>_in
   [in_hour, lat, lon]`` (context, in_hour = -(context-1)..0), ``<v>_ref [fcst_hour, lat, lon]``,
   ``<v>_<model>_fcst [fcst_hour, lat, lon]`` (``[sample, fcst_hour, lat, lon]`` when K > 1 members),
   ``<v>_persistence_fcst``; scalar ``init_time``, ``valid_time(fcst_hour)``; units on everything;
5. metrics of the evaluated channel (``--channel``, default 0) for the model and persistence, per init time and
   lead hour (see :mod:`.metrics`; with K members the score is the mean of the members' scores); block bootstrap
   and averages (:mod:`.bootstrap`) → ``evaluation_metrics.nc`` with ``<var>_<product>_<metric>``,
   ``..._bootstrapped`` and ``..._avg``; a summary table ``summary_metrics.csv``/``.md`` (averaged scores and skill
   against persistence per lead hour);
6. plots: ``evaluation_<metric>.png``, 11 example forecasts chosen at the 0, 10, ..., 100 % quantiles of the first
   metric, conditional quantile plots per lead hour.

``quick=True`` (``--lquick_evaluation``) computes and writes the model's metrics only (no persistence, no
per-sample files, no plots). ACC-type metrics need ``climatology_file``; without one they are skipped with a
warning. Runs as one process (forecasting a split is one unit of work).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..utils.errors import UserError
from ..utils.io import atomic_path, remove_stale_temporaries, write_json
from ..utils.log import progress, setup_logging
from . import plots
from .bootstrap import BLOCK_LENGTH, NBOOTS, SEED, number_of_blocks, skill_summary_rows, summarize_metrics, \
    write_table
from .coastlines import find_coastline_file
from .metrics import CLIMATOLOGY_METRICS, DEFAULT_METRICS, METRICS, check_metric_names, load_climatology, \
    make_metrics

log = logging.getLogger("ambs")
EVALUATION_FILE = "evaluation_metrics.nc"
SUMMARY_STEM = "summary_metrics"
PERSISTENCE = "persistence"
COMPRESSION = {"zlib": True, "complevel": 5}
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
    evaluation_metrics: Sequence[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    climatology_file: str | None = None
    lquick_evaluation: bool = False
    seed: int = 7
    channel: int = 0
    block_length: int = BLOCK_LENGTH
    nboots: int = NBOOTS
    data_range: float | None = None
    overwrite: bool = False


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


def _check_options(options: PostprocessOptions) -> list[str]:
    if options.mode not in ("test", "val", "train"):
        raise UserError(f"--mode {options.mode!r}: expected test, val or train")
    if options.batch_size < 1:
        raise UserError(f"--batch_size {options.batch_size}: expected a positive integer")
    if options.num_stochastic_samples < 1:
        raise UserError(f"--num_stochastic_samples {options.num_stochastic_samples}: expected a positive integer")
    return check_metric_names(list(options.evaluation_metrics))


def _climatology(options: PostprocessOptions, metric_names: list[str], variable: str, lat, lon):
    """The climatology on the domain, or None (ACC metrics then dropped from ``metric_names`` with a warning)."""
    wanted = [name for name in metric_names if name in CLIMATOLOGY_METRICS]
    if not wanted:
        return None
    if not options.climatology_file or not Path(options.climatology_file).is_file():
        reason = "no --climatology_file given" if not options.climatology_file else \
            f"climatology file {options.climatology_file} not found"
        log.warning("%s: metric(s) %s skipped", reason, ", ".join(wanted))
        for name in wanted:
            metric_names.remove(name)
        return None
    return load_climatology(options.climatology_file, variable, lat, lon)


def _datetime_label(time: np.datetime64) -> str:
    """``YYYYMMDDHH`` of a time."""
    return str(np.datetime64(time, "h")).replace("-", "").replace("T", "")[:10]


def sample_file_name(init_time: np.datetime64, index: int) -> str:
    return f"vfp_date_{_datetime_label(init_time)}_sample_ind_{index}.nc"


def _coords(lat, lon) -> dict:
    return {"lat": ("lat", np.asarray(lat), {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", np.asarray(lon), {"units": "degrees_east", "standard_name": "longitude"})}


def sample_dataset(variables: Sequence[str], model_name: str, init_time: np.datetime64, inputs: np.ndarray,
                   reference: np.ndarray, forecast: np.ndarray, persistence: np.ndarray | None, lat, lon,
                   attrs: dict) -> xr.Dataset:
    """The per-sample file: ``inputs [ctx, H, W, C]``, ``reference [F, H, W, C]``, ``forecast [K, F, H, W, C]``,
    ``persistence [F, H, W, C]`` (physical units) → CF Dataset (see the module docstring)."""
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
    return xr.Dataset(data, coords=coords, attrs={"Conventions": "CF-1.8", **attrs})


def write_netcdf(dataset: xr.Dataset, path: Path) -> None:
    """Write atomically with zlib level 5 on every data variable."""
    encoding = {name: dict(COMPRESSION) for name in dataset.data_vars}
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


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
        for product, forecast in forecasts.items():
            for metric in self.metrics:
                score = metric.compute(forecast, truth)
                if "sample" in score.dims:
                    score = score.mean("sample", keep_attrs=True)
                self.scores.setdefault(f"{self.variable}_{product}_{metric.name}", []).append(score)
        if self.calibration:
            model = forecasts[self.products[0]]
            for lead in self.lead_hours:
                model_lead, truth_lead = model.sel(fcst_hour=lead), truth.sel(fcst_hour=lead)
                truth_lead = truth_lead.broadcast_like(model_lead)
                self.calibration[lead].add(model_lead.values, truth_lead.values)
                self.likelihood[lead].add(truth_lead.values, model_lead.values)

    def raw_dataset(self, attrs: dict) -> xr.Dataset:
        data = {}
        for name, parts in self.scores.items():
            combined = xr.concat(parts, dim="init_time")
            combined.name = name
            data[name] = combined
        return xr.Dataset(data, attrs=attrs).sortby("init_time")


def run_postprocess(options: PostprocessOptions) -> Path:
    """Forecast, evaluate and plot (see the module docstring); return the results directory."""
    from ..datasets.era5 import ERA5Dataset
    from ..data_preprocess.records import yyyymmddhh_to_datetime
    from ..training.checkpoints import load_trained_model

    metric_names = _check_options(options)
    results_dir = Path(options.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(results_dir)
    setup_logging(results_dir / "postprocess.log")
    model, run = load_trained_model(options.checkpoint)
    if run.dataset != "era5":
        raise UserError(f"postprocessing supports ERA5 runs only; {run.run_dir} was trained on {run.dataset!r}")
    hparams = {**run.hparams, "shuffle_on_val": False, "batch_size": options.batch_size}
    dataset = ERA5Dataset(run.input_dir, run.datasplit, options.mode, hparams=hparams,
                          normalization=run.normalization)
    if not 0 <= options.channel < len(dataset.variables):
        raise UserError(f"--channel {options.channel}: the data has channels 0..{len(dataset.variables) - 1} "
                        f"({', '.join(dataset.variables)})")
    variable = dataset.variables[options.channel]
    climatology = _climatology(options, metric_names, variable, dataset.lat, dataset.lon)
    if not metric_names:
        raise UserError("no evaluation metric left to compute (ACC needs --climatology_file)")
    number_of_blocks(dataset.num_windows, options.block_length)  # fail now, not after hours of forecasting
    if not options.lquick_evaluation:
        find_coastline_file(0.0)  # likewise a bad $AMBS_COASTLINES
    members = options.num_stochastic_samples
    if members > 1 and not model.stochastic:
        log.warning("model %s is deterministic: --num_stochastic_samples %d reduced to 1", run.model_name, members)
        members = 1
    quick = options.lquick_evaluation
    products = [run.model_name] if quick else [run.model_name, PERSISTENCE]
    lead_hours = np.arange(1, model.forecast_frames + 1)
    evaluation = _Evaluation(make_metrics(metric_names, climatology, options.data_range), products, variable,
                             lead_hours, quantiles=not quick)
    persistence_reader = None if quick else PersistenceReader(run.input_dir, model.forecast_frames)
    provenance = {"model": run.model_name, "variable": variable, "checkpoint": str(run.checkpoint_dir),
                  "checkpoint_step": run.step, "mode": options.mode, "input_dir": str(run.input_dir)}
    write_json(results_dir / "options.json", {**asdict(options), "evaluation_metrics": metric_names,
                                              "num_stochastic_samples_used": members, **provenance})
    write_json(results_dir / "options_checkpoints.json", run.options)
    write_json(results_dir / "model_hparams.json", run.hparams)
    write_json(results_dir / "data_split.json", run.datasplit)
    log.info("postprocessing %s (%d windows of the %s split, %d member(s)) into %s", run.checkpoint_dir,
             dataset.num_windows, options.mode, members, results_dir)

    units = variable_attributes(variable)["units"]
    context = model.context_frames
    sample_index = 0
    sample_files: list[tuple[np.datetime64, Path]] = []
    batches = dataset.batches(options.batch_size)
    total = math.ceil(dataset.num_windows / options.batch_size)
    for batch_index, batch in enumerate(progress(batches, desc=f"forecast {options.mode}", total=total,
                                                 unit="batch")):
        images = batch["images"]
        truth = run.normalization.denormalize(images)
        forecast = np.stack([run.normalization.denormalize(
            np.asarray(model.forecast(images, seed=_member_seed(options.seed, batch_index, k))))
            for k in range(members)])  # [K, B, F, H, W, C]
        init_times = yyyymmddhh_to_datetime(batch["t_start"]) + np.timedelta64(context - 1, "h")
        reference = truth[:, context:context + model.forecast_frames]
        coords = {"init_time": init_times.astype("datetime64[ns]"), "fcst_hour": lead_hours,
                  "lat": dataset.lat, "lon": dataset.lon}
        dims = ("init_time", "fcst_hour", "lat", "lon")
        channel = options.channel
        truth_da = xr.DataArray(reference[..., channel], dims=dims, coords=coords, attrs={"units": units})
        forecasts = {run.model_name: xr.DataArray(forecast[..., channel], dims=("sample", *dims), coords=coords,
                                                  attrs={"units": units})}
        persistence = None
        if persistence_reader is not None:
            persistence = persistence_reader.batch(init_times, dataset.frame_shape)
            forecasts[PERSISTENCE] = xr.DataArray(persistence[..., channel], dims=dims, coords=coords,
                                                  attrs={"units": units})
        evaluation.add(truth_da, forecasts)
        if not quick:
            for i, init in enumerate(init_times):
                path = results_dir / sample_file_name(init, sample_index + i)
                sample_files.append((init, path))
                if path.exists() and not options.overwrite:
                    continue
                write_netcdf(sample_dataset(dataset.variables, run.model_name, init, truth[i, :context],
                                            reference[i], forecast[:, i], persistence[i], dataset.lat,
                                            dataset.lon, provenance), path)
        sample_index += len(init_times)
    if persistence_reader is not None and persistence_reader.missing:
        log.warning("persistence unavailable (previous day not preprocessed) for %d forecast(s), first initialised "
                    "%s: their persistence scores are NaN", len(persistence_reader.missing),
                    persistence_reader.missing[0])

    raw = evaluation.raw_dataset({**provenance, "products": " ".join(products)})
    result = summarize_metrics(raw, options.block_length, options.nboots, SEED)
    with atomic_path(results_dir / EVALUATION_FILE) as tmp:
        result.to_netcdf(tmp, engine="netcdf4", encoding={name: dict(COMPRESSION) for name in result.data_vars})
    perfect = {name: METRICS[name].perfect_score for name in metric_names}
    write_table(skill_summary_rows(result, variable, run.model_name, metric_names, perfect),
                results_dir / SUMMARY_STEM)
    if not quick:
        _plot_all(result, evaluation, metric_names, products, variable, run.model_name, sample_files, results_dir)
    log.info("evaluation of %d forecasts written to %s", sample_index, results_dir)
    return results_dir


def example_sample_positions(per_sample_score: np.ndarray, percentiles=range(0, 101, 10)) -> dict[int, int]:
    """Percentile → index of the sample whose lead-averaged score is nearest to that percentile (NaNs ignored)."""
    finite = np.flatnonzero(np.isfinite(per_sample_score))
    if not len(finite):
        return {}
    order = finite[np.argsort(per_sample_score[finite], kind="stable")]
    return {int(p): int(order[int(round(p / 100 * (len(order) - 1)))]) for p in percentiles}


def _plot_all(result, evaluation: _Evaluation, metric_names, products, variable, model_name, sample_files,
              results_dir: Path) -> None:
    labels = {product: product for product in products}
    for metric in metric_names:
        plots.plot_metric_vs_lead(result, variable, metric, labels, results_dir / f"evaluation_{metric}.png")
    first_metric = metric_names[0]
    per_sample = result[f"{variable}_{model_name}_{first_metric}"].mean("fcst_hour").values
    by_time = dict(sample_files)
    init_times = result["init_time"].values
    for percentile, position in example_sample_positions(per_sample).items():
        init = init_times[position]
        path = by_time[np.datetime64(init, "h")]
        with xr.open_dataset(path) as sample:
            stamp = str(np.datetime64(init, "h")).replace("-", "") + "00"  # YYYYMMDDTHH00
            plots.plot_example_forecast(sample.load(), variable, model_name, results_dir /
                                        f"forecast_{variable}_{stamp}_{first_metric}_{percentile}percentile.png")
    long_name, units = variable_attributes(variable)["long_name"], variable_attributes(variable)["units"]
    for lead in evaluation.lead_hours:
        stem = f"cond_quantile_{variable}_{model_name}_fh{lead}"
        plots.plot_conditional_quantiles(
            evaluation.calibration[lead].result(), f"{long_name} from {model_name} [{units}]",
            f"{long_name} from ERA5 [{units}]", results_dir / f"{stem}_calibration_refinement.png",
            title=f"Calibration-refinement, lead {lead} h")
        plots.plot_conditional_quantiles(
            evaluation.likelihood[lead].result(), f"{long_name} from ERA5 [{units}]",
            f"{long_name} from {model_name} [{units}]", results_dir / f"{stem}_likelihood-base_rate.png",
            title=f"Likelihood-base rate, lead {lead} h")
