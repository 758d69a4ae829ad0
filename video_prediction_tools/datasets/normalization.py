"""Per-channel normalisation of ``[..., channel]`` arrays, from merged statistics, saved with a model.

Methods (per channel, with the statistics of that channel's variable):

* ``minmax``: ``(x - min) / (max - min)`` → [0, 1] over the statistics' months;
* ``znorm``:  ``(x - avg) / sigma`` (sigma = population standard deviation, not the variance).

A variable whose range (minmax) or sigma (znorm) is zero gets scale 1, so constant fields stay finite.

Example::

    from video_prediction_tools.datasets.normalization import Normalization
    norm = Normalization("minmax", {"2t": {"min": 250.0, "max": 300.0, "avg": 280.0, "sigma": 5.0}}, ["2t"])
    x = norm.normalize(frames)            # frames [..., 1] float32, numpy or tf tensor
    frames_again = norm.denormalize(x)
    write_json("normalization.json", norm.to_dict()); Normalization.from_dict(read_json(...))
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..utils.errors import UserError

METHODS = ("minmax", "znorm")
_STAT_KEYS = ("min", "max", "avg", "sigma")


class Normalization:
    """``Normalization(method, stats, variables)``: ``stats`` maps each variable name to at least
    ``{"min", "max", "avg", "sigma"}`` (extra keys such as ``count`` are ignored); ``variables`` are the channel
    names in channel order (duplicates allowed)."""

    def __init__(self, method: str, stats: dict[str, dict[str, float]], variables: list[str]):
        if method not in METHODS:
            raise UserError(f"normalization {method!r}: expected one of {', '.join(METHODS)}")
        missing = sorted({v for v in variables if v not in stats})
        if missing:
            raise UserError(f"normalization statistics lack the variable(s) {', '.join(missing)}")
        self.method = method
        self.variables = [str(v) for v in variables]
        try:
            self.stats = {v: {key: float(stats[v][key]) for key in _STAT_KEYS} for v in dict.fromkeys(self.variables)}
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"normalization statistics: each variable needs numeric {', '.join(_STAT_KEYS)} "
                            f"({err})") from None
        if method == "minmax":
            offset = [self.stats[v]["min"] for v in self.variables]
            scale = [self.stats[v]["max"] - self.stats[v]["min"] for v in self.variables]
        else:
            offset = [self.stats[v]["avg"] for v in self.variables]
            scale = [self.stats[v]["sigma"] for v in self.variables]
        #: per-channel ``x_normalised = (x - offset) / scale``, float64 ``[channel]``
        self.offset = np.array(offset, dtype=np.float64)
        self.scale = np.where(np.array(scale) > 0, np.array(scale, dtype=np.float64), 1.0)

    def _constants(self, x):
        dtype = x.dtype.as_numpy_dtype if hasattr(x.dtype, "as_numpy_dtype") else np.asarray(x).dtype
        if not np.issubdtype(dtype, np.floating):
            dtype = np.float32
        return self.offset.astype(dtype), self.scale.astype(dtype)

    def _check_channels(self, x):
        if x.shape[-1] != len(self.variables):
            raise ValueError(f"array has {x.shape[-1]} channels, the normalisation {len(self.variables)} "
                             f"({self.variables})")

    def normalize(self, x):
        """Physical values ``[..., channel]`` → normalised (same type: numpy array or tf tensor)."""
        self._check_channels(x)
        offset, scale = self._constants(x)
        if not hasattr(x, "numpy") and not isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=offset.dtype)
        return (x - offset) / scale

    def denormalize(self, x):
        """Normalised values ``[..., channel]`` → physical units."""
        self._check_channels(x)
        offset, scale = self._constants(x)
        if not hasattr(x, "numpy") and not isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=offset.dtype)
        return x * scale + offset

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "variables": list(self.variables), "stats": self.stats}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Normalization":
        try:
            return cls(data["method"], data["stats"], data["variables"])
        except (KeyError, TypeError):
            raise UserError("normalization: expected a dict with 'method', 'stats' and 'variables'") from None

    def __eq__(self, other) -> bool:
        return isinstance(other, Normalization) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Normalization({self.method!r}, variables={self.variables})"
