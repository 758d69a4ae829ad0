"""Extraction throughput (MB of GRIB per second): AMBS extraction vs a plain cfgrib + to_netcdf loop (and CDO).

Generates one synthetic month on the GMD domain (38.4-54.9N, 0-27.3E, 0.3 degrees, 56 x 92 points; hourly 2t tcc
msl 10u 10v and t on 4 pressure levels), then times, on the same files:

* ``ambs``: ``extract_month`` with the mapping ``2t tcc msl 10u 10v t_850`` (one netCDF for the month);
* ``plain``: per hour, ``xarray.open_dataset(engine="cfgrib")`` of the surface file and of t at 850 hPa of the
  upper-air file, merged and written with ``to_netcdf`` (one netCDF per hour, as the original did);

and, with ``--model_levels`` (upper air as the whole column of ERA5's 137 model levels with lnsp, as the original
read it: CDO's ``ml2pl`` interpolates only whole columns), on a second synthetic month:

* ``ambs``: the same mapping, ``t_850`` interpolated from the model levels by ``extract_month``;
* ``cdo``: the original's path, when ``cdo`` is on PATH (Debian: ``apt-get install cdo``; without it the line
  says so and is skipped): per hour ``cdo --eccodes -f nc copy -selname,<v>`` of each surface variable, ``cdo -f nc
  copy -selname,t -ml2pl,85000`` of the model-level file, ``cdo chname,t,t_850``, ``cdo merge`` of the hour; then
  ``cdo mergetime`` of the month's hourly files into one file (what AMBS writes).

Ratios are throughput ambs / other (> 1: AMBS is faster). With CDO, the largest difference between CDO's and
AMBS's month files is printed too (both interpolate ``t`` to 850 hPa from the same model levels).

Usage example::

    python benchmarks/bench_extraction.py                 # a full month (744 hours), about 1-3 minutes
    python benchmarks/bench_extraction.py --days 3 --workdir /tmp/bench --keep
    python benchmarks/bench_extraction.py --model_levels --days 7    # against CDO, 168 hours
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def cdo(*arguments: str) -> None:
    subprocess.run(["cdo", "-s", *arguments], check=True)


def cdo_original_path(month_dir: Path, out_dir: Path) -> Path:
    """The original's extraction of ``MAPPING`` with CDO (see the module docstring); return the month file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hourly = []
    for surface_file in sorted(month_dir.glob("*_sf.grb")):
        hour = surface_file.name[:-len("_sf.grb")]
        parts = []
        for variable in MAPPING["surface"]:
            parts.append(out_dir / f"{hour}_{variable}.nc")
            cdo("--eccodes", "-f", "nc", "copy", f"-selname,{variable}", str(surface_file), str(parts[-1]))
        (variable, level), = ((name, spec["pl"]) for name, spec in MAPPING["multi"].items())
        interpolated = out_dir / f"{hour}_tmp.nc"
        cdo("-f", "nc", "copy", f"-selname,{variable}", f"-ml2pl,{level}", str(month_dir / f"{hour}_ml.grb"),
            str(interpolated))
        parts.append(out_dir / f"{hour}_{variable}_{level // 100}.nc")
        cdo(f"chname,{variable},{variable}_{level // 100}", str(interpolated), str(parts[-1]))
        interpolated.unlink()
        hourly.append(out_dir / f"ecmwf_era5_{hour[2:]}.nc")
        cdo("merge", *map(str, parts), str(hourly[-1]))
        for part in parts:
            part.unlink()
    month = out_dir / f"era5_{YEAR}_{MONTH:02d}.nc"
    cdo("mergetime", *map(str, hourly), str(month))
    return month


def compare_with_cdo(workdir: Path) -> None:
    """Print the largest absolute difference per variable between AMBS's and CDO's month files."""
    name = f"era5_{YEAR}_{MONTH:02d}.nc"
    with xr.open_dataset(workdir / "ambs" / f"{YEAR}" / f"{MONTH:02d}" / name) as ours, \
            xr.open_dataset(workdir / "cdo" / name) as theirs:
        for variable in [*MAPPING["surface"], "t_850"]:
            difference = abs(ours[variable].values - theirs[variable].values.reshape(ours[variable].shape)).max()
            print(f"largest |AMBS - CDO| of {variable}: {difference:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=None, help="only the first N days (default: the whole month)")
    parser.add_argument("--workdir", default=None, help="where to put the data (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--model_levels", action="store_true",
                        help="compare with the original's CDO path on model-level upper air instead of cfgrib")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two sides this many times (medians)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_extraction_"))
    try:
        start = time.perf_counter()
        generate_archive(workdir / "grib", [YEAR], [MONTH], GMD_GRID, days=args.days, model_levels=args.model_levels,
                         full_column=args.model_levels)
        month_dir = workdir / "grib" / f"{YEAR}" / f"{MONTH:02d}"
        files = sorted(month_dir.glob("*.grb"))
        megabytes = sum(path.stat().st_size for path in files) / 1e6
        print(f"generated {len(files)} GRIB files ({megabytes:.1f} MB, grid {GMD_GRID.ny}x{GMD_GRID.nx}, "
              f"{'model' if args.model_levels else 'pressure'} levels) in {time.perf_counter() - start:.1f} s")
        mapping = parse_varmapping(MAPPING)
        sides = {"ambs": lambda: extract_month(workdir / "grib", workdir / "ambs", YEAR, MONTH, mapping,
                                               overwrite=True)}
        if not args.model_levels:
            sides["plain"] = lambda: plain_cfgrib_loop(month_dir, workdir / "plain")
        elif shutil.which("cdo"):
            sides["cdo"] = lambda: cdo_original_path(month_dir, workdir / "cdo")
        else:
            print("cdo: not installed (Debian: apt-get install cdo), the comparison with CDO is skipped")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name in (list(sides) if repeat % 2 == 0 else list(sides)[::-1]):
                times[name].append(timed(name, sides[name], megabytes))
        ambs = statistics.median(times.pop("ambs"))
        for name, seconds in times.items():
            print(f"ratio ambs/{name} throughput: {statistics.median(seconds) / ambs:.2f}x (medians of "
                  f"{args.repeats}, load {os.getloadavg()[0]:.1f})")
        if "cdo" in times:
            compare_with_cdo(workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
