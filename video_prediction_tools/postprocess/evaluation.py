"""The scores of an ERA5 postprocessing run as its forecasts come: :class:`ScoreAccumulator` gathers the scores of
every batch and the conditional-quantile histograms; :class:`BatchConsumer` completes each batch (scores, sample
files) in a background thread while the next batch is forecast.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr

from . import plots
from .metrics import MEMBER_DIM, Metric


class ScoreAccumulator:
    """The per-forecast scores ``<variable>_<product>_<metric> [init_time, fcst_hour]`` of every batch added, and
    (``quantiles``) the conditional-quantile histograms of the first product (the model) against the truth per
    lead hour."""

    def __init__(self, metrics: Sequence[Metric], products: list[str], variable: str, lead_hours: np.ndarray,
                 quantiles: bool):
        self.metrics, self.products, self.variable = metrics, products, variable
        self.scores: dict[str, list[xr.DataArray]] = {}
        self.lead_hours = lead_hours
        self.calibration = {h: plots.ConditionalQuantiles() for h in lead_hours} if quantiles else {}
        self.likelihood = {h: plots.ConditionalQuantiles() for h in lead_hours} if quantiles else {}

    def add(self, truth: xr.DataArray, forecasts: dict[str, xr.DataArray]) -> None:
        """Score ``forecasts`` (product → ``[(sample,) init_time, fcst_hour, lat, lon]``) against ``truth``
        ``[init_time, fcst_hour, lat, lon]``: a deterministic metric scores each member (its score of several
        members is the mean of the members' scores), an ensemble metric (:class:`.metrics.EnsembleMetric`) the
        members together; a product with fewer members than a metric's ``min_members`` (a baseline, for the
        spread) has no score of it. The truth-only terms of each metric are computed once for all products and
        members."""
        truth_terms = [metric.truth_terms(truth) for metric in self.metrics]
        for product, forecast in forecasts.items():
            members = forecast.sizes.get(MEMBER_DIM, 1)
            for metric, terms in zip(self.metrics, truth_terms):
                if members < metric.min_members:
                    continue
                score = metric.compute(forecast, truth, terms)
                if MEMBER_DIM in score.dims:
                    score = score.mean(MEMBER_DIM, keep_attrs=True)
                self.scores.setdefault(f"{self.variable}_{product}_{metric.name}", []).append(score)
            if self.calibration and product == self.products[0]:
                self._add_quantiles(forecast, truth)

    def _add_quantiles(self, model: xr.DataArray, truth: xr.DataArray) -> None:
        """Pairs (model member, truth) per lead hour; plain numpy per lead (xarray's selection and alignment per
        lead cost as much as all the metrics). The members (``model``'s first dim) share the truth's bins."""
        model_values, truth_values = model.values, truth.transpose(*model.dims[-truth.ndim:]).values
        lead_axis, leads = model.get_axis_num("fcst_hour"), model.indexes["fcst_hour"]
        for lead in self.lead_hours:
            position = leads.get_loc(lead)
            model_lead = np.take(model_values, position, axis=lead_axis)
            truth_lead = np.take(truth_values, position, axis=lead_axis - model.ndim + truth.ndim)
            self.calibration[lead].add(model_lead, truth_lead)
            self.likelihood[lead].add(truth_lead, model_lead)

    def raw_dataset(self, attrs: dict) -> xr.Dataset:
        """Every score ``[init_time, fcst_hour]``, sorted by initialisation time, with the attributes ``attrs``."""
        data = {}
        for name, parts in self.scores.items():
            combined = xr.concat(parts, dim="init_time")
            combined.name = name
            data[name] = combined
        return xr.Dataset(data, attrs=attrs).sortby("init_time")


class BatchConsumer:
    """Completes each forecast batch in one background thread while the next batch is forecast: ``complete(batch,
    first_index)`` (for ERA5: persistence, scores, sample files) returns a list of results (the sample files
    written). The compiled forecasts and netCDF4 run without holding the GIL, so both proceed at once. One thread
    keeps the batches in order (the scores are the same as computed one batch after the other); at most
    ``MAX_PENDING`` batches wait (bounded memory); an error in the thread is raised by the next ``submit`` or by
    ``finish``. A context manager: leaving it drops the batches not started."""

    MAX_PENDING = 2

    def __init__(self, complete: Callable[[Any, int], list]):
        self.complete = complete
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-consumer")
        self.pending: list[Future] = []
        self.results: list = []

    def submit(self, batch: Any, first_index: int) -> None:
        """Complete ``batch``, whose first forecast is number ``first_index`` of the run, in the thread."""
        while len(self.pending) >= self.MAX_PENDING:
            self.results += self.pending.pop(0).result()
        self.pending.append(self.executor.submit(self.complete, batch, first_index))

    def finish(self) -> list:
        """Wait for every batch; return the results of all, in order."""
        while self.pending:
            self.results += self.pending.pop(0).result()
        return self.results

    def __enter__(self) -> "BatchConsumer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
