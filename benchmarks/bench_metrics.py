"""Speed and agreement of the AMBS metrics against xskillscore and scikit-image, in one run, on the same arrays.

1000 initialisations x 12 lead hours at the GMD domain shape (56 x 92), float32 Kelvin-like fields:

* MSE, RMSE: ``postprocess.metrics`` vs ``xskillscore.mse`` / ``xskillscore.rmse`` over (lat, lon);
* ACC: centred ``ACC(climatology, centred=True)`` vs ``xskillscore.pearson_r`` of the anomalies against the
  month x hour climatology at the valid time (the anomaly computation is timed on both sides);
* SSIM: ``SSIM()`` (vectorised) vs ``skimage.metrics.structural_similarity`` field by field (float64 input,
  ``gaussian_weights=False, win_size=7``, same data range).

Prints the CPU time of each (best of ``--repeat``), the ratio (library time / AMBS time; > 1 means AMBS is faster) and the maximum relative
difference of the values (target < 1e-5).

Usage::

    python benchmarks/bench_metrics.py [--samples 1000] [--repeat 3] [--ssim_fields 12000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import xarray as xr

from video_prediction_tools.postprocess import metrics as M

NY, NX, LEADS = 56, 92, 12


def make_data(samples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lat = 38.4 + 0.3 * np.arange(NY)[::-1]
    lon = 0.3 * np.arange(NX)
    init = pd.date_range("2019-01-01T11", periods=samples, freq="h").values
    coords = {"init_time": init, "fcst_hour": np.arange(1, LEADS + 1), "lat": lat, "lon": lon}
    base = 275 + 10 * np.cos(np.deg2rad(lat))[:, None] + 2 * np.sin(np.deg2rad(4 * lon))[None, :]
    truth = (base + 3 * rng.standard_normal((samples, LEADS, NY, NX))).astype(np.float32)
    forecast = (truth + rng.standard_normal(truth.shape)).astype(np.float32)
    clim = (base + rng.standard_normal((12, 24, NY, NX))).astype(np.float32)
    truth = xr.DataArray(truth, dims=list(coords), coords=coords, attrs={"units": "K"})
    forecast = xr.DataArray(forecast, dims=list(coords), coords=coords, attrs={"units": "K"})
    clim = xr.DataArray(clim, dims=("month", "hour", "lat", "lon"),
                        coords={"month": np.arange(1, 13), "hour": np.arange(24), "lat": lat, "lon": lon})
    return forecast, truth, clim


def best_time(function, repeat: int):
    """Best CPU time (user + system of this process, seconds) of ``repeat`` calls, and the last result.

    CPU time rather than wall time: on a shared machine the wall time mostly measures the other users."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.process_time()
        result = function()
        best = min(best, time.process_time() - start)
    return best, result


def max_relative_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def report(name: str, ours: float, theirs: float, difference: float, library: str) -> None:
    print(f"{name:6s} AMBS {ours:8.3f} s CPU   {library:24s} {theirs:8.3f} s CPU   ratio {theirs / ours:6.2f}   "
          f"max rel diff {difference:.2e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ssim_fields", type=int, default=None,
                        help="fields compared with scikit-image (default: all samples x leads)")
    args = parser.parse_args(argv)
    import xskillscore as xs
    from skimage.metrics import structural_similarity

    forecast, truth, clim = make_data(args.samples)
    print(f"{args.samples} samples x {LEADS} leads x {NY} x {NX} float32; best of {args.repeat}")
    dims = ["lat", "lon"]

    ours, mse = best_time(lambda: M.MSE().compute(forecast, truth), args.repeat)
    theirs, xs_mse = best_time(lambda: xs.mse(forecast, truth, dim=dims), args.repeat)
    report("MSE", ours, theirs, max_relative_difference(mse, xs_mse), "xskillscore.mse")

    ours, rmse = best_time(lambda: M.RMSE().compute(forecast, truth), args.repeat)
    theirs, xs_rmse = best_time(lambda: xs.rmse(forecast, truth, dim=dims), args.repeat)
    report("RMSE", ours, theirs, max_relative_difference(rmse, xs_rmse), "xskillscore.rmse")

    def xs_acc():
        valid = truth["init_time"] + truth["fcst_hour"].astype("timedelta64[h]")
        at_valid = clim.sel(month=valid.dt.month, hour=valid.dt.hour)
        return xs.pearson_r(forecast - at_valid, truth - at_valid, dim=dims)

    ours, acc = best_time(lambda: M.ACC(clim, centred=True).compute(forecast, truth), args.repeat)
    theirs, xs_pearson = best_time(xs_acc, args.repeat)
    report("ACC", ours, theirs, max_relative_difference(acc, xs_pearson), "xskillscore.pearson_r")

    fields = args.ssim_fields or args.samples * LEADS
    flat_f = forecast.values.reshape(-1, NY, NX)[:fields]
    flat_t = truth.values.reshape(-1, NY, NX)[:fields]
    sub_f = forecast.stack(field=("init_time", "fcst_hour")).isel(field=slice(0, fields))
    sub_t = truth.stack(field=("init_time", "fcst_hour")).isel(field=slice(0, fields))
    ours, ssim = best_time(lambda: M.SSIM().compute(sub_f, sub_t), 1)

    def skimage_ssim():
        out = np.empty(fields)
        for k in range(fields):
            o, f = flat_t[k].astype(np.float64), flat_f[k].astype(np.float64)
            out[k] = structural_similarity(o, f, data_range=o.max() - o.min(), gaussian_weights=False, win_size=7)
        return out

    theirs, sk_ssim = best_time(skimage_ssim, 1)
    report("SSIM", ours, theirs, max_relative_difference(ssim.transpose("field").values, sk_ssim),
           f"skimage ({fields} fields)")


if __name__ == "__main__":
    main()
