"""Embedded ERA5-like GRIB archive generator: realistic-looking, learnable test and demo data with no download.

Writes real GRIB files (eccodes) in the layout of the original ERA5 archive, one pair of files per hour::

    <out>/<YYYY>/<MM>/<YYYYMMDDHH>_sf.grb   surface: 2t, tcc, msl, 10u, 10v            (GRIB edition 1 or 2)
    <out>/<YYYY>/<MM>/<YYYYMMDDHH>_ml.grb   t on 1000/850/700/500 hPa                   (GRIB edition 1 or 2)
                                            or, with --model_levels, t on hybrid levels
                                            70..137 of ERA5's L137 plus lnsp (level 1)   (always GRIB edition 2)

Usage example (one month of the default region 30-60N, 10.2W-35.1E at 0.3 degrees (101x152 points; it contains
the GMD domain 38.4-54.9N, 0-27.3E on grid points))::

    python -m video_prediction_tools.main_scripts.main_synthetic_archive --years 2017 --months 1 --out /tmp/era5_grib
    python -m video_prediction_tools.main_scripts.main_synthetic_archive --years 2017 2018 --months 1-3 --out /tmp/g \\
        --lat_range 38.4 54.9 --lon_range 0 27.3 --resolution 0.3 --seed 0 --model_levels --days 2

The weather is a deterministic function of (seed, valid time, location): the same seed gives byte-identical files,
whatever months are requested, and months join seamlessly. Ingredients:

* a smooth fractional land mask (a stylised Europe: Atlantic to the west, Mediterranean, North Sea, Baltic) and a
  low orography on land;
* a 2t climatology: annual mean falling with latitude, a seasonal cycle larger on land and at higher latitude
  (sea lags land by a month), a diurnal cycle in local solar time, larger on land and damped by clouds;
* moving weather systems: Gaussian lows born west of Europe every ~16 h, drifting east at 8-13 m/s for 3-5 days,
  each deepening and filling smoothly. They lower msl, drive geostrophic 10 m winds (slowed and turned towards
  the low by friction), carry a cloud shield ahead of their centre and a warm-ahead / cold-behind temperature
  dipole at 2 m and aloft (tilted westwards with height);
* temperature aloft from an analytic profile ``T(p) = tropopause(T_b (p/p_s)^kappa + a_u (1 - (p/p_s)^2))``,
  smooth in log-pressure (so model-level data interpolated to pressure levels reproduce it to a few mK);
* small white noise (0.25 K on 2t, 20 Pa on msl, 0.03 on tcc, 0.3 m/s on the winds, 0.1 K on the profile base).

Model levels: only the 68 lowest of ERA5's 137 levels (70..137, about 160 hPa to the surface) are written, to
keep files small; the ``pv`` array is nevertheless ERA5's complete standard L137 set of 138 a and 138 b half-level
coefficients, as in real ERA5 files, so any reader computes the right pressures from the level numbers.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..utils.errors import UserError
from ..utils.io import atomic_path
from ..utils.log import progress

log = logging.getLogger("ambs")

#: pressure levels [hPa] written for ``t`` in the default (pressure-level) mode
PRESSURE_LEVELS_HPA = (1000, 850, 700, 500)
#: hybrid model levels written with --model_levels (the lowest 68 of ERA5's 137)
MODEL_LEVELS = tuple(range(70, 138))
#: every level of ERA5's L137 column, written with --full_column (CDO's ``ml2pl`` interpolates only whole columns)
FULL_COLUMN_LEVELS = tuple(range(1, 138))
SURFACE_VARIABLES = ("2t", "tcc", "msl", "10u", "10v")

# ERA5 / IFS L137 half-level coefficients (ECMWF "L137 model level definitions"), half levels 0 (top) .. 137
# (surface): p_half[k] = A[k] + B[k] * p_surface, A in Pa, B dimensionless.
L137_A = np.array([
    0.000000, 2.000365, 3.102241, 4.666084, 6.827977, 9.746966, 13.605424, 18.608931, 24.985718, 32.985710,
    42.879242, 54.955463, 69.520576, 86.895882, 107.415741, 131.425507, 159.279404, 191.338562, 227.968948,
    269.539581, 316.420746, 368.982361, 427.592499, 492.616028, 564.413452, 643.339905, 729.744141, 823.967834,
    926.344910, 1037.201172, 1156.853638, 1285.610352, 1423.770142, 1571.622925, 1729.448975, 1897.519287,
    2076.095947, 2265.431641, 2465.770508, 2677.348145, 2900.391357, 3135.119385, 3381.743652, 3640.468262,
    3911.490479, 4194.930664, 4490.817383, 4799.149414, 5119.895020, 5452.990723, 5798.344727, 6156.074219,
    6526.946777, 6911.870605, 7311.869141, 7727.412109, 8159.354004, 8608.525391, 9076.400391, 9562.682617,
    10065.978516, 10584.631836, 11116.662109, 11660.067383, 12211.547852, 12766.873047, 13324.668945,
    13881.331055, 14432.139648, 14975.615234, 15508.256836, 16026.115234, 16527.322266, 17008.789062,
    17467.613281, 17901.621094, 18308.433594, 18685.718750, 19031.289062, 19343.511719, 19620.042969,
    19859.390625, 20059.931641, 20219.664062, 20337.863281, 20412.308594, 20442.078125, 20425.718750,
    20361.816406, 20249.511719, 20087.085938, 19874.025391, 19608.572266, 19290.226562, 18917.460938,
    18489.707031, 18006.925781, 17471.839844, 16888.687500, 16262.046875, 15596.695312, 14898.453125,
    14173.324219, 13427.769531, 12668.257812, 11901.339844, 11133.304688, 10370.175781, 9617.515625,
    8880.453125, 8163.375000, 7470.343750, 6804.421875, 6168.531250, 5564.382812, 4993.796875, 4457.375000,
    3955.960938, 3489.234375, 3057.265625, 2659.140625, 2294.242188, 1961.500000, 1659.476562, 1387.546875,
    1143.250000, 926.507812, 734.992188, 568.062500, 424.414062, 302.476562, 202.484375, 122.101562, 62.781250,
    22.835938, 3.757813, 0.000000, 0.000000])
L137_B = np.concatenate([np.zeros(55), [
    0.000007, 0.000024, 0.000059, 0.000112, 0.000199, 0.000340, 0.000562, 0.000890, 0.001353, 0.001992,
    0.002857, 0.003971, 0.005378, 0.007133, 0.009261, 0.011806, 0.014816, 0.018318, 0.022355, 0.026964,
    0.032176, 0.038026, 0.044548, 0.051773, 0.059728, 0.068448, 0.077958, 0.088286, 0.099462, 0.111505,
    0.124448, 0.138313, 0.153125, 0.168910, 0.185689, 0.203491, 0.222333, 0.242244, 0.263242, 0.285354,
    0.308598, 0.332939, 0.358254, 0.384363, 0.411125, 0.438391, 0.466003, 0.493800, 0.521619, 0.549301,
    0.576692, 0.603648, 0.630036, 0.655736, 0.680643, 0.704669, 0.727739, 0.749797, 0.770798, 0.790717,
    0.809536, 0.827256, 0.843881, 0.859432, 0.873929, 0.887408, 0.899900, 0.911448, 0.922096, 0.931881,
    0.940860, 0.949064, 0.956550, 0.963352, 0.969513, 0.975078, 0.980072, 0.984542, 0.988500, 0.991984,
    0.995003, 0.997630, 1.000000]])
#: the GRIB ``pv`` array of ERA5 model-level data: 138 A values followed by 138 B values
L137_PV = np.concatenate([L137_A, L137_B])

GRAVITY = 9.80665  # m s-2
GAS_CONSTANT_DRY_AIR = 287.05  # J kg-1 K-1
#: exponent of the constant-lapse-rate profile T ~ p^kappa for a lapse rate of 6.5 K/km
PROFILE_EXPONENT = GAS_CONSTANT_DRY_AIR * 0.0065 / GRAVITY
TROPOPAUSE_TEMPERATURE = 215.0  # K
TROPOPAUSE_SMOOTHING = 5.0  # K, width of the smooth transition to the isothermal stratosphere
EARTH_OMEGA = 7.292e-5  # s-1
AIR_DENSITY = 1.25  # kg m-3
KM_PER_DEGREE = 111.32
#: the storm catalogue is drawn per UTC day counted from this date
EPOCH = np.datetime64("1970-01-01T00", "h")
STORM_MAX_LIFETIME_DAYS = 6
GRIB_BITS_PER_VALUE = 16


@dataclass(frozen=True)
class Grid:
    """A regular lat/lon grid. Latitudes run north→south; longitudes west→east, given signed (-180..360).

    ``lon_west`` may be negative (e.g. -10 = 350E); the GRIB grid then crosses the Greenwich meridian.
    """

    lat_south: float = 30.0
    lat_north: float = 60.0
    lon_west: float = -10.2
    lon_east: float = 35.1
    resolution: float = 0.3

    def __post_init__(self):
        if not self.resolution > 0:
            raise UserError(f"--resolution {self.resolution}: must be positive (degrees)")
        if not -90 <= self.lat_south < self.lat_north <= 90:
            raise UserError(f"--lat_range {self.lat_south} {self.lat_north}: expected -90 <= S < N <= 90")
        if not (-180 <= self.lon_west < self.lon_east <= 360 and self.lon_east - self.lon_west < 360):
            raise UserError(f"--lon_range {self.lon_west} {self.lon_east}: expected W < E, both in -180..360, "
                            "spanning less than 360 degrees")
        for name, span in (("--lat_range", self.lat_north - self.lat_south),
                           ("--lon_range", self.lon_east - self.lon_west)):
            steps = span / self.resolution
            if abs(steps - round(steps)) > 1e-6:
                raise UserError(f"{name}: its extent {span:g} is not a multiple of --resolution {self.resolution:g}")

    @property
    def ny(self) -> int:
        return int(round((self.lat_north - self.lat_south) / self.resolution)) + 1

    @property
    def nx(self) -> int:
        return int(round((self.lon_east - self.lon_west) / self.resolution)) + 1

    @property
    def latitudes(self) -> np.ndarray:
        """Latitudes [degrees_north], north→south, shape (ny,)."""
        return np.round(self.lat_north - self.resolution * np.arange(self.ny), 6)

    @property
    def longitudes(self) -> np.ndarray:
        """Longitudes [degrees_east], west→east, signed as given, shape (nx,)."""
        return np.round(self.lon_west + self.resolution * np.arange(self.nx), 6)

    def grib_keys(self) -> dict:
        """Keys of a GRIB regular_ll grid section describing this grid (longitudes in 0..360)."""
        return {"Ni": self.nx, "Nj": self.ny,
                "latitudeOfFirstGridPointInDegrees": self.lat_north,
                "latitudeOfLastGridPointInDegrees": self.lat_south,
                "longitudeOfFirstGridPointInDegrees": self.lon_west % 360,
                "longitudeOfLastGridPointInDegrees": self.lon_east % 360,
                "iDirectionIncrementInDegrees": self.resolution,
                "jDirectionIncrementInDegrees": self.resolution}


def model_level_full_pressure(levels: Sequence[int], surface_pressure: np.ndarray) -> np.ndarray:
    """Full-level pressures [Pa] of L137 ``levels`` (1..137): mean of the bounding half levels.

    ``surface_pressure`` [Pa] of any shape S; returns shape (len(levels),) + S.
    """
    levels = np.asarray(levels)
    surface_pressure = np.asarray(surface_pressure)[None]
    shape = (-1,) + (1,) * (surface_pressure.ndim - 1)
    upper = L137_A[levels - 1].reshape(shape) + L137_B[levels - 1].reshape(shape) * surface_pressure
    lower = L137_A[levels].reshape(shape) + L137_B[levels].reshape(shape) * surface_pressure
    return 0.5 * (upper + lower)


def land_fraction(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Smooth land fraction (0 sea .. 1 land) of a stylised Europe; ``lat``, ``lon`` [degrees] broadcastable."""
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0

    def inside(distance, width):  # 1 inside (distance < 0), 0 outside, smooth over `width` degrees
        return 0.5 * (1.0 - np.tanh(distance / width))

    atlantic_coast = -5.0 + 0.25 * (lat - 45.0) + 1.5 * np.sin(np.radians(lat * 12.0))
    land = inside(atlantic_coast - lon, 1.0)
    mediterranean = inside(np.abs(lat - 38.5 - 1.5 * np.sin(np.radians(lon * 12.0))) - 2.5, 0.7)
    mediterranean *= inside(-5.0 - lon, 1.0) * inside(lon - 33.0, 1.0)
    north_sea = inside(np.hypot(lat - 56.5, (lon - 3.0) * 0.6) - 3.5, 0.7)
    baltic = inside(np.hypot(lat - 58.0, (lon - 19.5) * 0.6) - 2.5, 0.7)
    return land * (1.0 - mediterranean) * (1.0 - north_sea) * (1.0 - baltic)


def _smooth_tropopause(temperature: np.ndarray) -> np.ndarray:
    """Bend a temperature profile smoothly into the isothermal stratosphere (softplus above 215 K)."""
    excess = (temperature - TROPOPAUSE_TEMPERATURE) / TROPOPAUSE_SMOOTHING
    return TROPOPAUSE_TEMPERATURE + TROPOPAUSE_SMOOTHING * np.logaddexp(0.0, excess)


@dataclass
class State:
    """All fields of the synthetic atmosphere for a run of hours, each of shape (time, lat, lon)."""

    times: np.ndarray  # datetime64[h], shape (time,)
    fields: dict  # "2t" K, "tcc" 0-1, "msl" Pa, "10u" "10v" m/s, "sp" Pa, "t_base" K, "t_upper_anomaly" K

    def temperature(self, pressure: np.ndarray | float) -> np.ndarray:
        """Air temperature [K] at ``pressure`` [Pa] (a scalar or an array broadcastable with the fields)."""
        ratio = np.asarray(pressure) / self.fields["sp"]
        profile = self.fields["t_base"] * ratio ** PROFILE_EXPONENT + self.fields["t_upper_anomaly"] * (1 - ratio ** 2)
        return _smooth_tropopause(profile)

    def model_level_temperature(self, levels: Sequence[int]) -> np.ndarray:
        """Temperature [K] on L137 full levels, shape (level, time, lat, lon)."""
        return self.temperature(model_level_full_pressure(levels, self.fields["sp"]))


class SyntheticAtmosphere:
    """The deterministic synthetic weather of one seed on one grid."""

    def __init__(self, grid: Grid, seed: int = 0):
        self.grid = grid
        self.seed = int(seed)
        self.lat2d, self.lon2d = np.meshgrid(grid.latitudes, grid.longitudes, indexing="ij")
        self.land = land_fraction(self.lat2d, self.lon2d)
        self.orography = 350.0 * self.land * np.clip((self.lat2d - 40.0) / 10.0, 0.3, 1.0)  # m
        abs_lat = np.abs(self.lat2d)
        self.annual_mean = 301.5 - 0.45 * abs_lat - 0.0065 * self.orography  # K
        self.seasonal_amplitude = (3.0 + 9.0 * self.land) * abs_lat / 45.0  # K
        self.seasonal_phase_days = 15.0 + 30.0 * (1.0 - self.land)  # day of the coldest time
        self.diurnal_amplitude = 1.0 + 5.0 * self.land  # K, clear sky
        coriolis = 2 * EARTH_OMEGA * np.sin(np.radians(np.clip(abs_lat, 10.0, 90.0)))
        self.geostrophic_factor = np.sign(self.lat2d + 1e-9) / (AIR_DENSITY * coriolis * 1000.0)  # (m/s) per Pa/km

    # ---- weather systems ------------------------------------------------------------------------------------
    def storms_born_on(self, day: int) -> np.ndarray:
        """Storms born on UTC day ``day`` (days since 1970-01-01), one row each:
        birth hour (since 1970), lifetime h, lat0, lon0 (degrees), u, v (m/s), depth (Pa), radius (km)."""
        rng = np.random.default_rng([self.seed, 1, day])
        count = int(rng.integers(1, 3))
        storms = np.empty((count, 8))
        storms[:, 0] = day * 24 + rng.uniform(0, 24, count)
        storms[:, 1] = rng.uniform(72, 120, count)
        storms[:, 2] = rng.uniform(38, 62, count)
        storms[:, 3] = rng.uniform(-45, 5, count)
        storms[:, 4] = rng.uniform(8, 13, count)
        storms[:, 5] = rng.uniform(-2, 2, count)
        storms[:, 6] = rng.uniform(1200, 3000, count)
        storms[:, 7] = rng.uniform(450, 800, count)
        return storms

    def _storm_terms(self, hours: np.ndarray) -> dict:
        """Sums over the active storms of their msl, msl-gradient, cloud and temperature patterns, (time, lat, lon)."""
        shape = (len(hours),) + self.lat2d.shape
        terms = {name: np.zeros(shape) for name in ("msl", "dpdx", "dpdy", "cloud", "t_dipole", "t_upper")}
        first_day, last_day = int(hours[0] // 24) - STORM_MAX_LIFETIME_DAYS, int(hours[-1] // 24)
        for day in range(first_day, last_day + 1):
            for birth, lifetime, lat0, lon0, u, v, depth, radius in self.storms_born_on(day):
                age = hours - birth
                alive = (age >= 0) & (age <= lifetime)
                if not alive.any():
                    continue
                envelope = np.where(alive, np.sin(np.pi * np.clip(age, 0, lifetime) / lifetime) ** 2, 0.0)
                centre_lat = lat0 + v * 3.6 * age / KM_PER_DEGREE
                centre_lon = lon0 + u * 3.6 * age / (KM_PER_DEGREE * np.cos(np.radians(centre_lat)))
                index = np.flatnonzero(alive)
                env = envelope[index, None, None]
                dlon = (self.lon2d[None] - centre_lon[index, None, None] + 180.0) % 360.0 - 180.0
                dx = dlon * KM_PER_DEGREE * np.cos(np.radians(self.lat2d[None]))  # km, east of the centre
                dy = (self.lat2d[None] - centre_lat[index, None, None]) * KM_PER_DEGREE  # km, north of the centre
                gauss = np.exp(-(dx ** 2 + dy ** 2) / (2 * radius ** 2))
                low = depth * env * gauss
                terms["msl"][index] -= low
                terms["dpdx"][index] += low * dx / radius ** 2
                terms["dpdy"][index] += low * dy / radius ** 2
                terms["cloud"][index] += env * np.exp(-((dx - 0.5 * radius) ** 2 + dy ** 2) / (2 * (1.1 * radius) ** 2))
                scale = depth / 2000.0
                terms["t_dipole"][index] += 5.0 * scale * env * dx / radius * np.exp(
                    -(dx ** 2 + dy ** 2) / (2 * (1.3 * radius) ** 2))
                shifted = dx + 0.4 * radius  # the cold air aloft sits further west (westward tilt with height)
                terms["t_upper"][index] += 6.0 * scale * env * shifted / radius * np.exp(
                    -(shifted ** 2 + dy ** 2) / (2 * (1.3 * radius) ** 2))
        return terms

    # ---- the full state -------------------------------------------------------------------------------------
    def state(self, times: Iterable[np.datetime64]) -> State:
        """The synthetic atmosphere at ``times`` (valid times, whole hours)."""
        times = np.asarray(times, dtype="datetime64[h]")
        hours = (times - EPOCH).astype(np.int64)
        terms = self._storm_terms(hours.astype(float))
        noise = np.stack([np.random.default_rng([self.seed, 2, int(h)]).standard_normal((6,) + self.lat2d.shape)
                          for h in hours], axis=1)  # (variable, time, lat, lon)

        days = hours[:, None, None] / 24.0
        season = -self.seasonal_amplitude * np.cos(2 * np.pi * (days - self.seasonal_phase_days) / 365.2425)
        local_solar_hour = (hours[:, None, None] % 24) + self.lon2d / 15.0
        diurnal_shape = np.cos(2 * np.pi * (local_solar_hour - 14.5) / 24.0)

        background_msl = (101325.0 + 900.0 * np.exp(-((self.lat2d - 35.0) / 8.0) ** 2)
                          - 700.0 * np.exp(-((self.lat2d - 64.0) / 8.0) ** 2))
        background_dpdy = (900.0 * -2 * (self.lat2d - 35.0) / 64.0 * np.exp(-((self.lat2d - 35.0) / 8.0) ** 2)
                           + 700.0 * 2 * (self.lat2d - 64.0) / 64.0 * np.exp(-((self.lat2d - 64.0) / 8.0) ** 2)
                           ) / KM_PER_DEGREE  # Pa/km
        msl = background_msl + terms["msl"] + 20.0 * noise[0]

        high = np.clip((background_msl - 101325.0) / 900.0, 0, 1)
        tcc = np.clip(0.3 + 0.1 * (1 - self.land) - 0.25 * high + 0.9 * terms["cloud"] + 0.03 * noise[1], 0.0, 1.0)

        # geostrophic wind, slowed to 60 % and turned 20 degrees towards low pressure by surface friction
        u_geo = -self.geostrophic_factor * (background_dpdy + terms["dpdy"])
        v_geo = self.geostrophic_factor * terms["dpdx"]
        turn = np.radians(20.0)
        u10 = 0.6 * (u_geo * np.cos(turn) - v_geo * np.sin(turn)) + 0.3 * noise[2]
        v10 = 0.6 * (u_geo * np.sin(turn) + v_geo * np.cos(turn)) + 0.3 * noise[3]

        diurnal = self.diurnal_amplitude * (1.0 - 0.6 * tcc) * diurnal_shape
        climate = self.annual_mean + season
        t2m = climate + diurnal + terms["t_dipole"] + 0.25 * noise[4]
        # the profile base is the 2 m temperature with a damped diurnal cycle (the free atmosphere barely feels it)
        t_base = climate + 0.25 * diurnal + terms["t_dipole"] + 0.1 * noise[5] + 0.0065 * self.orography
        surface_pressure = msl * np.exp(-GRAVITY * self.orography / (GAS_CONSTANT_DRY_AIR * t_base))
        return State(times=times, fields={"2t": t2m, "tcc": tcc, "msl": msl, "10u": u10, "10v": v10,
                                          "sp": surface_pressure, "t_base": t_base,
                                          "t_upper_anomaly": terms["t_upper"]})


# ---- GRIB writing ---------------------------------------------------------------------------------------------
class GribWriter:
    """Message templates for one grid; ``write_hour`` appends an hour's messages to open files."""

    def __init__(self, grid: Grid, edition: int = 1, model_levels: bool = False, full_column: bool = False):
        import eccodes

        self.eccodes = eccodes
        self.model_levels = model_levels
        self.levels = FULL_COLUMN_LEVELS if full_column else MODEL_LEVELS
        self.templates: dict = {}
        for name in SURFACE_VARIABLES:
            self.templates[("sf", name, 0)] = self._template(grid, edition, "sfc", name, None, None)
        if model_levels:
            # ERA5 model-level data are GRIB 2: GRIB 1 cannot hold the 276 pv values
            for level in self.levels:
                self.templates[("ml", "t", level)] = self._template(grid, 2, "pl", "t", "hybrid", level)
            self.templates[("ml", "lnsp", 1)] = self._template(grid, 2, "pl", "lnsp", "hybrid", 1)
        else:
            for level in PRESSURE_LEVELS_HPA:
                self.templates[("ml", "t", level)] = self._template(grid, edition, "pl", "t", "isobaricInhPa", level)

    def _template(self, grid, edition, sample, short_name, level_type, level):
        eccodes = self.eccodes
        handle = eccodes.codes_grib_new_from_samples(f"regular_ll_{sample}_grib{edition}")
        for key, value in grid.grib_keys().items():
            eccodes.codes_set(handle, key, value)
        if level_type == "hybrid":
            eccodes.codes_set(handle, "PVPresent", 1)
            eccodes.codes_set_array(handle, "pv", L137_PV)
        if level_type is not None:
            eccodes.codes_set(handle, "typeOfLevel", level_type)
            eccodes.codes_set(handle, "level", level)
        eccodes.codes_set(handle, "shortName", short_name)
        eccodes.codes_set(handle, "bitsPerValue", GRIB_BITS_PER_VALUE)
        return handle

    def write_message(self, stream, key, valid_time: np.datetime64, values: np.ndarray) -> None:
        eccodes = self.eccodes
        moment = valid_time.astype("datetime64[h]").astype(dt.datetime)
        handle = eccodes.codes_clone(self.templates[key])
        try:
            eccodes.codes_set(handle, "dataDate", int(moment.strftime("%Y%m%d")))
            eccodes.codes_set(handle, "dataTime", moment.hour * 100)
            eccodes.codes_set_values(handle, np.ascontiguousarray(values, dtype=np.float64).ravel())
            eccodes.codes_write(handle, stream)
        finally:
            eccodes.codes_release(handle)

    def close(self):
        for handle in self.templates.values():
            self.eccodes.codes_release(handle)
        self.templates = {}


def hours_of_month(year: int, month: int, days: int | None = None) -> np.ndarray:
    """Valid times (datetime64[h]) of every hour of a month, or of its first ``days`` days."""
    start = np.datetime64(f"{year:04d}-{month:02d}", "M")
    end = (start + 1).astype("datetime64[h]")
    if days is not None:
        end = min(end, start.astype("datetime64[D]").astype("datetime64[h]") + 24 * days)
    return np.arange(start.astype("datetime64[h]"), end, dtype="datetime64[h]")


def write_month(out_dir: Path, year: int, month: int, atmosphere: SyntheticAtmosphere, writer: GribWriter,
                days: int | None = None) -> list[Path]:
    """Write one month of hourly ``_sf.grb`` / ``_ml.grb`` files; returns the paths written."""
    times = hours_of_month(year, month, days)
    month_dir = Path(out_dir) / f"{year:04d}" / f"{month:02d}"
    written = []
    for start in progress(range(0, len(times), 24), desc=f"synthetic {year}-{month:02d}", unit="day"):
        state = atmosphere.state(times[start:start + 24])
        if writer.model_levels:
            level_temperature = state.model_level_temperature(writer.levels)
        else:
            level_temperature = np.stack([state.temperature(100.0 * p) for p in PRESSURE_LEVELS_HPA])
        for index, valid_time in enumerate(state.times):
            stamp = valid_time.astype(dt.datetime).strftime("%Y%m%d%H")
            surface_path, upper_path = month_dir / f"{stamp}_sf.grb", month_dir / f"{stamp}_ml.grb"
            with atomic_path(surface_path) as tmp, open(tmp, "wb") as stream:
                for name in SURFACE_VARIABLES:
                    writer.write_message(stream, ("sf", name, 0), valid_time, state.fields[name][index])
            with atomic_path(upper_path) as tmp, open(tmp, "wb") as stream:
                levels = writer.levels if writer.model_levels else PRESSURE_LEVELS_HPA
                for level_index, level in enumerate(levels):
                    writer.write_message(stream, ("ml", "t", level), valid_time, level_temperature[level_index, index])
                if writer.model_levels:
                    writer.write_message(stream, ("ml", "lnsp", 1), valid_time, np.log(state.fields["sp"][index]))
            written += [surface_path, upper_path]
    return written


def generate_archive(out_dir, years: Sequence[int], months: Sequence[int], grid: Grid = Grid(), seed: int = 0,
                     model_levels: bool = False, days: int | None = None, edition: int = 1,
                     full_column: bool = False) -> list[Path]:
    """Write the synthetic archive for every (year, month); returns the list of files written.

    ``full_column`` (with ``model_levels``): all 137 hybrid levels instead of the lowest 68."""
    if days is not None and not 1 <= days <= 31:
        raise UserError(f"--days {days}: expected 1..31")
    if edition not in (1, 2):
        raise UserError(f"--edition {edition}: expected 1 or 2")
    atmosphere = SyntheticAtmosphere(grid, seed)
    if full_column and not model_levels:
        raise UserError("--full_column applies to model levels only: add --model_levels")
    writer = GribWriter(grid, edition=edition, model_levels=model_levels, full_column=full_column)
    try:
        written = []
        for year in years:
            for month in months:
                month_files = write_month(Path(out_dir), year, month, atmosphere, writer, days)
                written += month_files
                log.info("wrote %d-%02d (%d files) under %s", year, month, len(month_files), out_dir)
        return written
    finally:
        writer.close()
