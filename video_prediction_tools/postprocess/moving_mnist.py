"""Postprocessing of a model trained on Moving MNIST: per-frame scores against the copy-last-frame baseline, and
plots of example sequences.

``run_moving_mnist_postprocess`` (reached through ``main_visualize_postprocess`` and :mod:`.pipeline` when the
checkpoint's run was trained with ``--dataset moving_mnist``) forecasts every sequence of the chosen split
(``--mode``), compares each forecast frame with the true frame and writes into ``--results_dir``:

* ``evaluation_metrics.nc``: ``<product>_<metric> [sequence, frame]`` and the mean over the sequences
  ``<product>_<metric>_avg [frame]``, for the products ``<model>`` and ``copy_last_frame`` (the last context frame
  repeated, the baseline every forecast should beat); ``frame`` = 1..F counts the frames after the context,
  ``sequence`` is the sequence index in ``mnist_test_seq.npy``;
* ``summary_metrics.csv`` / ``.md``: the means per frame and over all frames (row ``frame = all``);
* ``evaluation_<metric>.png`` (score against frame) and ``example_sequence_<index>_<label>.png`` for the
  sequences with the lowest, median and highest model MSE (truth, forecast, baseline, absolute error);
* ``options.json``, ``model_hparams.json``, ``data_split.json``, ``postprocess.log``.

Scores: the Moving MNIST metrics of :mod:`.metrics` (``mse``, ``mse_frame``, ``mae``, ``mae_frame``, ``ssim``,
``psnr``) on intensities scaled to [0, 1] (byte value / 255), one value per forecast frame of 64 x 64 pixels.

``--lquick_evaluation`` scores the model only (no baseline, no plots). Everything is validated before the results
directory is created.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import xarray as xr

from ..utils.errors import UserError
from ..utils.log import progress, setup_logging
from . import plots
from .baselines import COPY_LAST_FRAME, repeat_last_frame
from .bootstrap import write_table
from .metrics import METRICS_BY_EVALUATION, SEQUENCES, make_metrics
from .options import PostprocessOptions, check_options, open_evaluated_split
from .results_io import EVALUATION_FILE, SUMMARY_STEM, made_from, start_results_dir, write_netcdf

if TYPE_CHECKING:  # the reader and the model import TensorFlow, which validating the options never needs
    from ..datasets.moving_mnist import MovingMnist
    from ..models.base import VideoPredictionModel
    from ..training.checkpoints import TrainedRun

log = logging.getLogger("ambs")
#: the dataset of the runs this pipeline evaluates
EVALUATION = SEQUENCES
#: the metrics of Moving MNIST runs (name → registered class), in the order of the default list
MNIST_METRICS = METRICS_BY_EVALUATION[SEQUENCES]
#: units of the intensities scored (byte value / 255)
INTENSITY_UNITS = "1"
#: the baseline product: the last context frame held (the ERA5 baseline of the same name)
BASELINE = COPY_LAST_FRAME
#: byte value of full intensity: forecasts and truth are scored as value / 255
FULL_INTENSITY = 255.0
#: example sequences plotted: label → quantile of the model's sequence-mean MSE
EXAMPLE_QUANTILES = {"best": 0.0, "median": 0.5, "worst": 1.0}


def frame_scores(forecast: np.ndarray, truth: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Scores of every frame: ``forecast``, ``truth`` ``[..., H, W]`` intensities in [0, 1] → ``{name: [...]}``
    (float64), for the metric ``names`` (default: all) of :data:`MNIST_METRICS`."""
    forecast, truth = np.broadcast_arrays(np.asarray(forecast, np.float64), np.asarray(truth, np.float64))
    leading, (height, width) = forecast.shape[:-2], forecast.shape[-2:]
    # the registered metrics score (..., lat, lon) fields; here rows and columns of pixels
    fields = {key: xr.DataArray(values.reshape(-1, height, width), dims=("field", "lat", "lon"),
                                coords={"lat": np.arange(height), "lon": np.arange(width)})
              for key, values in (("forecast", forecast), ("truth", truth))}
    metrics = make_metrics(list(MNIST_METRICS) if names is None else names, evaluation=SEQUENCES)
    return {metric.name: metric.compute(fields["forecast"], fields["truth"]).values.reshape(leading)
            for metric in metrics}


def metric_attributes(name: str) -> dict[str, str]:
    """``long_name`` and ``units`` of the Moving MNIST metric ``name``."""
    cls = MNIST_METRICS[name]
    return {"long_name": cls.long_name, "units": cls().units(INTENSITY_UNITS)}


@dataclass
class MnistJob:
    """A validated job: options, trained model and run, the split's reader, the metrics; nothing written yet."""

    options: PostprocessOptions
    results_dir: Path
    model: VideoPredictionModel
    run: TrainedRun
    dataset: MovingMnist
    metric_names: list[str]
    #: what the outputs are made from (:func:`.results_io.made_from`)
    inputs: dict

    @property
    def products(self) -> list[str]:
        return [self.run.model_name] if self.options.lquick_evaluation else [self.run.model_name, BASELINE]

    @property
    def provenance(self) -> dict:
        run = self.run
        return {"dataset": run.dataset, "model": run.model_name, "checkpoint": str(run.checkpoint_dir),
                "checkpoint_step": run.step, "mode": self.options.mode, "input_dir": str(run.input_dir),
                "weights_sha256": self.inputs["weights_sha256"], "data_fingerprint": self.inputs["data_fingerprint"],
                "intensity_scale": "byte value / 255", "baseline": f"{BASELINE}: the last context frame repeated"}


def check_mnist_metrics(requested) -> list[str]:
    """The metrics to compute: all of :data:`MNIST_METRICS` by default; a name not among them is a UserError."""
    if requested is None:
        return list(MNIST_METRICS)
    unknown = [name for name in requested if name not in MNIST_METRICS]
    if unknown:
        raise UserError(f"--evaluation_metrics {' '.join(unknown)}: Moving MNIST runs are scored with "
                        f"{', '.join(MNIST_METRICS)}")
    return list(dict.fromkeys(requested))


#: ERA5-only options → why they cannot apply to Moving MNIST
_ERA5_ONLY = {
    "block_length": "scores are means over the sequences, not block-bootstrapped",
    "nboots": "scores are means over the sequences, not block-bootstrapped",
    "channel": "the sequences have one channel",
    "overwrite": "no per-sample files are written and the results are always rewritten",
    "sample_compression": "no per-sample files are written",
    "climatology_regridding": "there is no climatology",
}


def _refuse_era5_only_options(options: PostprocessOptions) -> None:
    """An ERA5-only option given with a value other than its default would silently have no effect: refuse it."""
    defaults = {field.name: field.default for field in dataclass_fields(options)}
    for name, reason in _ERA5_ONLY.items():
        if getattr(options, name) != defaults[name]:
            raise UserError(f"--{name} {getattr(options, name)}: has no effect on Moving MNIST runs ({reason}); "
                            f"drop the option")


def open_mnist_job(options: PostprocessOptions) -> MnistJob:
    """Validate the options, restore the model and open the split, writing nothing."""
    from ..training.checkpoints import load_trained_model

    setup_logging()
    check_options(options)
    if options.climatology_file:
        raise UserError(f"--climatology_file {options.climatology_file}: Moving MNIST has no climatology; "
                        f"drop the option")
    if options.num_stochastic_samples != 1:
        raise UserError(f"--num_stochastic_samples {options.num_stochastic_samples}: Moving MNIST runs are scored "
                        f"with one forecast per sequence (give 1)")
    if options.data_range is not None:
        raise UserError(f"--data_range {options.data_range}: Moving MNIST intensities are scored on [0, 1] "
                        f"(data range 1); drop the option")
    _refuse_era5_only_options(options)
    metric_names = check_mnist_metrics(options.evaluation_metrics)
    model, run = load_trained_model(options.checkpoint, options.input_dir)
    dataset = open_evaluated_split(run, options, SEQUENCES, "independent sequences")
    results_dir = Path(options.results_dir)
    return MnistJob(options, results_dir, model, run, dataset, metric_names,
                    made_from(results_dir, run, dataset, {"mode": options.mode}))


def intensities(job: MnistJob, normalized: np.ndarray) -> np.ndarray:
    """Normalized model data ``[..., H, W, 1]`` → intensities in [0, 1] ``[..., H, W]``."""
    return np.asarray(job.run.normalization.denormalize(np.asarray(normalized)))[..., 0] / FULL_INTENSITY


def forecast_sequences(job: MnistJob, dataset):
    """Yield ``(indices [B], truth [B, T, H, W], forecast [B, F, H, W])`` intensities for every batch of
    ``dataset``; the forecast of stochastic models is the member of seed ``options.seed``."""
    forecast_batch = job.model.compiled_forecast()
    for batch in dataset.batches(job.options.batch_size):
        forecast = forecast_batch(batch["images"], seed=job.options.seed)
        yield batch["t_start"], intensities(job, batch["images"]), intensities(job, forecast)


def baseline(truth: np.ndarray, context_frames: int, forecast_frames: int) -> np.ndarray:
    """Copy-last-frame forecasts ``[B, F, H, W]``: the last context frame of ``truth`` ``[B, T, H, W]`` repeated."""
    return repeat_last_frame(truth[:, :context_frames], forecast_frames)


def evaluation_dataset(job: MnistJob, indices: np.ndarray, scores: dict[tuple[str, str], np.ndarray]) -> xr.Dataset:
    """``scores`` (``(product, metric)`` → ``[sequence, frame]``) → the dataset of ``evaluation_metrics.nc``
    (``<product>_<metric>``), sorted by sequence index, with the means over the sequences."""
    order = np.argsort(indices, kind="stable")
    frames = np.arange(1, job.model.forecast_frames + 1)
    data = {}
    for (product, metric), values in scores.items():
        attrs = metric_attributes(metric)
        data[f"{product}_{metric}"] = (("sequence", "frame"), values[order], attrs)
        data[f"{product}_{metric}_avg"] = (("frame",), values[order].mean(axis=0),
                                           {**attrs, "long_name": f"{attrs['long_name']}, mean over sequences"})
    coords = {"sequence": ("sequence", np.asarray(indices)[order], {"long_name": "index in mnist_test_seq.npy"}),
              "frame": ("frame", frames, {"long_name": "forecast frame after the last context frame"})}
    return xr.Dataset(data, coords=coords, attrs={**job.provenance, "products": " ".join(job.products)})


def summary_rows(evaluation: xr.Dataset, products, metric_names) -> list[dict]:
    """One row per forecast frame and a last row ``frame = all`` (mean over every frame and sequence)."""
    rows = []
    for frame in [*evaluation["frame"].values.tolist(), "all"]:
        row = {"frame": frame}
        for product in products:
            for metric in metric_names:
                values = evaluation[f"{product}_{metric}"]
                row[f"{product}_{metric}"] = float(values.mean() if frame == "all" else values.sel(frame=frame).mean())
        rows.append(row)
    return rows


def run_moving_mnist_postprocess(options: PostprocessOptions) -> Path:
    """Forecast, score and plot a Moving MNIST run (see the module docstring); return the results directory."""
    job = open_mnist_job(options)
    results_dir, model = job.results_dir, job.model
    start_results_dir(results_dir, {
        "options.json": {**asdict(options), "evaluation_metrics": job.metric_names, **job.provenance},
        "model_hparams.json": job.run.hparams, "data_split.json": job.run.datasplit}, job.inputs)
    log.info("postprocessing %s (%d sequences of the %s split) into %s", job.run.checkpoint_dir,
             job.dataset.num_windows, options.mode, results_dir)
    context, frames = model.context_frames, model.forecast_frames
    indices, scores = [], {}
    total = -(-job.dataset.num_windows // options.batch_size)
    for batch_indices, truth, forecast in progress(forecast_sequences(job, job.dataset), desc=f"forecast "
                                                   f"{options.mode}", total=total, unit="batch"):
        reference = truth[:, context:context + frames]
        products = {job.run.model_name: forecast}
        if not options.lquick_evaluation:
            products[BASELINE] = baseline(truth, context, frames)
        for product, values in products.items():
            for metric, score in frame_scores(values, reference, job.metric_names).items():
                scores.setdefault((product, metric), []).append(score)
        indices.append(batch_indices)
    evaluation = evaluation_dataset(job, np.concatenate(indices), {key: np.concatenate(parts)
                                                                   for key, parts in scores.items()})
    write_netcdf(evaluation, results_dir / EVALUATION_FILE)
    write_table(summary_rows(evaluation, job.products, job.metric_names), results_dir / SUMMARY_STEM)
    if not options.lquick_evaluation:
        plot_results(job, evaluation)
    mse = {product: float(evaluation[f"{product}_mse"].mean()) for product in job.products
           if f"{product}_mse" in evaluation}
    if mse:
        log.info("MSE per pixel over all frames: %s", ", ".join(f"{k} {v:.5f}" for k, v in mse.items()))
    log.info("evaluation of %d sequences written to %s", evaluation.sizes["sequence"], results_dir)
    return results_dir


def example_indices(evaluation: xr.Dataset, model_name: str) -> dict[str, int]:
    """Label → sequence index of the sequences at the :data:`EXAMPLE_QUANTILES` of the model's mean MSE (the
    first metric when MSE was not computed; higher-is-better metrics reversed)."""
    metric = "mse" if f"{model_name}_mse" in evaluation else \
        next(name for name in MNIST_METRICS if f"{model_name}_{name}" in evaluation)
    per_sequence = evaluation[f"{model_name}_{metric}"].mean("frame").values
    if MNIST_METRICS[metric].higher_is_better:
        per_sequence = -per_sequence
    order = np.argsort(per_sequence, kind="stable")
    sequences = evaluation["sequence"].values
    return {label: int(sequences[order[int(round(q * (len(order) - 1)))]]) for label, q in EXAMPLE_QUANTILES.items()}


def plot_results(job: MnistJob, evaluation: xr.Dataset) -> None:
    """``evaluation_<metric>.png`` per metric and the example sequences (forecast again for the few chosen)."""
    from ..datasets.moving_mnist import MovingMnist

    for metric in job.metric_names:
        figure, axis = plots.plt.subplots(figsize=(6, 4))
        for product in job.products:
            average = evaluation[f"{product}_{metric}_avg"]
            axis.plot(average["frame"].values, average.values, marker="o", label=product)
        axis.set_xlabel("Forecast frame")
        axis.set_ylabel(plots.metric_axis_label(metric, metric_attributes(metric)["units"]))
        axis.set_title(f"Moving MNIST: {metric} per forecast frame")
        axis.legend()
        axis.grid(alpha=0.3)
        plots.save_figure(figure, job.results_dir / f"evaluation_{metric}.png")
    examples = example_indices(evaluation, job.run.model_name)
    labels = {index: label for label, index in reversed(examples.items())}
    split = {job.options.mode: {f"index{i}": [index, index] for i, index in enumerate(sorted(labels))}}
    chosen = MovingMnist(job.run.input_dir, split, job.options.mode,
                         hparams={**job.run.hparams, "shuffle_on_val": False}, normalization=job.run.normalization)
    context, frames = job.model.context_frames, job.model.forecast_frames
    for indices, truth, forecast in forecast_sequences(job, chosen):
        copies = baseline(truth, context, frames)
        for i, index in enumerate(indices):
            figure = example_figure(truth[i], forecast[i], copies[i], context, job.run.model_name,
                                    f"sequence {index} ({labels[int(index)]} MSE of the {job.options.mode} split)")
            plots.save_figure(figure, job.results_dir / f"example_sequence_{index}_{labels[int(index)]}.png")


def example_figure(truth: np.ndarray, forecast: np.ndarray, copies: np.ndarray, context: int, model_name: str,
                   title: str):
    """Rows: the true sequence ``[T, H, W]``; the forecast ``[F, H, W]`` and the baseline under the true
    forecast frames; the forecast's absolute error. Intensities in [0, 1], gray scale."""
    length, frames = truth.shape[0], forecast.shape[0]
    rows = [("truth", truth, range(length)), (model_name, forecast, range(context, context + frames)),
            (BASELINE, copies, range(context, context + frames)),
            ("abs. error", np.abs(forecast - truth[context:context + frames]),
             range(context, context + frames))]
    figure, axes = plots.plt.subplots(len(rows), length, figsize=(length * 0.9, len(rows) * 1.0), squeeze=False)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_frame_on(False)
    for row, (label, images, columns) in enumerate(rows):
        axes[row, 0].set_ylabel(label, fontsize=7)
        for image, column in zip(images, columns):
            axes[row, column].imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
            axes[row, column].set_frame_on(True)
    for column in range(length):
        axes[0, column].set_title(f"t={column + 1}", fontsize=6)
    figure.suptitle(title, fontsize=8)
    return figure
