"""The baseline forecasts every model is scored against: one registry entry per baseline.

A baseline is a :class:`Baseline` subclass registered in :data:`BASELINES` (product name → class, in the order of
the tables and figures): its :attr:`~Baseline.name` (the ``<product>`` of ``<var>_<product>_<metric>``), its
:attr:`~Baseline.long_name` (logs, tables, the README) and how its fields are made from a batch of windows and the
run's preprocessed data (:meth:`Baseline.fields`). ERA5 postprocessing scores every registered baseline with every
metric (raw, bootstrapped, averaged, figures) and gives the model's skill against each (:func:`skill_name`);
meta-postprocessing compares runs on each. The entries:

* ``persistence`` (:class:`Persistence`, the original AMBS's reference): lead h of a forecast initialised at
  ``init`` is the analysis valid at ``init + h - 24 h`` (the same hour of the previous day), read from the run's
  preprocessed data with ``datasets.era5.load_hours`` (across months, years and data splits: it is input data,
  not a forecast). Forecasts whose previous day is not in the preprocessed data get NaN fields and are listed in
  :attr:`Baseline.missing`.
* ``copy_last_frame`` (:class:`CopyLastFrame`, the nowcasting baseline): every lead is the last context frame
  (the analysis at the initialisation time) held; Moving MNIST's baseline is the same (:func:`repeat_last_frame`).

A third baseline (e.g. optical-flow extrapolation) is one more subclass decorated with :func:`register`.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..utils.errors import UserError

#: the product name of the persistence forecast (``<var>_persistence_<metric>``, ``<var>_persistence_fcst``)
PERSISTENCE = "persistence"
#: the product name of the last context frame held (``<var>_copy_last_frame_<metric>``)
COPY_LAST_FRAME = "copy_last_frame"
#: the baseline of the skill scores whose names carry no baseline (``skill_<metric>``, as the original AMBS)
REFERENCE = PERSISTENCE


class Baseline:
    """A baseline forecast of the windows of a run: :meth:`fields` makes its fields batch by batch."""

    #: the product name (``<var>_<name>_<metric>``)
    name: ClassVar[str] = ""
    #: what the baseline is, in words
    long_name: ClassVar[str] = ""
    #: why fields can be unavailable (the warning naming :attr:`missing`)
    unavailable_when: ClassVar[str] = ""

    def __init__(self, input_dir: str, forecast_frames: int):
        self.input_dir = input_dir
        self.forecast_frames = forecast_frames
        #: initialisation times whose fields were unavailable (NaN)
        self.missing: list[np.datetime64] = []

    def fields(self, init_times: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The baseline forecasts ``[B, F, H, W, C]`` float32 in physical units of the windows initialised at
        ``init_times`` (``[B]``, datetime64[h]) whose context frames are ``context`` (``[B, ctx, H, W, C]``,
        physical units); NaN where unavailable (those initialisation times added to :attr:`missing`)."""
        raise NotImplementedError


#: product name → baseline class, in registration order (the order of the tables, figures and files)
BASELINES: dict[str, type[Baseline]] = {}


def register(cls: type[Baseline]) -> type[Baseline]:
    """Class decorator: make a baseline known to postprocessing, meta-postprocessing and the summary tables."""
    if not cls.name or cls.name in BASELINES:
        raise ValueError(f"baseline class {cls.__name__} needs a unique name, got {cls.name!r}")
    BASELINES[cls.name] = cls
    return cls


def skill_name(baseline: str, score: str) -> str:
    """The column of the model's skill against ``baseline`` in ``score``: ``skill_<score>`` against the
    :data:`REFERENCE` (persistence, the original's name), ``skill_<baseline>_<score>`` against any other."""
    return f"skill_{score}" if baseline == REFERENCE else f"skill_{baseline}_{score}"


def repeat_last_frame(context: np.ndarray, forecast_frames: int) -> np.ndarray:
    """``[B, ctx, ...]`` → ``[B, forecast_frames, ...]``: the last context frame of each window, repeated."""
    return np.repeat(context[:, -1:], forecast_frames, axis=1)


@register
class Persistence(Baseline):
    """The analysis 24 h before each valid time, read with ``load_hours`` (one read per batch where possible)."""

    name = PERSISTENCE
    long_name = "persistence (same hour of the previous day)"
    unavailable_when = "previous day not preprocessed"

    def __init__(self, input_dir: str, forecast_frames: int):
        super().__init__(input_dir, forecast_frames)
        from ..datasets.era5 import load_hours

        self._load_hours = load_hours

    def hours_for(self, init_time: np.datetime64) -> tuple[np.datetime64, np.datetime64]:
        """First and last analysis time used for a forecast initialised at ``init_time`` (leads 1..F)."""
        day = np.timedelta64(24, "h")
        return init_time + np.timedelta64(1, "h") - day, init_time + np.timedelta64(self.forecast_frames, "h") - day

    def fields(self, init_times: np.ndarray, context: np.ndarray) -> np.ndarray:
        result = np.full((len(init_times), self.forecast_frames, *context.shape[2:]), np.nan, dtype=np.float32)
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


@register
class CopyLastFrame(Baseline):
    """The last context frame (the analysis at the initialisation time) held for every lead: never unavailable."""

    name = COPY_LAST_FRAME
    long_name = "the last input frame held"

    def fields(self, init_times: np.ndarray, context: np.ndarray) -> np.ndarray:
        return repeat_last_frame(context, self.forecast_frames).astype(np.float32, copy=False)
