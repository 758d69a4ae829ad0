"""Extraction throughput (MB of GRIB per second): AMBS extraction vs a plain cfgrib + to_netcdf loop (and CDO).

Generates one synthetic month on the GMD domain (38.4-54.9N, 0-27.3E, 0.3 degrees, 56 x 92 points; hourly 2t tcc
msl 10u 10v and t on 4 pressure levels), then times, on the same files:

* ``ambs``: ``extract_month`` with the mapping ``2t tcc msl 10u 10v t_850`` (one netCDF for the month);
* ``plain``: per hour, ``xarray.open_dataset(engine="cfgrib")`` of the surface file and of t at 850 hPa of the
  upper-air file, merged and written with ``to_netcdf`` (one netCDF per hour, as the original did);
* ``cdo``: ``cdo -f nc copy`` of every file, when ``cdo`` is on PATH.

Usage example::

    python benchmarks/bench_extraction.py                 # a full month (744 hours), about 1-3 minutes
    python benchmarks/bench_extraction.py --days 3 --workdir /tmp/bench --keep
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import xarray as xr

from video_prediction_tools.data_extraction.extract import extract_month
from video_prediction_tools.data_extraction.synthetic import Grid, generate_archive
from video_prediction_tools.data_extraction.varmapping import parse_varmapping

GMD_GRID = Grid(38.4, 54.9, 0.0, 27.3, 0.3)
MAPPING = {"surface": ["2t", "tcc", "msl", "10u", "10v"], "multi": {"t": {"pl": 85000}}}
YEAR, MONTH = 2017, 1


def timed(label: str, function, megabytes: float) -> float:
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    print(f"{label:6s} {seconds:8.2f} s  {megabytes / seconds:8.1f} MB/s")
    return seconds


def plain_cfgrib_loop(month_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for surface_file in sorted(month_dir.glob("*_sf.grb")):
        surface = xr.open_dataset(surface_file, engine="cfgrib", backend_kwargs={"indexpath": ""})
        upper = xr.open_dataset(str(surface_file).replace("_sf", "_ml"), engine="cfgrib",
                                backend_kwargs={"indexpath": "", "filter_by_keys": {"level": 850}})
        merged = xr.merge([surface, upper.rename({"t": "t_850"})], compat="override")
        merged.to_netcdf(out_dir / surface_file.name.replace("_sf.grb", ".nc"))


def cdo_loop(month_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(month_dir.glob("*.grb")):
        subprocess.run(["cdo", "-s", "-f", "nc", "copy", str(path), str(out_dir / (path.stem + ".nc"))], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=None, help="only the first N days (default: the whole month)")
    parser.add_argument("--workdir", default=None, help="where to put the data (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_extraction_"))
    try:
        start = time.perf_counter()
        generate_archive(workdir / "grib", [YEAR], [MONTH], GMD_GRID, days=args.days)
        month_dir = workdir / "grib" / f"{YEAR}" / f"{MONTH:02d}"
        files = sorted(month_dir.glob("*.grb"))
        megabytes = sum(path.stat().st_size for path in files) / 1e6
        print(f"generated {len(files)} GRIB files ({megabytes:.1f} MB, grid {GMD_GRID.ny}x{GMD_GRID.nx}) in "
              f"{time.perf_counter() - start:.1f} s")
        mapping = parse_varmapping(MAPPING)
        ambs = timed("ambs", lambda: extract_month(workdir / "grib", workdir / "ambs", YEAR, MONTH, mapping,
                                                   overwrite=True), megabytes)
        plain = timed("plain", lambda: plain_cfgrib_loop(month_dir, workdir / "plain"), megabytes)
        print(f"ratio ambs/plain throughput: {plain / ambs:.2f}x")
        if shutil.which("cdo"):
            cdo = timed("cdo", lambda: cdo_loop(month_dir, workdir / "cdo"), megabytes)
            print(f"ratio ambs/cdo throughput: {cdo / ambs:.2f}x")
        else:
            print("cdo: not installed, skipped")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
