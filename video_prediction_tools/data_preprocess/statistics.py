"""Exact, mergeable per-variable statistics: count, min, max, mean ("avg") and population standard deviation.

A month's statistics (``stat_<MM>.json``) and the merged ones (``statistics.json``) share one schema::

    {"2t": {"count": 223488, "min": 251.3, "max": 291.8, "avg": 273.9, "sigma": 8.41}, "tcc": {...}, ...}

``count`` = number of values (hours x grid points), ``sigma`` = sqrt(mean((x - avg)^2)) (population, ddof=0), all
float64. Merging uses the parallel-variance formula (Chan et al. 1979) on M2 = sigma^2 * count, so the merge of any
subset of months equals the statistics of the concatenated data to float64 rounding. Pure numpy (no TensorFlow).

Example::

    from video_prediction_tools.data_preprocess.statistics import field_stats, merge_stats

    january = {"2t": field_stats(values_jan)}
    february = {"2t": field_stats(values_feb)}
    merge_stats([january, february])["2t"]["sigma"]     # == np.concatenate([...]).std() to ~1e-12
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..utils.errors import UserError

STAT_KEYS = ("count", "min", "max", "avg", "sigma")
#: keys of a statistics file that are not variables (step 2 adds "common_stat" to statistics.json)
NON_VARIABLE_KEYS = ("common_stat",)


def field_stats(values: np.ndarray) -> dict[str, Any]:
    """Statistics of all values of an array (any shape), computed in float64 with a two-pass variance."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise UserError("cannot compute statistics of an empty field")
    mean = float(values.mean())
    sigma = float(np.sqrt(np.mean(np.square(values - mean))))
    return {"count": int(values.size), "min": float(values.min()), "max": float(values.max()),
            "avg": mean, "sigma": sigma}


def channel_stats(data: np.ndarray, variables: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Statistics per unique variable of a channel-last array ``[..., channel]`` (duplicates counted once).

    Keys are in order of first occurrence in ``variables``.
    """
    if data.shape[-1] != len(variables):
        raise ValueError(f"{data.shape[-1]} channels but {len(variables)} variable names")
    stats: dict[str, dict[str, Any]] = {}
    for channel, variable in enumerate(variables):
        if variable not in stats:
            stats[variable] = field_stats(data[..., channel])
    return stats


def _merge_two(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    count = a["count"] + b["count"]
    delta = b["avg"] - a["avg"]
    mean = a["avg"] + delta * b["count"] / count
    m2 = (a["sigma"] ** 2 * a["count"] + b["sigma"] ** 2 * b["count"]
          + delta * delta * a["count"] * b["count"] / count)
    return {"count": int(count), "min": float(min(a["min"], b["min"])), "max": float(max(a["max"], b["max"])),
            "avg": float(mean), "sigma": float(math.sqrt(max(m2, 0.0) / count))}


def merge_stats(stat_dicts: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge statistics of disjoint pieces of data (e.g. months) into those of their concatenation.

    Every dict must hold the same variables (keys in :data:`NON_VARIABLE_KEYS` are ignored); the result keeps the
    variable order of the first dict. A mismatch or a malformed entry is a :class:`UserError`.
    """
    if not stat_dicts:
        raise UserError("no statistics to merge (empty list)")
    variables = [key for key in stat_dicts[0] if key not in NON_VARIABLE_KEYS]
    merged: dict[str, dict[str, Any]] = {}
    for index, stats in enumerate(stat_dicts):
        others = sorted(key for key in stats if key not in NON_VARIABLE_KEYS)
        if others != sorted(variables):
            raise UserError(f"statistics #{index} hold variables {others}, expected {sorted(variables)}")
        for variable in variables:
            entry = stats[variable]
            if not isinstance(entry, Mapping) or any(key not in entry for key in STAT_KEYS):
                raise UserError(f"statistics #{index}, variable {variable}: expected the keys {list(STAT_KEYS)}")
            merged[variable] = dict(entry) if variable not in merged else _merge_two(merged[variable], entry)
    return {variable: {key: merged[variable][key] for key in STAT_KEYS} for variable in variables}
