"""Postprocessing of a model trained on ERA5: forecasts of a whole data split, baselines, metrics, files and plots.

Steps (:func:`run_era5_postprocess`): validate and open everything (:func:`.era5_job.open_job`), load the model
(:func:`.era5_job.load_model`), create the results directory (:func:`start_results`), forecast the batches
(:func:`forecast_batches`), complete each batch beside the next one's forecast (:class:`BatchCompletion`: its
baselines, its scores, its sample files), summarise (:func:`summarise`) and plot. In detail:

1. restore the model with ``training.checkpoints`` (see :mod:`.era5_job` for what is checked first);
2. read the test (or val) split with ``ERA5Dataset`` and the normalisation saved with the model, forecast every
   window (``num_stochastic_samples`` members for stochastic models), denormalise to physical units;
3. the baselines (:mod:`.baselines`): persistence (the analysis at the same hour of the previous day) and the
   last context frame held (``copy_last_frame``);
4. per sample a ``vfp_date_<YYYYMMDDHH of init>_sample_ind_<k>.nc`` file (:mod:`.results_io`);
5. metrics of the evaluated channel (``--channel``, default 0) for the model and every baseline, per init time and
   lead hour (see :mod:`.metrics`; with K members a deterministic metric's score is the mean of the members'
   scores, the ensemble metrics, ``crps``, ``ensemble_mean_mse``/``_rmse``, and with K >= 2 ``spread``,
   ``spread_skill`` and ``rank_histogram``, score the members together; a baseline is a one-member ensemble);
   block bootstrap and averages (:mod:`.bootstrap`) → ``evaluation_metrics.nc`` with ``<var>_<product>_<metric>``,
   ``..._bootstrapped`` and ``..._avg`` (the rank histogram with a last dim ``rank``); a summary table
   ``summary_metrics.csv``/``.md`` (averaged scalar scores and the model's skill against each baseline per lead
   hour: ``skill_<metric>`` against persistence, ``skill_<baseline>_<metric>`` against the others) and, for an
   ensemble, ``summary_rank_histogram.csv``/``.md`` (the rank frequencies per lead hour);
6. plots (:mod:`.figure_selection`): scores against lead time, rank histograms, 11 example forecasts,
   conditional quantiles.

``quick=True`` (``--lquick_evaluation``) computes and writes the model's metrics only (no baselines, no
per-sample files, no plots). Runs as one process (forecasting a split is one unit of work; a thread completes each
batch while the next batch is forecast, and a helper process, spawned first, lays out its figures while the model
is loaded and draws the example maps and conditional quantiles while the bootstrap and the score figures are made:
see :mod:`.helper`). The log's last line gives the time of each step. An interrupted run is resumed by running it
again: the sample files already written are kept, the rest are written, and the results are byte-identical to an
uninterrupted run.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr

from ..data_preprocess.records import yyyymmddhh_to_datetime
from ..utils.log import progress
from .baselines import BASELINES, PERSISTENCE
from .bootstrap import SEED, add_paired_scores, skill_summary_rows, summarize_metrics, write_table
from .era5_job import Era5Job, load_model, open_job, unfinished_attributes, unfinished_warning
from .evaluation import BatchConsumer, ScoreAccumulator
from .figure_selection import helper_figures, layout_sample, plot_scores, quantile_labels
from .helper import HelperProcess
from .metrics import GRIDDED, METRICS, RankHistogram, is_scalar, make_metrics
from .options import PostprocessOptions, check_options
from .results_io import EVALUATION_FILE, SAMPLE_COMPRESSION, SUMMARY_STEM, sample_content, sample_file_name, \
    start_results_dir, variable_attributes, write_netcdf, write_sample

log = logging.getLogger("ambs")
#: the table of the model's averaged rank histogram (ensembles only): ``<stem>.csv`` and ``<stem>.md``
RANK_HISTOGRAM_STEM = "summary_rank_histogram"
#: the dataset of the runs this pipeline evaluates
EVALUATION = GRIDDED


def start_results(job: Era5Job) -> None:
    """Create the results directory, its log and the provenance files: the options used, the training options,
    hparams and data split of the run."""
    options, run = job.options, job.run
    start_results_dir(job.results_dir, {
        "options.json": {**asdict(options), "evaluation_metrics": job.metric_names,
                         "num_stochastic_samples_used": job.members, **job.provenance},
        "options_checkpoints.json": run.options, "model_hparams.json": run.hparams,
        "data_split.json": run.datasplit}, job.inputs)
    for warning in filter(None, [*job.warnings, unfinished_warning(run, job.unfinished)]):
        log.warning("%s", warning)
    log.info("postprocessing %s (%d windows of the %s split, %d member(s)) into %s", run.checkpoint_dir,
             job.dataset.num_windows, options.mode, job.members, job.results_dir)


@dataclass
class Batch:
    """One batch of forecasts in physical units: ``init_times [B]`` (datetime64[h]), ``truth [B, T, H, W, C]``
    (context and reference), ``forecast [K, B, F, H, W, C]``, ``baselines``: baseline name → ``[B, F, H, W, C]``
    (none before :class:`BatchCompletion` adds them)."""

    init_times: np.ndarray
    truth: np.ndarray
    forecast: np.ndarray
    baselines: dict[str, np.ndarray] = field(default_factory=dict)


def _member_seed(seed: int, batch_index: int, member: int) -> int:
    return int(np.random.SeedSequence([seed, batch_index, member]).generate_state(1)[0] % 2**31)


def forecast_batches(job: Era5Job):
    """Forecast every window of the split in order: yields :class:`Batch` without baselines (members seeded per
    batch; :class:`BatchCompletion` adds them)."""
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
        yield Batch(init_times, run.normalization.denormalize(images), forecast)


def evaluate_batch(job: Era5Job, scores: ScoreAccumulator, batch: Batch) -> None:
    """Add the scores of the evaluated channel of the model (and of the batch's baselines) to ``scores``."""
    context, channel = job.context_frames, job.options.channel
    units = variable_attributes(job.variable)["units"]
    coords = {"init_time": batch.init_times.astype("datetime64[ns]"), "fcst_hour": job.lead_hours,
              "lat": job.dataset.lat, "lon": job.dataset.lon}
    dims = ("init_time", "fcst_hour", "lat", "lon")
    reference = batch.truth[:, context:context + job.forecast_frames, ..., channel]
    forecasts = {job.run.model_name: xr.DataArray(batch.forecast[..., channel], dims=("sample", *dims),
                                                  coords=coords, attrs={"units": units})}
    for name, fields in batch.baselines.items():
        forecasts[name] = xr.DataArray(fields[..., channel], dims=dims, coords=coords, attrs={"units": units})
    scores.add(xr.DataArray(reference, dims=dims, coords=coords, attrs={"units": units}), forecasts)


def write_samples(job: Era5Job, batch: Batch, first_index: int) -> list[tuple[np.datetime64, Path]]:
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
                                    batch.baselines[PERSISTENCE][i], job.dataset.lat, job.dataset.lon,
                                    job.provenance), path, compression)
    return written


class BatchCompletion:
    """What is done to each forecast batch beside the forecasts (in :class:`.evaluation.BatchConsumer`'s
    thread): make its baselines' fields, add its scores to ``scores``, write its per-sample files (no baselines and
    no files with ``--lquick_evaluation``); returns (init time, path) of each sample file."""

    def __init__(self, job: Era5Job, scores: ScoreAccumulator):
        self.job, self.scores = job, scores
        self.baselines = [] if job.quick else [baseline(job.run.input_dir, job.forecast_frames)
                                               for baseline in BASELINES.values()]
        self.timer = StepTimer()

    def __call__(self, batch: Batch, first_index: int) -> list[tuple[np.datetime64, Path]]:
        context = batch.truth[:, :self.job.context_frames]
        fields = {}
        for baseline in self.baselines:
            with self.timer(baseline.name):
                fields[baseline.name] = baseline.fields(batch.init_times, context)
        batch = replace(batch, baselines=fields)
        with self.timer("metrics"):
            evaluate_batch(self.job, self.scores, batch)
        if self.job.quick:
            return []
        with self.timer("sample files"):
            return write_samples(self.job, batch, first_index)

    def warn_missing_baselines(self) -> None:
        """Log the forecasts whose baseline fields were unavailable (their scores of that baseline are NaN)."""
        for baseline in self.baselines:
            if baseline.missing:
                log.warning("%s unavailable (%s) for %d forecast(s), first initialised %s: their %s scores are NaN",
                            baseline.name, baseline.unavailable_when, len(baseline.missing), baseline.missing[0],
                            baseline.name)


def raw_scores(job: Era5Job, scores: ScoreAccumulator) -> xr.Dataset:
    """The per-forecast scores ``<var>_<product>_<metric> [init_time, fcst_hour]`` sorted by initialisation time,
    with the run's provenance as attributes."""
    return scores.raw_dataset({**job.provenance, "products": " ".join(job.products),
                               "metric_conventions": job.options.metric_conventions,
                               "ensemble_members": job.members})


def summarise(job: Era5Job, raw: xr.Dataset) -> xr.Dataset:
    """Bootstrap and averages of the ``raw`` scores (:func:`raw_scores`) → ``evaluation_metrics.nc``; the summary
    table of the scalar metrics and, for an ensemble, the rank histogram's table; return the evaluation dataset."""
    scalar = [name for name in job.metric_names if is_scalar(name)]
    paired = add_paired_scores(raw, job.variable, job.run.model_name, scalar)
    result = summarize_metrics(paired, job.options.block_length, job.options.nboots, SEED)
    write_netcdf(result, job.results_dir / EVALUATION_FILE)
    perfect = {name: METRICS[name].perfect_score for name in scalar}
    rows = skill_summary_rows(result, job.variable, job.run.model_name, scalar, perfect)
    unfinished = unfinished_attributes(job.unfinished)
    columns = {"metric_conventions": job.options.metric_conventions,
               **({"training": unfinished["training_unfinished"]} if unfinished else {})}
    write_table([{**row, **columns} for row in rows], job.results_dir / SUMMARY_STEM)
    histogram = result.get(f"{job.variable}_{job.run.model_name}_{RankHistogram.name}_avg")
    if histogram is not None:
        write_table(rank_histogram_rows(histogram), job.results_dir / RANK_HISTOGRAM_STEM)
    return result


def rank_histogram_rows(histogram: xr.DataArray) -> list[dict]:
    """One row per lead hour of the averaged rank histogram ``[fcst_hour, rank]``: the relative frequency of each
    rank of the truth among the members (columns ``rank_0`` .. ``rank_K``, summing to 1; 1 / (K + 1) each when
    calibrated)."""
    frequencies = histogram / histogram.sum("rank")
    return [{"fcst_hour": int(lead), **{f"rank_{int(rank)}": float(frequencies.sel(fcst_hour=lead, rank=rank))
                                        for rank in frequencies["rank"].values}}
            for lead in frequencies["fcst_hour"].values]


def forecast_and_score(job: Era5Job, timer: StepTimer) -> tuple[ScoreAccumulator, list, BatchCompletion]:
    """Forecast every batch and complete it beside the next one's forecast; return the scores, (init time, path)
    of every sample file and the completion (its timer, its missing baseline fields)."""
    options = job.options
    scores = ScoreAccumulator(make_metrics(job.metric_names, job.climatology, options.data_range,
                                           options.metric_conventions), job.products, job.variable, job.lead_hours,
                              quantiles=not job.quick)
    completion = BatchCompletion(job, scores)
    number_of_samples = 0
    with BatchConsumer(completion) as consumer:
        for batch in timer.timed("forecast", forecast_batches(job)):
            consumer.submit(batch, number_of_samples)
            number_of_samples += len(batch.init_times)
        with timer("scores and sample files (rest)"):
            sample_files = consumer.finish()
    completion.warn_missing_baselines()
    return scores, sample_files, completion


def run_era5_postprocess(options: PostprocessOptions) -> Path:
    """Forecast, evaluate and plot an ERA5 run (see the module docstring); return the results directory."""
    check_options(options)
    # the helper process starts first: its imports, and the layout of its figures, overlap TensorFlow's import and
    # the loading of the model
    with nullcontext() if options.lquick_evaluation else HelperProcess() as helper:
        job = open_job(options)
        if helper:
            helper.prepare(layout_sample(job), job.variable, job.run.model_name, quantile_labels(job))
        job = load_model(job)
        start_results(job)
        timer = StepTimer()
        scores, sample_files, completion = forecast_and_score(job, timer)
        raw = raw_scores(job, scores)
        if helper:  # the helper draws the example maps and the conditional quantiles while this process
            # bootstraps and draws the score figures, then takes over what the helper has not started
            helper.submit(helper_figures(job, scores, raw, sample_files))
        with timer("summary"):
            result = summarise(job, raw)
        if helper:
            with timer("plots"):
                plot_scores(job, result)
                helper.finish()
    log.info("evaluation of %d forecasts written to %s (%s; beside the forecasts: %s)", raw.sizes["init_time"],
             job.results_dir, timer, completion.timer)
    return job.results_dir


class StepTimer:
    """Wall seconds per named step of a postprocessing run, for its log line."""

    def __init__(self):
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
