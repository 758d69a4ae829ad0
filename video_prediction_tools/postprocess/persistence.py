"""The persistence forecast of ERA5 postprocessing: the analysis at the same hour of the previous day.

Lead h of a forecast initialised at ``init`` is the analysis valid at ``init + h - 24 h``, read from the run's
preprocessed data with ``datasets.era5.load_hours`` (across months and years). Forecasts whose previous day is not
in the preprocessed data get NaN persistence; :attr:`PersistenceReader.missing` lists them for a warning.
"""
from __future__ import annotations

import numpy as np

from ..utils.errors import UserError

#: the product name of the persistence forecast (``<var>_persistence_<metric>``, ``<var>_persistence_fcst``)
PERSISTENCE = "persistence"


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
