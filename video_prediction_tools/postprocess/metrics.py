"""Verification metrics for gridded forecasts: one small class per metric, all sharing :class:`Metric`.

Every metric scores a forecast field against the truth over the whole lat-lon domain (WeatherBench 2 ``Metric``
style)::

    from video_prediction_tools.postprocess.metrics import make_metrics
    for metric in make_metrics(["mse", "ssim", "texture"]):
        score = metric.compute(forecast, truth)       # DataArrays (..., lat, lon) -> (...)

``forecast`` and ``truth`` are :class:`xarray.DataArray` with dims ``(..., lat, lon)`` in physical units (e.g. K);
any leading dims (``init_time``, ``fcst_hour``, ``sample``) are kept, so one call scores every initialisation and
lead time at once. ``truth`` is broadcast against ``forecast`` (a forecast may carry an extra ``sample`` dim);
``lat``/``lon`` coordinates must be identical (no silent alignment). Work is done in float64, in chunks of fields
so that memory stays bounded.

Definitions (n = number of grid points, F forecast, O truth, sums over the domain):

* ``mse`` = mean (F - O)^2 [unit^2]; ``rmse`` = sqrt(mse) [unit]. No area weights (as the original AMBS).
* ``psnr`` = 10 log10(R^2 / mse) [dB] with the *stated data range* R: by default the range (max - min) of the
  truth field being scored, or a fixed value given as ``data_range`` (e.g. 60 K). The original used R = 1 K
  (``pixel_max = 1``), which is meaningless for Kelvin data. A perfect forecast gives +inf, capped at
  :data:`PSNR_CAP_DB` = 100 dB (as the original) so that averages stay finite.
* ``ssim`` = mean structural similarity, identical to ``skimage.metrics.structural_similarity(O, F,
  gaussian_weights=False, win_size=7, data_range=R, use_sample_covariance=True)``: 7x7 uniform windows,
  K1 = 0.01, K2 = 0.03, sample (co)variances, averaged over the windows that fit inside the domain. R as for
  PSNR (truth range by default). The original let scikit-image pick R = 2 from the float dtype, which makes the
  stabilising constants negligible and SSIM depend on the unit; an explicit range is the documented fix.
* ``acc`` = anomaly correlation coefficient against a month x hour-of-day climatology C taken at the *valid* time
  of each forecast (init time + lead; the original used one hour too early): with A_F = F - C, A_O = O - C,
  ``acc = sum(A_F A_O) / sqrt(sum(A_F^2) sum(A_O^2))``. Uncentred by default, as the original (the domain-mean
  anomaly is not removed); ``ACC(climatology, centred=True)`` removes it first (Pearson correlation of anomalies).
* ``texture`` = gradient ratio r_G = mean|grad F| / mean|grad O|, with the spherical gradient
  |grad T| = sqrt((dT/dlambda / (R_E cos(phi)))^2 + (dT/dphi / R_E)^2), R_E = 6371 km, lambda/phi in radians,
  centred differences inside the domain and one-sided at its edges; domain means unweighted (as the original).
  > 1: forecast rougher than the truth, < 1: smoother. (The original's grid-spacing error is fixed.)
* ``weighted_rmse``, ``weighted_acc``: latitude-weighted versions (WeatherBench): every grid point weighted by
  w = cos(lat) / mean(cos(lat)); ``weighted_rmse = sqrt(mean(w (F - O)^2))`` and ``weighted_acc`` as ``acc`` with
  w inside every sum.

Perfect forecasts score mse 0, rmse 0, psnr 100 dB, ssim 1, acc 1, texture 1.

Each metric scores the runs of one evaluation kind (:attr:`Metric.evaluation`); the above are the gridded (ERA5)
metrics (:data:`METRICS`). Moving MNIST runs are scored on intensities in [0, 1] (byte value / 255), one value per
forecast frame of 64 x 64 pixels, by their own registered metrics (``METRICS_BY_EVALUATION[SEQUENCES]``):

* ``mse`` = mean over the pixels of (F - O)^2; ``mse_frame`` = the sum over the pixels, i.e. 4096 x ``mse`` (the
  per-frame MSE that OpenSTL and the PredRNN papers publish); ``mae`` / ``mae_frame`` likewise with |F - O|;
* ``ssim``: as above with data range 1; ``psnr`` = 10 log10(1 / mse) [dB] (data range 1, capped at 100 dB).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from ..datasets.registry import EVALUATIONS
from ..utils.errors import UserError

if TYPE_CHECKING:  # xarray and scipy are imported where used: the runscript generator reads the metric names
    import xarray as xr

#: mean Earth radius [m] used by the spherical gradient
EARTH_RADIUS_M = 6371.0e3
#: PSNR of a perfect forecast (the original's value); also an upper bound for any forecast
PSNR_CAP_DB = 100.0
#: grid points (of all the fields and members) processed at once: float64 temporaries of 256 kB stay in cache
#: and bound the memory, while small fields come many to a numpy call
POINTS_PER_CHUNK = 2 ** 15
SPATIAL_DIMS = ("lat", "lon")


def _valid_times(field: xr.DataArray) -> xr.DataArray:
    """Valid time of every field: the ``valid_time`` coordinate, or ``init_time`` + ``fcst_hour`` hours."""
    if "valid_time" in field.coords:
        return field.coords["valid_time"]
    if "init_time" in field.coords and "fcst_hour" in field.coords:
        return field.coords["init_time"] + field.coords["fcst_hour"].astype("timedelta64[h]")
    raise ValueError("ACC needs the valid time of each field: a 'valid_time' coordinate or both 'init_time' and "
                     "'fcst_hour' coordinates")


def _coordinate_values(array: xr.DataArray, dim: str) -> np.ndarray:
    """Values of the coordinate ``dim``; 0, 1, ... for a dim without one (as ``array[dim]``)."""
    variable = array.coords.variables.get(dim)
    return np.arange(array.sizes[dim]) if variable is None else variable.values


def _same_coordinate(a: xr.DataArray, b: xr.DataArray, dim: str) -> bool:
    """Equal values of the coordinate ``dim`` in ``a`` and ``b``; at once when they share it."""
    shared = a.coords.variables.get(dim)
    return (shared is not None and shared is b.coords.variables.get(dim)) or np.array_equal(
        _coordinate_values(a, dim), _coordinate_values(b, dim))


def _check_same_grid(a: xr.DataArray, b: xr.DataArray, message: str) -> None:
    """Identical lat/lon coordinates (exact: arithmetic must never silently drop or misplace points)."""
    if not all(_same_coordinate(a, b, dim) for dim in SPATIAL_DIMS):
        raise ValueError(message)


def _same_layout(a: xr.DataArray, b: xr.DataArray) -> bool:
    """Same dims in the same order with the same coordinate values: nothing to broadcast, transpose or align."""
    return a.dims == b.dims and a.shape == b.shape and all(_same_coordinate(a, b, dim) for dim in a.dims)


def _spatial_last(array: xr.DataArray) -> xr.DataArray:
    """``array`` with lat, lon as its last dims."""
    return array if array.dims[-2:] == SPATIAL_DIMS else array.transpose(..., *SPATIAL_DIMS)


def _truth_rows(truth: xr.DataArray, leading: xr.DataArray) -> np.ndarray:
    """For every field of ``leading`` (``(..., lat, lon)``, flattened in its dim order), the index of the field of
    ``truth`` it is scored against (truth broadcast over the dims it lacks, e.g. an ensemble's members, without
    copying the truth's fields)."""
    truth_dims, leading_dims = truth.dims[:-2], leading.dims[:-2]
    rows = np.arange(int(np.prod(truth.shape[:-2], dtype=np.int64))).reshape(truth.shape[:-2])
    if set(truth_dims) <= set(leading_dims) and all(_same_coordinate(truth, leading, dim) for dim in truth_dims):
        # plain numpy: xarray's broadcasting costs more than scoring a small field
        order = [dim for dim in leading_dims if dim in truth_dims]
        rows = rows.transpose([truth_dims.index(dim) for dim in order])
        rows = rows.reshape([truth.sizes[dim] if dim in truth_dims else 1 for dim in leading_dims])
        return np.broadcast_to(rows, leading.shape[:-2]).ravel()
    import xarray as xr

    fields = leading.isel(lat=0, lon=0, drop=True)
    rows = xr.DataArray(rows, dims=truth_dims, coords={name: coord for name, coord in truth.coords.items()
                                                       if not set(coord.dims) & set(SPATIAL_DIMS)})
    rows = rows.broadcast_like(fields).transpose(*fields.dims)
    if rows.dtype.kind != "i":  # the outer join of differing coordinates left fields without a truth
        raise ValueError("forecast and truth have different coordinates besides lat/lon")
    return rows.values.ravel()


def fields_per_chunk(points_per_field: int) -> int:
    """How many fields of ``points_per_field`` points (members included) make one chunk (at least one)."""
    return max(1, POINTS_PER_CHUNK // points_per_field)


def latitude_weights(lat: np.ndarray) -> np.ndarray:
    """cos(lat) normalised to a mean of 1 (WeatherBench), shape (lat,)."""
    weights = np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64)))
    return weights / weights.mean()


#: the evaluations (a dataset class's ``evaluation``, see ``datasets.registry.EVALUATIONS``) whose runs the metrics
#: of this module score (the values of :attr:`Metric.evaluation`): ERA5 is gridded, Moving MNIST sequences
GRIDDED, SEQUENCES = "gridded", "sequences"
#: evaluation → {metric name → class}, each in the order of that evaluation's default metric list; filled by
#: :func:`register`
METRICS_BY_EVALUATION: dict[str, dict[str, type["Metric"]]] = {kind: {} for kind in EVALUATIONS}
#: the gridded (ERA5) metrics: those offered by ERA5 postprocessing, meta-postprocessing and the runscript generator
METRICS = METRICS_BY_EVALUATION[GRIDDED]
#: what a run supplies to the metrics besides the fields: the climatology (``data_extraction.climatology.
#: load_climatology``) and the stated data range of PSNR and SSIM; a metric receives those named by its dataclass
#: fields
RUN_INPUTS = ("climatology", "data_range")


def register(cls: type["Metric"]) -> type["Metric"]:
    """Class decorator: make a metric known to the postprocessing of its :attr:`~Metric.evaluation` (and, for
    gridded data, to meta-postprocessing and the runscript generator)."""
    if cls.evaluation not in METRICS_BY_EVALUATION:
        raise ValueError(f"metric class {cls.__name__}: unknown evaluation {cls.evaluation!r}; known: "
                         f"{', '.join(METRICS_BY_EVALUATION)}")
    registry = METRICS_BY_EVALUATION[cls.evaluation]
    if not cls.name or cls.name in registry:
        raise ValueError(f"metric class {cls.__name__} needs a unique name, got {cls.name!r}")
    unknown = set(cls.needs) - set(RUN_INPUTS)
    if unknown:
        raise ValueError(f"metric {cls.name} needs unknown run input(s) {sorted(unknown)}; known: {RUN_INPUTS}")
    registry[cls.name] = cls
    return cls


@dataclass(eq=False)
class Metric:
    """Base class: a domain-wide score of a forecast field against the truth.

    Subclasses are dataclasses whose fields are the metric's parameters (e.g. ``data_range``, ``climatology``,
    ``weighted``); they set :attr:`name` (the ``<metric>`` part of ``<var>_<product>_<metric>``),
    :attr:`long_name`, :attr:`perfect_score` (``None`` if there is none usable for skill scores), :attr:`needs`
    and implement :meth:`_score`; :attr:`evaluation` says which runs they score. Decorated with :func:`register`,
    they are offered everywhere.
    """

    #: the evaluation (:data:`METRICS_BY_EVALUATION` key) of the runs the metric scores
    evaluation: ClassVar[str] = GRIDDED
    name: ClassVar[str] = ""
    long_name: ClassVar[str] = ""
    perfect_score: ClassVar[float | None] = None
    #: True when larger values are better (for plots and tables)
    higher_is_better: ClassVar[bool] = False
    #: run inputs (of :data:`RUN_INPUTS`) without which the metric cannot be computed
    needs: ClassVar[frozenset[str]] = frozenset()
    #: dims of the forecast besides lat/lon that one score consumes (an ensemble's members: :class:`EnsembleMetric`)
    core_dims: ClassVar[tuple[str, ...]] = ()
    #: fewest forecast members the score is defined for (2 for spread-type ensemble scores)
    min_members: ClassVar[int] = 1

    def units(self, data_units: str) -> str:
        """Units of the score for data in ``data_units`` (dimensionless by default)."""
        return "1"

    def compute(self, forecast: xr.DataArray, truth: xr.DataArray,
                truth_terms: dict[str, np.ndarray] | None = None) -> xr.DataArray:
        """Score every field: ``(..., lat, lon)`` → ``(...)`` with the leading dims and coords of ``forecast``
        (an ensemble metric consumes its :attr:`core_dims` too and may add dims of its own, see
        :meth:`_score_coords`). ``truth_terms``: :meth:`truth_terms` of this same ``truth``, given when several
        forecasts are scored against one truth (computed here otherwise)."""
        for name, array in (("forecast", forecast), ("truth", truth)):
            missing = [dim for dim in SPATIAL_DIMS if dim not in array.dims]
            if missing:
                raise ValueError(f"{name} lacks the dims {missing}; dims are {array.dims}")
        _check_same_grid(forecast, truth, "forecast and truth have different lat/lon coordinates")
        core_dims = (*self.core_dims, *SPATIAL_DIMS)
        if forecast.dims[-len(core_dims):] != core_dims:
            forecast = forecast.transpose(..., *core_dims)
        leading = forecast.isel({dim: 0 for dim in self.core_dims}, drop=True) if self.core_dims else forecast
        truth = _spatial_last(truth)
        leading_shape = leading.shape[:-2]
        n_fields = int(np.prod(leading_shape, dtype=np.int64))
        forecast_values = forecast.values.reshape(n_fields, *forecast.shape[len(leading_shape):])
        truth_values = truth.values.reshape(-1, *truth.shape[-2:])
        context = {**self._context(leading), "truth_rows": _truth_rows(truth, leading),
                   "truth_terms": self.truth_terms(truth) if truth_terms is None else truth_terms}
        extra = self._score_coords(forecast)
        scores = np.empty((n_fields, *(len(values) for values in extra.values())), dtype=np.float64)
        step = fields_per_chunk(forecast_values[0].size)
        for start in range(0, n_fields, step):
            chunk = slice(start, min(start + step, n_fields))
            rows = context["truth_rows"][chunk]
            scores[chunk] = self._score(forecast_values[chunk], truth_values[rows], context, chunk)
        coords = {name: coord for name, coord in leading.coords.items() if not set(coord.dims) & set(SPATIAL_DIMS)}
        import xarray as xr

        return xr.DataArray(scores.reshape(*leading_shape, *scores.shape[1:]), dims=(*leading.dims[:-2], *extra),
                            coords={**coords, **extra}, name=self.name, attrs=self._attrs(forecast, truth))

    def truth_terms(self, truth: xr.DataArray) -> dict[str, np.ndarray]:
        """The parts of the score that depend on the truth alone, per truth field (in the order of the truth's dims
        with lat/lon last), computed once and shared by every forecast scored against ``truth`` (the members of an
        ensemble, the baselines): name → ``[n_truth_fields, ...]``; none by default (see :meth:`_truth_terms`)."""
        truth = _spatial_last(truth)
        values = truth.values.reshape(-1, *truth.shape[-2:])
        step = fields_per_chunk(values[0].size)
        parts = [self._truth_terms(values[start:start + step], truth) for start in range(0, len(values), step)]
        return {name: np.concatenate([part[name] for part in parts]) for name in (parts[0] if parts else {})}

    def _truth_terms(self, truth: np.ndarray, coords: xr.DataArray) -> dict[str, np.ndarray]:
        """Truth-only terms of the fields ``truth`` ``[n, lat, lon]`` (``coords``: the whole truth, for its
        coordinates) → name → ``[n, ...]``; :meth:`_score` reads them with :meth:`_chunk_terms`."""
        return {}

    @staticmethod
    def _chunk_terms(context: dict, chunk: slice) -> dict[str, np.ndarray]:
        """The truth terms of the truth fields of the forecast fields ``chunk``."""
        rows = context["truth_rows"][chunk]
        return {name: values[rows] for name, values in context["truth_terms"].items()}

    def _attrs(self, forecast: xr.DataArray, truth: xr.DataArray) -> dict:
        """Attributes of the scores: long name and units (of the truth's ``units`` attribute)."""
        return {"long_name": self.long_name, "units": self.units(truth.attrs.get("units", ""))}

    def _score_coords(self, forecast: xr.DataArray) -> dict[str, np.ndarray]:
        """Dims (name → coordinate values) each score adds after the leading dims: none (one number per field)."""
        return {}

    def _context(self, forecast: xr.DataArray) -> dict:
        """Per-call data the score needs besides the fields (coordinates, climatology); fields are flattened
        in the order of ``forecast.dims[:-2]``."""
        return {}

    def _score(self, forecast: np.ndarray, truth: np.ndarray, context: dict, chunk: slice) -> np.ndarray:
        """Scores of the fields ``forecast``/``truth`` ``[n, lat, lon]`` (input dtype) → float64 ``[n]``."""
        raise NotImplementedError


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b in float64. The subtraction is done in the input precision: for float32 fields of similar magnitude
    (Kelvin, anomalies against a climatology) it is exact (Sterbenz), and it halves the memory traffic."""
    return np.subtract(a, b).astype(np.float64, copy=False)


def _sum_of_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over (lat, lon) of a * b for ``[n, lat, lon]`` arrays → ``[n]``."""
    return np.einsum("nij,nij->n", a, b)


def _squared_unit(data_units: str) -> str:
    """``K`` → ``K^2``; ``m s-1`` → ``(m s-1)^2``."""
    if not data_units:
        return ""
    return f"({data_units})^2" if set(data_units) & set(" /*") else f"{data_units}^2"


class _InDataUnits:
    """Mixin of the scores in the variable's own units (RMSE-type scores, CRPS, spread)."""

    def units(self, data_units):
        return data_units


@register
class MSE(Metric):
    name = "mse"
    long_name = "mean squared error"
    perfect_score = 0.0

    def units(self, data_units):
        return _squared_unit(data_units)

    def _score(self, forecast, truth, context, chunk):
        difference = _difference(forecast, truth)
        return _sum_of_products(difference, difference) / (truth.shape[1] * truth.shape[2])


@register
class RMSE(_InDataUnits, MSE):
    name = "rmse"
    long_name = "root mean squared error"

    def _score(self, forecast, truth, context, chunk):
        return np.sqrt(super()._score(forecast, truth, context, chunk))


def _data_range(truth: np.ndarray, data_range: float | None) -> np.ndarray:
    """The stated data range per field: ``data_range`` if given, else max - min of the truth field."""
    if data_range is not None:
        return np.full(truth.shape[0], float(data_range))
    return truth.max(axis=(1, 2)) - truth.min(axis=(1, 2))


@register
@dataclass(eq=False)
class PSNR(Metric):
    """Peak signal-to-noise ratio 10 log10(R^2 / MSE) [dB], R = ``data_range`` or the truth's range per field."""

    name: ClassVar[str] = "psnr"
    long_name: ClassVar[str] = "peak signal-to-noise ratio"
    higher_is_better: ClassVar[bool] = True
    #: stated data range R in the data's units; None: max - min of each truth field
    data_range: float | None = None

    def units(self, data_units):
        return "dB"

    def _score(self, forecast, truth, context, chunk):
        difference = _difference(forecast, truth)
        mse = _sum_of_products(difference, difference) / (truth.shape[1] * truth.shape[2])
        peak = _data_range(truth.astype(np.float64), self.data_range)
        with np.errstate(divide="ignore", invalid="ignore"):
            psnr = 10.0 * np.log10(peak ** 2 / mse)
        return np.minimum(psnr, PSNR_CAP_DB)


def _window_means(fields: np.ndarray, window: int) -> np.ndarray:
    """Means over every ``window`` x ``window`` box lying inside the domain: ``[n, ny, nx]`` →
    ``[n, ny - window + 1, nx - window + 1]`` (separable running means, as scikit-image's uniform filter)."""
    from scipy.ndimage import uniform_filter1d

    half = window // 2
    means = uniform_filter1d(fields, window, axis=1, mode="constant")[:, half:fields.shape[1] - half]
    return uniform_filter1d(means, window, axis=2, mode="constant")[:, :, half:fields.shape[2] - half]


@register
@dataclass(eq=False)
class SSIM(Metric):
    """Mean structural similarity, equal to scikit-image's with ``gaussian_weights=False, win_size=7`` and an
    explicit ``data_range`` (default: the truth's max - min per field)."""

    name: ClassVar[str] = "ssim"
    long_name: ClassVar[str] = "structural similarity index"
    perfect_score: ClassVar[float] = 1.0
    higher_is_better: ClassVar[bool] = True
    K1: ClassVar[float] = 0.01
    K2: ClassVar[float] = 0.03
    #: stated data range R in the data's units; None: max - min of each truth field
    data_range: float | None = None
    #: side of the square uniform window [grid points], odd
    window: int = 7

    def __post_init__(self):
        if self.window % 2 != 1 or self.window < 3:
            raise ValueError(f"SSIM window must be an odd number >= 3, got {self.window}")

    def _truth_terms(self, truth, coords):
        if min(truth.shape[1:]) < self.window:
            raise ValueError(f"SSIM needs fields of at least {self.window}x{self.window} points, got "
                             f"{truth.shape[1]}x{truth.shape[2]}")
        truth = truth.astype(np.float64)
        # Shift both fields by the truth's mean: (co)variances are shift-invariant and become well conditioned.
        offset = truth.mean(axis=(1, 2), keepdims=True)
        x = truth - offset
        mean_x = _window_means(x, self.window)
        var_x = self._sample_factor * (_window_means(x * x, self.window) - mean_x ** 2)
        data_range = _data_range(truth, self.data_range)[:, None, None]
        c1, c2 = (self.K1 * data_range) ** 2, (self.K2 * data_range) ** 2
        return {"offset": offset, "x": x, "shifted_mean_x": mean_x, "twice_mean_x": 2 * (mean_x + offset),
                "mean_x_squared": (mean_x + offset) ** 2, "var_x": var_x, "c1": c1, "c2": c2}

    @property
    def _sample_factor(self) -> float:
        """n / (n - 1) of the window's n points: sample (co)variances."""
        return self.window ** 2 / (self.window ** 2 - 1)

    def _score(self, forecast, truth, context, chunk):
        # in place where a temporary can be reused (fewer allocations of whole chunks), same operations and order
        terms = self._chunk_terms(context, chunk)
        y = forecast.astype(np.float64)
        y -= terms["offset"]
        mean_y = _window_means(y, self.window)
        var_y = _window_means(y * y, self.window)
        var_y -= mean_y ** 2
        var_y *= self._sample_factor
        y *= terms["x"]
        cov_xy = _window_means(y, self.window)
        cov_xy -= terms["shifted_mean_x"] * mean_y
        cov_xy *= self._sample_factor
        mean_y += terms["offset"]
        numerator = terms["twice_mean_x"] * mean_y
        numerator += terms["c1"]
        cov_xy *= 2
        cov_xy += terms["c2"]
        numerator *= cov_xy
        denominator = mean_y ** 2
        denominator += terms["mean_x_squared"]
        denominator += terms["c1"]
        var_y += terms["var_x"]
        var_y += terms["c2"]
        denominator *= var_y
        with np.errstate(divide="ignore", invalid="ignore"):
            numerator /= denominator
        return numerator.mean(axis=(1, 2))


@register
@dataclass(eq=False)
class ACC(Metric):
    """Anomaly correlation coefficient against a month x hour climatology at the valid time.

    ``climatology``: DataArray ``(month, hour, lat, lon)`` on the forecast grid, given by the caller (postprocessing
    reads it with ``data_extraction.climatology.load_climatology``).
    ``centred``: remove the (weighted) domain-mean anomaly first; default False = the original's uncentred ACC.
    ``weighted``: cos(lat) weights (WeatherBench).
    ``climatology_hour_offset``: hours added to the valid time before the climatology is looked up; 0 (default)
    is right, -1 reproduces the original (climatology of the hour before the valid time, ``gmd2022`` conventions).
    """

    name: ClassVar[str] = "acc"
    long_name: ClassVar[str] = "anomaly correlation coefficient"
    perfect_score: ClassVar[float] = 1.0
    higher_is_better: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset({"climatology"})
    climatology: xr.DataArray = field(repr=False)
    centred: bool = False
    weighted: bool = False
    climatology_hour_offset: int = 0

    def __post_init__(self):
        if tuple(self.climatology.dims) != ("month", "hour", "lat", "lon"):
            raise ValueError(f"climatology must have dims (month, hour, lat, lon), got {self.climatology.dims}")

    def _context(self, forecast):
        _check_same_grid(forecast, self.climatology,
                         "the climatology is not on the forecast's lat/lon grid (see data_extraction.climatology."
                         "load_climatology)")
        valid = _valid_times(forecast).broadcast_like(forecast.isel(lat=0, lon=0, drop=True))
        valid = valid.transpose(*forecast.dims[:-2]).values.ravel() \
            + np.timedelta64(self.climatology_hour_offset, "h")
        # imported here, as xarray (which the climatology's module needs): see the imports above
        from ..data_extraction.climatology import month_hour_indices

        month_index, hour_index = month_hour_indices(self.climatology, valid)
        weights = latitude_weights(forecast["lat"].values)[:, None] * np.ones(forecast.shape[-1]) \
            if self.weighted else None
        return {"month_index": month_index, "hour_index": hour_index, "weights": weights,
                "values": self.climatology.values}

    def _score(self, forecast, truth, context, chunk):
        climate = context["values"][context["month_index"][chunk], context["hour_index"][chunk]]
        weights = context["weights"]
        anomaly_forecast, anomaly_truth = _difference(forecast, climate), _difference(truth, climate)
        weighted_forecast = anomaly_forecast if weights is None else anomaly_forecast * weights
        if self.centred:
            total = anomaly_truth[0].size if weights is None else weights.sum()
            anomaly_forecast -= weighted_forecast.sum(axis=(1, 2), keepdims=True) / total
            weighted_truth = anomaly_truth if weights is None else anomaly_truth * weights
            anomaly_truth -= weighted_truth.sum(axis=(1, 2), keepdims=True) / total
            weighted_forecast = anomaly_forecast if weights is None else anomaly_forecast * weights
        weighted_truth = anomaly_truth if weights is None else anomaly_truth * weights
        numerator = _sum_of_products(weighted_forecast, anomaly_truth)
        denominator = np.sqrt(_sum_of_products(weighted_forecast, anomaly_forecast)
                              * _sum_of_products(weighted_truth, anomaly_truth))
        with np.errstate(divide="ignore", invalid="ignore"):
            return numerator / denominator


def spherical_gradient_magnitude(fields: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """|grad T| [unit/m] of fields ``[n, lat, lon]`` on a regular lat-lon grid (degrees; lon may wrap 360→0).

    Centred differences inside, one-sided at the edges (numpy.gradient on the coordinates in radians).
    """
    phi = np.deg2rad(np.asarray(lat, dtype=np.float64))
    lam = np.deg2rad(np.unwrap(np.asarray(lon, dtype=np.float64), period=360.0))
    d_dphi = np.gradient(fields, phi, axis=1)
    d_dlambda = np.gradient(fields, lam, axis=2)
    return np.sqrt((d_dlambda / (EARTH_RADIUS_M * np.cos(phi)[:, None])) ** 2 + (d_dphi / EARTH_RADIUS_M) ** 2)


@register
class GradientRatio(Metric):
    """Ratio of the domain-mean spherical gradient magnitudes, forecast over truth ("texture", r_G)."""

    name = "texture"
    long_name = "ratio of the mean spherical gradient magnitudes (forecast / truth)"
    perfect_score = 1.0

    def _context(self, forecast):
        return {"lat": forecast["lat"].values, "lon": forecast["lon"].values}

    def _truth_terms(self, truth, coords):
        gradient = spherical_gradient_magnitude(truth.astype(np.float64), coords["lat"].values, coords["lon"].values)
        return {"mean_gradient": gradient.mean(axis=(1, 2))}

    def _score(self, forecast, truth, context, chunk):
        mean_forecast = spherical_gradient_magnitude(forecast.astype(np.float64), context["lat"],
                                                     context["lon"]).mean(axis=(1, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            return mean_forecast / self._chunk_terms(context, chunk)["mean_gradient"]


@register
class WeightedRMSE(_InDataUnits, Metric):
    """RMSE with cos(lat) area weights (WeatherBench)."""

    name = "weighted_rmse"
    long_name = "latitude-weighted root mean squared error"
    perfect_score = 0.0

    def _context(self, forecast):
        return {"weights": latitude_weights(forecast["lat"].values)[:, None]}

    def _score(self, forecast, truth, context, chunk):
        difference = _difference(forecast, truth)
        return np.sqrt(_sum_of_products(difference * context["weights"], difference) / difference[0].size)


@register
@dataclass(eq=False)
class WeightedACC(ACC):
    name: ClassVar[str] = "weighted_acc"
    long_name: ClassVar[str] = "latitude-weighted anomaly correlation coefficient"
    weighted: bool = True


# -------------------------------------------------------------------------------------------- ensemble metrics
#: the dim of a forecast's members (``[sample, init_time, fcst_hour, lat, lon]``)
MEMBER_DIM = "sample"


def _member_differences(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """x_k - y in float64: members ``[n, K, lat, lon]``, truth ``[n, lat, lon]`` → ``[n, K, lat, lon]``."""
    return _difference(members, truth[:, None])


def _ensemble_mean_mse(differences: np.ndarray) -> np.ndarray:
    """Mean over the points of (mean_k x_k - y)^2 of member differences ``[n, K, lat, lon]`` → ``[n]``."""
    mean_error = differences.mean(axis=1)
    return _sum_of_products(mean_error, mean_error) / mean_error[0].size


def _mean_ensemble_variance(differences: np.ndarray) -> np.ndarray:
    """Mean over the points of the unbiased ensemble variance sum_k (x_k - mean)^2 / (K - 1) → ``[n]``."""
    return differences.var(axis=1, ddof=1).mean(axis=(1, 2))


class EnsembleMetric(Metric):
    """Base class of the scores of an ensemble of K members x_1..x_K against the truth y at every grid point.

    ``compute(forecast, truth)`` takes the members along the dim :data:`MEMBER_DIM` (``sample``) of ``forecast``
    (a forecast without it is a one-member ensemble: a deterministic model or a baseline) and consumes it: the
    scores have the dims of ``truth`` without lat/lon, and the attribute ``ensemble_members`` = K. Subclasses
    implement :meth:`_ensemble_score` on the member differences x_k - y (float64 ``[n, K, lat, lon]``); domain
    means are unweighted, as ``mse``/``rmse``.
    """

    core_dims = (MEMBER_DIM,)
    #: what the score of a one-member ensemble (a deterministic forecast) is, in words; "" when it has none
    one_member_name: ClassVar[str] = ""

    def compute(self, forecast, truth, truth_terms=None):
        if MEMBER_DIM not in forecast.dims:
            forecast = forecast.expand_dims({MEMBER_DIM: 1})
        if forecast.sizes[MEMBER_DIM] < self.min_members:
            raise ValueError(f"metric {self.name} needs an ensemble of at least {self.min_members} members, got "
                             f"{forecast.sizes[MEMBER_DIM]}")
        return super().compute(forecast, truth, truth_terms)

    def _attrs(self, forecast, truth):
        return {**super()._attrs(forecast, truth), "ensemble_members": forecast.sizes[MEMBER_DIM]}

    def _score(self, forecast, truth, context, chunk):
        return self._ensemble_score(_member_differences(forecast, truth))

    def _ensemble_score(self, differences: np.ndarray) -> np.ndarray:
        """Scores ``[n, ...]`` of the member differences x_k - y ``[n, K, lat, lon]`` (float64)."""
        raise NotImplementedError


@register
class CRPS(_InDataUnits, EnsembleMetric):
    """Fair (unbiased in K) continuous ranked probability score, domain mean [data units] (Ferro 2014):

    crps = mean_k |x_k - y| - 1 / (2 K (K - 1)) sum_{j,k} |x_j - x_k|

    whose expectation does not depend on K (the plain ensemble CRPS, with 1 / (2 K^2), favours small ensembles).
    The double sum is computed from the sorted members: sum_{j,k} |x_j - x_k| = 2 sum_k (2k - K - 1) x_(k).
    A one-member ensemble (a deterministic model, a baseline) has no spread term: its CRPS is its mean absolute
    error, so CRPS of a stochastic model and MAE of a deterministic one compare fairly, and CRPS has skill scores
    against the baselines.
    """

    name = "crps"
    long_name = "fair continuous ranked probability score of the ensemble"
    perfect_score = 0.0
    one_member_name = "mean absolute error"

    def _ensemble_score(self, differences):
        members = differences.shape[1]
        crps = np.abs(differences).mean(axis=(1, 2, 3))
        if members > 1:
            weights = 2.0 * np.arange(1, members + 1) - members - 1
            spread_sum = np.einsum("nkij,k->n", np.sort(differences, axis=1), weights) / differences[0, 0].size
            crps -= spread_sum / (members * (members - 1))
        return crps


@register
class EnsembleMeanMSE(EnsembleMetric):
    """MSE of the ensemble mean: mean over the points of (mean_k x_k - y)^2 [unit^2] (the MSE of a one-member
    ensemble)."""

    name = "ensemble_mean_mse"
    long_name = "mean squared error of the ensemble mean"
    perfect_score = 0.0
    one_member_name = "mean squared error"

    def units(self, data_units):
        return _squared_unit(data_units)

    def _ensemble_score(self, differences):
        return _ensemble_mean_mse(differences)


@register
class EnsembleMeanRMSE(_InDataUnits, EnsembleMetric):
    """RMSE of the ensemble mean [unit]: sqrt(``ensemble_mean_mse``)."""

    name = "ensemble_mean_rmse"
    long_name = "root mean squared error of the ensemble mean"
    perfect_score = 0.0
    one_member_name = "root mean squared error"

    def _ensemble_score(self, differences):
        return np.sqrt(_ensemble_mean_mse(differences))


@register
class Spread(_InDataUnits, EnsembleMetric):
    """Ensemble spread [unit]: sqrt(mean over the points of the unbiased ensemble variance), the variance being
    sum_k (x_k - mean_j x_j)^2 / (K - 1) (the K/(K-1) factor on the members' mean squared deviation); K >= 2."""

    name = "spread"
    long_name = "ensemble spread (root of the mean unbiased ensemble variance)"
    min_members = 2

    def _ensemble_score(self, differences):
        return np.sqrt(_mean_ensemble_variance(differences))


@register
class SpreadSkill(EnsembleMetric):
    """Spread-skill ratio [1]: ``spread`` / ``ensemble_mean_rmse``; K >= 2.

    Finite-ensemble correction: when the truth is drawn from the same distribution as the K members, the expected
    squared error of the ensemble mean is (K + 1) / K times the ensemble variance, so sqrt((K + 1) / K) x
    spread / RMSE is 1 for a calibrated ensemble; the ratio written here is uncorrected: a calibrated ensemble of
    K members scores sqrt(K / (K + 1)) (0.943 for K = 8), smaller is under-dispersive, larger over-dispersive.
    """

    name = "spread_skill"
    long_name = "spread-skill ratio (spread / ensemble-mean RMSE, uncorrected for K)"
    min_members = 2

    def _ensemble_score(self, differences):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sqrt(_mean_ensemble_variance(differences) / _ensemble_mean_mse(differences))


def calibrated_spread_skill(members: int) -> float:
    """The ``spread_skill`` of a calibrated ensemble of ``members`` members: sqrt(K / (K + 1))."""
    return float(np.sqrt(members / (members + 1)))


@register
class RankHistogram(EnsembleMetric):
    """Rank histogram (Talagrand diagram) [count of points]: per field, K + 1 counts, bin r (0..K) counting the
    grid points where r members lie below the truth, summed over the points (unweighted). Ties are split evenly:
    a truth equal to m members has the ranks r..r+m (r members below it) equally likely, and each of those m + 1
    bins gets 1 / (m + 1) (a random choice, as xskillscore's, would give the same histogram in expectation but
    depend on a seed). A flat histogram is calibrated, a U shape under-dispersive, a dome over-dispersive, a
    slope biased. Scores have a last dim ``rank`` (0..K); K >= 2.
    """

    name = "rank_histogram"
    long_name = "rank histogram of the truth among the ensemble members"
    min_members = 2

    def units(self, data_units):
        return "count"

    def _score_coords(self, forecast):
        return {"rank": np.arange(forecast.sizes[MEMBER_DIM] + 1)}

    def _score(self, forecast, truth, context, chunk):
        # the signs of x_k - y are exact: no float64 differences needed
        below = (forecast < truth[:, None]).sum(axis=1).reshape(len(truth), -1)
        ties = (forecast == truth[:, None]).sum(axis=1).reshape(len(truth), -1)
        bins = forecast.shape[1] + 1
        field_offset = (np.arange(len(truth)) * bins)[:, None]
        counts = np.bincount((field_offset + below)[ties == 0], minlength=len(truth) * bins).astype(np.float64)
        for tied in np.unique(ties[ties > 0]):
            where = ties == tied
            for shift in range(tied + 1):
                counts += np.bincount((field_offset + below + shift)[where], minlength=counts.size) / (tied + 1)
        return counts.reshape(len(truth), bins)


def is_scalar(name: str) -> bool:
    """Whether the gridded metric ``name`` gives one number per field (every metric but the rank histogram)."""
    return METRICS[name]._score_coords is Metric._score_coords


# ------------------------------------------------------------------------------------------ Moving MNIST metrics
class _PixelMetric(Metric):
    """Base of the Moving MNIST metrics: frames of intensities in [0, 1] (byte value / 255) given as ``(..., lat,
    lon)`` = ``(..., row, column)`` fields in float64; dimensionless scores."""

    evaluation = SEQUENCES
    perfect_score = 0.0

    def units(self, data_units):
        return "1"


class _PixelErrorSum(_PixelMetric):
    """The sum over a frame's pixels of an error of each pixel (:meth:`_errors`), or its mean (``per_pixel``)."""

    per_pixel: ClassVar[bool] = True

    def _errors(self, difference: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _score(self, forecast, truth, context, chunk):
        difference = np.asarray(forecast, np.float64) - np.asarray(truth, np.float64)
        total = self._errors(difference).sum(axis=(-2, -1))
        return total / (truth.shape[1] * truth.shape[2]) if self.per_pixel else total


@register
class PixelMSE(_PixelErrorSum):
    name = "mse"
    long_name = "mean squared error per pixel"

    def _errors(self, difference):
        return difference ** 2


@register
class FrameMSE(PixelMSE):
    """The per-frame MSE that OpenSTL and the PredRNN papers publish: 4096 x ``mse`` on 64 x 64 frames."""

    name = "mse_frame"
    long_name = "squared error summed over the pixels of a frame"
    per_pixel = False


@register
class PixelMAE(_PixelErrorSum):
    name = "mae"
    long_name = "mean absolute error per pixel"

    def _errors(self, difference):
        return np.abs(difference)


@register
class FrameMAE(PixelMAE):
    name = "mae_frame"
    long_name = "absolute error summed over the pixels of a frame"
    per_pixel = False


@dataclass(eq=False)
class _UnitDataRange:
    """Mixin making a gridded metric with a stated data range a Moving MNIST metric of data range 1."""

    evaluation: ClassVar[str] = SEQUENCES
    data_range: float | None = 1.0


@register
@dataclass(eq=False)
class PixelSSIM(_UnitDataRange, SSIM):
    """SSIM of intensities with data range 1 (scikit-image's mean SSIM, 7 x 7 uniform windows)."""

    long_name: ClassVar[str] = "structural similarity index (data range 1)"


@register
@dataclass(eq=False)
class PixelPSNR(_UnitDataRange, PSNR):
    """PSNR of intensities, 10 log10(1 / mse) [dB] (data range 1)."""

    long_name: ClassVar[str] = "peak signal-to-noise ratio (data range 1)"


def needs_climatology(name: str) -> bool:
    """Whether the registered metric ``name`` cannot be computed without a climatology (ACC-type)."""
    return "climatology" in METRICS[name].needs


#: the metrics defined here, in registration order (postprocessing computes every registered metric by default;
#: those needing a climatology only when one is given)
DEFAULT_METRICS = tuple(METRICS)
#: the metrics defined here that need a climatology file (ACC-type)
CLIMATOLOGY_METRICS = tuple(name for name in METRICS if needs_climatology(name))


@dataclass(frozen=True)
class Conventions:
    """A set of metric definitions: parameter values given to every metric of a class (and its subclasses)."""

    name: str
    description: str
    #: metric base class → {dataclass field: value}
    parameters: dict = field(default_factory=dict)

    def parameters_for(self, cls: type[Metric]) -> dict:
        """The parameter values this convention sets for metric class ``cls``."""
        values = {}
        for base, parameters in self.parameters.items():
            if issubclass(cls, base):
                values.update(parameters)
        return values


#: ``ambs`` (default): the definitions of this module's docstring. ``gmd2022``: the original AMBS's definitions,
#: which produced the numbers published in the GMD paper (2022): ACC against the climatology of the hour *before*
#: the valid time, PSNR with R = 1 (PSNR = -10 log10(MSE [K^2])), SSIM with R = 2 (scikit-image's implicit range of
#: float data). Texture is identical in both (the original's grid-spacing error cancels in the ratio on grids with
#: equal lat/lon spacing, as the paper's 0.3 deg grid), and so are MSE and RMSE. The ConvLSTM gating of the paper
#: is a model hyper-parameter (``"legacy_gates": true``), not a metric definition.
CONVENTIONS = {
    "ambs": Conventions("ambs", "AMBS definitions: ACC at the valid time, PSNR and SSIM with the truth's data range "
                                "(or --data_range)"),
    "gmd2022": Conventions("gmd2022", "original AMBS / GMD 2022 definitions: ACC with the climatology of the hour "
                                      "before the valid time, PSNR with data range 1, SSIM with data range 2",
                           {PSNR: {"data_range": 1.0}, SSIM: {"data_range": 2.0},
                            ACC: {"climatology_hour_offset": -1}}),
}
DEFAULT_CONVENTIONS = "ambs"


def check_metric_names(names: Sequence[str], evaluation: str = GRIDDED) -> list[str]:
    """The names, validated against the metrics of ``evaluation`` (unknown → UserError listing the known ones),
    duplicates dropped, order kept."""
    known = METRICS_BY_EVALUATION[evaluation]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"unknown evaluation metric(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def check_conventions(name: str, data_range: float | None = None) -> Conventions:
    """The :data:`CONVENTIONS` entry ``name``; unknown, or ``gmd2022`` with a stated data range → UserError."""
    if name not in CONVENTIONS:
        raise UserError(f"unknown metric conventions {name!r}; known: {', '.join(CONVENTIONS)}")
    conventions = CONVENTIONS[name]
    if data_range is not None and any("data_range" in values for values in conventions.parameters.values()):
        raise UserError(f"--data_range {data_range:g} contradicts --metric_conventions {name}, which fixes the data "
                        f"ranges of PSNR and SSIM; give only one of them")
    return conventions


def make_metrics(names: Sequence[str], climatology: xr.DataArray | None = None, data_range: float | None = None,
                 conventions: str = DEFAULT_CONVENTIONS, evaluation: str = GRIDDED) -> list[Metric]:
    """Metric objects for ``names`` (metrics of ``evaluation``): each gets the run inputs given (not None) that its
    dataclass fields name (``climatology``, a ``(month, hour, lat, lon)`` DataArray on the forecast grid;
    ``data_range``, the stated range of PSNR and SSIM, None: the class's default), then the parameters of
    ``conventions`` (a :data:`CONVENTIONS` name)."""
    convention = check_conventions(conventions, data_range)
    inputs = {"climatology": climatology, "data_range": data_range}
    metrics = []
    for name in check_metric_names(names, evaluation):
        cls = METRICS_BY_EVALUATION[evaluation][name]
        missing = sorted(need for need in cls.needs if inputs[need] is None)
        if missing:
            raise ValueError(f"metric {name} needs a {' and a '.join(missing)}")
        parameters = {item.name: inputs[item.name] for item in fields(cls)
                      if inputs.get(item.name) is not None}
        metrics.append(cls(**{**parameters, **convention.parameters_for(cls)}))
    return metrics
