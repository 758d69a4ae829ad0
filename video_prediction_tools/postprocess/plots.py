"""Figures of the evaluation: scores against lead time, example forecast maps, conditional quantiles.

Every function writes one PNG (atomically) and closes its figure. Maps are plain longitude/latitude axes with
coastlines drawn as thin black lines when a local coastline shapefile exists (see ``coastlines``: ``$AMBS_COASTLINES``,
Natural Earth or Debian's GSHHS; nothing is downloaded); without one they stay plain.

Example::

    from video_prediction_tools.postprocess import plots
    plots.plot_metric_vs_lead(evaluation, "2t", "mse", {"convLSTM": "convLSTM", "persistence": "persistence"},
                              "Results/.../evaluation_mse.png")
    plots.plot_example_forecast(xr.open_dataset("vfp_date_2017010111_sample_ind_0.nc"), "2t", "convLSTM",
                                "forecast_2t_20170101T1100_mse_50percentile.png")
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..utils.io import atomic_path  # noqa: E402
from .coastlines import coastline_segments  # noqa: E402

#: colours of the forecast products in evaluation plots: the model, persistence (as the original's order), then the
#: other baselines
PRODUCT_COLOURS = ("tab:red", "tab:blue", "black", "grey", "tab:green", "tab:orange")
BAND_QUANTILES = (0.05, 0.95)
#: zlib level 1 instead of Pillow's 6: the same pixels, encoded faster into slightly larger files (a postprocessing
#: run writes dozens of figures)
PNG_OPTIONS = {"compress_level": 1}


def save_figure(figure, path: str | Path, tight: bool = True) -> Path:
    """Save ``figure`` as PNG atomically and close it; ``tight``: crop to the drawn content (costs one more
    drawing of the figure; figures laid out in fixed inches do without)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight" if tight else None,
                           pil_kwargs=PNG_OPTIONS)
    finally:
        plt.close(figure)
    return path


def metric_axis_label(metric: str, units: str) -> str:
    """Y label like ``MSE [(K)^2]``; dimensionless scores get ``[1]``."""
    return f"{metric.upper()} [{units or '1'}]"


class _ReusedFigure:
    """A figure reused for a series of plots (``self.figure``), closed by :meth:`close` or at the end of a
    ``with`` block."""

    figure = None

    def close(self) -> None:
        if self.figure is not None:
            plt.close(self.figure)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def plot_metric_vs_lead(evaluation: xr.Dataset, variable: str, metric: str, products: Mapping[str, str],
                        path: str | Path) -> Path:
    """One line per product (``label → product`` name in ``<var>_<product>_<metric>``): the average
    ``_avg`` against lead time, with the 5-95 % band of the ``_bootstrapped`` replicates when present (see
    :class:`MetricVsLeadFigure`, which draws a series of them faster)."""
    with MetricVsLeadFigure() as figure:
        return figure.save(evaluation, variable, metric, products, path)


class MetricVsLeadFigure(_ReusedFigure):
    """One figure for a series of score-against-lead plots (e.g. every metric): the figure and its axes are made
    once, per plot the lines, bands, labels and legend are drawn anew on them (same pixels as a new figure). Use
    as a context manager (closes the figure)."""

    def __init__(self):
        self.figure, self.axis = plt.subplots(figsize=(8, 4))
        self.figure.subplots_adjust(left=0.1, right=0.7, bottom=0.13, top=0.9)  # room for the legend on the right

    def save(self, evaluation: xr.Dataset, variable: str, metric: str, products: Mapping[str, str],
             path: str | Path, reference: tuple[float, str] | None = None) -> Path:
        """Draw the plot of ``metric`` (see :func:`plot_metric_vs_lead`) and write the PNG ``path`` atomically;
        ``reference``: (value, label) of a dashed horizontal line (e.g. the spread-skill ratio of a calibrated
        ensemble)."""
        axis = self.axis
        for artist in [*axis.lines, *axis.collections]:
            artist.remove()
        axis.relim()  # no data left: the new lines and bands alone set the limits, as on a new axes
        units = ""
        for colour, (label, product) in zip(PRODUCT_COLOURS, products.items()):
            name = f"{variable}_{product}_{metric}"
            average = evaluation[f"{name}_avg"]
            units = average.attrs.get("units", units)
            lead = average["fcst_hour"].values
            axis.plot(lead, average.values, marker="o", color=colour, label=label)
            if f"{name}_bootstrapped" in evaluation:
                low, high = np.nanquantile(evaluation[f"{name}_bootstrapped"].transpose("iboot", "fcst_hour").values,
                                           BAND_QUANTILES, axis=0)
                axis.fill_between(lead, low, high, color=colour, alpha=0.2, label=f"{label} 5-95 %")
        if reference is not None:
            axis.axhline(reference[0], color="grey", linestyle="--", label=reference[1])
        axis.set_xlabel("Lead time [h]")
        axis.set_ylabel(metric_axis_label(metric, units))
        axis.set_title(f"{variable}: {metric} against lead time")
        axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
        axis.grid(alpha=0.3)
        with atomic_path(Path(path)) as tmp:
            self.figure.savefig(tmp, format="png", dpi=100, pil_kwargs=PNG_OPTIONS)
        return Path(path)


def plot_rank_histograms(histogram: xr.DataArray, title: str, path: str | Path, leads: Sequence[int] | None = None
                         ) -> Path:
    """Rank histograms of the averaged counts ``histogram [fcst_hour, rank]`` (ranks 0..K of the truth among K
    members) for ``leads`` (default: up to four spread over the lead hours), one panel each: the relative frequency
    of each rank, with the flat line 1 / (K + 1) of a calibrated ensemble."""
    leads = list(leads) if leads is not None else example_leads(histogram["fcst_hour"].values)
    ranks = histogram["rank"].values
    figure, axes = plt.subplots(1, len(leads), figsize=(3 * len(leads), 3), sharey=True, squeeze=False)
    for axis, lead in zip(axes[0], leads):
        counts = histogram.sel(fcst_hour=lead).values
        axis.bar(ranks, counts / counts.sum(), color="tab:red", alpha=0.7)
        axis.axhline(1.0 / len(ranks), color="black", linestyle="--", linewidth=0.8)
        axis.set_title(f"lead {int(lead)} h")
        axis.set_xlabel("Rank of the truth")
        axis.set_xticks(ranks)
    axes[0][0].set_ylabel("Relative frequency [1]")
    figure.suptitle(title)
    return save_figure(figure, path)


# --- maps ----------------------------------------------------------------------------------------------------
#: ``gid`` of the coastline lines on a map axis (lets tests and users find them)
COASTLINES_GID = "coastlines"


def _cell_extent(centres: np.ndarray) -> tuple[float, float]:
    """(low, high) edges of the grid cells around ``centres`` (degrees), as ``pcolormesh(shading="nearest")``."""
    half_step = np.abs(np.diff(centres)).min() / 2 if len(centres) > 1 else 0.5
    return float(centres.min() - half_step), float(centres.max() + half_step)


def _draw_field(axis, lon, lat, values, coastlines, **style):
    """Field ``values [lat, lon]`` on the cells around ``lon``/``lat`` (degrees), the ``coastlines`` segments
    ((N, 2) lon/lat arrays) on top, axis limits kept to the grid cells."""
    mesh = axis.pcolormesh(lon, lat, values, shading="nearest", **style)
    if coastlines:
        axis.add_collection(LineCollection(coastlines, colors="black", linewidths=0.6, gid=COASTLINES_GID),
                            autolim=False)
    axis.set_xlim(_cell_extent(lon))
    axis.set_ylim(_cell_extent(lat))
    axis.set_xlabel("Longitude [°E]")
    axis.set_ylabel("Latitude [°N]")
    return mesh


def _finite_range(arrays) -> tuple[float, float]:
    """(min, max) over the finite values of ``arrays`` ((0, 1) if none: e.g. persistence unavailable)."""
    finite = [a.values[np.isfinite(a.values)] for a in arrays]
    finite = [values for values in finite if values.size]
    if not finite:
        return 0.0, 1.0
    return float(min(v.min() for v in finite)), float(max(v.max() for v in finite))


def example_leads(fcst_hours: Sequence[int], count: int = 4) -> list[int]:
    """Up to ``count`` lead hours spread evenly from the first to the last."""
    fcst_hours = list(fcst_hours)
    positions = np.unique(np.linspace(0, len(fcst_hours) - 1, min(count, len(fcst_hours))).round().astype(int))
    return [fcst_hours[i] for i in positions]


def plot_example_forecast(sample: xr.Dataset, variable: str, model: str, path: str | Path,
                          leads: Sequence[int] | None = None) -> Path:
    """Maps of one forecast (a per-sample ``vfp_date_*.nc`` dataset) written to ``path``: see
    ``example_forecast_figure`` (:class:`ExampleForecastFigure` draws a series of them faster)."""
    return save_figure(example_forecast_figure(sample, variable, model, leads), path, tight=False)


def example_forecast_figure(sample: xr.Dataset, variable: str, model: str, leads: Sequence[int] | None = None):
    """Figure of one forecast: per selected lead hour a row with the last input frame (first row only), the
    truth, the model forecast (first stochastic sample), persistence and forecast - truth, with coastlines.
    Fields share one colour scale; the difference has a symmetric one. The caller saves or closes it."""
    return _ExampleMaps(_example_panels(sample, variable, model, leads)).figure


def _example_panels(sample: xr.Dataset, variable: str, model: str, leads: Sequence[int] | None) -> dict:
    """What an example-forecast figure shows: ``layout`` (what fixes the figure's axes, titles and labels),
    ``grid`` (rows of ``[lat, lon]`` arrays, None for an empty place), the colour ranges and the title."""
    reference = sample[f"{variable}_ref"]
    forecast = sample[f"{variable}_{model}_fcst"]
    if "sample" in forecast.dims:
        forecast = forecast.isel(sample=0)
    persistence = sample.get(f"{variable}_persistence_fcst")
    last_input = sample[f"{variable}_in"].isel(in_hour=-1)
    leads = list(leads) if leads is not None else example_leads(reference["fcst_hour"].values)
    lat = sample["lat"].values
    lon = np.unwrap(sample["lon"].values, period=360.0)
    if lon.max() >= 360.0:  # a domain crossing 0°E is drawn from negative longitudes (e.g. -0.9 .. 2.4)
        lon = lon - 360.0
    fields = [reference.sel(fcst_hour=leads), forecast.sel(fcst_hour=leads), last_input]
    if persistence is not None:
        fields.append(persistence.sel(fcst_hour=leads))
    difference = forecast.sel(fcst_hour=leads) - reference.sel(fcst_hour=leads)
    grid = [[last_input if row == 0 else None, reference.sel(fcst_hour=lead), forecast.sel(fcst_hour=lead),
             persistence.sel(fcst_hour=lead) if persistence is not None else None, difference.sel(fcst_hour=lead)]
            for row, lead in enumerate(leads)]
    return {"layout": (variable, model, tuple(leads), reference.attrs.get("units", ""), persistence is None,
                       lat.tobytes(), lon.tobytes()),
            "variable": variable, "model": model, "leads": leads, "lat": lat, "lon": lon,
            "units": reference.attrs.get("units", ""),
            "grid": [[None if panel is None else panel.values for panel in row] for row in grid],
            "field_range": _finite_range(fields), "difference_max": max(np.abs(_finite_range([difference]))) or 1.0,
            "title": f"{variable} forecast initialised {np.datetime_as_string(sample['init_time'].values, unit='h')}"
                     " UTC"}


class _ExampleMaps:
    """An example-forecast figure and its maps, which :meth:`update` redraws with another forecast of the same
    layout (only the fields, colour limits, "not available" notes and the title change)."""

    def __init__(self, panels: dict):
        lon, lat, leads, model = panels["lon"], panels["lat"], panels["leads"], panels["model"]
        coastlines = coastline_segments(*_cell_extent(lon), *_cell_extent(lat))
        columns = ["input (init)", "truth", model, "persistence", f"{model} - truth"]
        self.figure = figure = _fixed_map_grid(len(leads), len(columns))
        self.title = figure.suptitle(panels["title"])
        self.meshes, self.notes = {}, {}
        vmin, vmax = panels["field_range"]
        dmax = panels["difference_max"]
        field_mesh = diff_mesh = None
        for row, lead in enumerate(leads):
            for column, (title, values) in enumerate(zip(columns, panels["grid"][row])):
                if values is None:
                    continue
                axis = figure.add_subplot(len(leads), len(columns), row * len(columns) + column + 1)
                self.notes[row, column] = axis.text(0.5, 0.5, "not available", ha="center", va="center",
                                                    transform=axis.transAxes, visible=not np.isfinite(values).any())
                if column == len(columns) - 1:
                    diff_mesh = _draw_field(axis, lon, lat, values, coastlines, cmap="RdBu_r", vmin=-dmax, vmax=dmax)
                    self.meshes[row, column] = diff_mesh
                else:
                    field_mesh = _draw_field(axis, lon, lat, values, coastlines, cmap="viridis", vmin=vmin, vmax=vmax)
                    self.meshes[row, column] = field_mesh
                # a title at a fixed height: its automatic placement measures the tick labels of the map per drawing
                axis.set_title(title if column == 0 else f"{title} +{lead} h", fontsize=9, y=1.0)
                # every map shows the same grid: longitudes under the bottom row (and the lone input map),
                # latitudes left of the first map of a row; the other panels keep their ticks without the labels
                if row < len(leads) - 1 and column > 0:
                    axis.xaxis.label.set_visible(False)
                    axis.tick_params(labelbottom=False)
                if column > 1 or (column == 1 and row == 0):
                    axis.yaxis.label.set_visible(False)
                    axis.tick_params(labelleft=False)
        units, variable = panels["units"], panels["variable"]
        width, height = figure.get_size_inches()
        field_bar = figure.add_axes((0.1, MAP_BAR_BOTTOM / height, 0.45, MAP_BAR_HEIGHT / height))
        figure.colorbar(field_mesh, cax=field_bar, orientation="horizontal", label=f"{variable} [{units}]")
        diff_bar = figure.add_axes((0.65, MAP_BAR_BOTTOM / height, 0.25, MAP_BAR_HEIGHT / height))
        figure.colorbar(diff_mesh, cax=diff_bar, orientation="horizontal", label=f"difference [{units}]")
        self.colour_bars = (field_bar, diff_bar)
        self.background = None  # the pixels of what no forecast changes, made by the first draw

    def _changing_artists(self) -> list:
        """What a forecast changes, and what lies on it: the meshes, the coastlines and frames drawn over them,
        the "not available" notes, the colour bars and the title."""
        on_maps = [artist for mesh in self.meshes.values() for artist in
                   (mesh, *[lines for lines in mesh.axes.collections if lines is not mesh], *mesh.axes.spines.values())]
        return [*on_maps, *self.notes.values(), *self.colour_bars, self.title]

    def write_png(self, path: str | Path) -> None:
        """Write the figure as ``savefig(path, format="png", dpi=100)`` would: the same pixels (see :meth:`draw`)."""
        self.draw()
        canvas = self.figure.canvas
        matplotlib.image.imsave(path, canvas.buffer_rgba(), format="png", origin="upper", dpi=self.figure.dpi,
                                pil_kwargs=PNG_OPTIONS)

    def draw(self) -> None:
        """Draw the figure on its canvas as a whole drawing would, redrawing only what a forecast changes over
        the pixels of the rest (axes, ticks, tick labels, panel titles: about half of the figure's drawing time),
        which are drawn once."""
        canvas = self.figure.canvas
        if self.background is None:
            changing = {artist: artist.get_visible() for artist in self._changing_artists()}
            for artist in changing:
                artist.set_visible(False)
            canvas.draw()
            self.background = canvas.copy_from_bbox(self.figure.bbox)
            for artist, visible in changing.items():
                artist.set_visible(visible)
        canvas.restore_region(self.background)
        renderer = canvas.get_renderer()
        # in the order of a whole drawing: per map the field, the coastlines, the frame, the note; then the rest
        for artist in self._changing_artists():
            if artist.get_visible():
                artist.draw(renderer)

    def update(self, panels: dict) -> None:
        """Show the forecast of ``panels`` (same ``layout`` as the one drawn)."""
        columns = len(panels["grid"][0])
        vmin, vmax = panels["field_range"]
        dmax = panels["difference_max"]
        for (row, column), mesh in self.meshes.items():
            values = panels["grid"][row][column]
            mesh.set_array(np.ma.masked_invalid(values))  # as pcolormesh stores its data
            mesh.set_clim(*((-dmax, dmax) if column == columns - 1 else (vmin, vmax)))
            self.notes[row, column].set_visible(not np.isfinite(values).any())
        self.title.set_text(panels["title"])


class ExampleForecastFigure(_ReusedFigure):
    """Draws a series of example-forecast figures (:func:`example_forecast_figure`) on one figure while their
    layout (variable, model, leads, grid, units, persistence present) stays the same: building the 17 axes took
    about 40 % of a figure, and per figure only what the forecast changes is drawn again (same pixels as a new
    figure). Use as a context manager (closes the figure)."""

    def __init__(self):
        self.maps: _ExampleMaps | None = None
        self.layout = None

    def save(self, sample: xr.Dataset, variable: str, model: str, path: str | Path,
             leads: Sequence[int] | None = None) -> Path:
        """Draw the forecast of ``sample`` and write the PNG ``path`` atomically."""
        panels = _example_panels(sample, variable, model, leads)
        if panels["layout"] == self.layout:
            self.maps.update(panels)
        else:
            self.close()
            self.maps, self.layout = _ExampleMaps(panels), panels["layout"]
        with atomic_path(Path(path)) as tmp:
            self.maps.write_png(tmp)
        return Path(path)

    def prepare(self, sample: xr.Dataset, variable: str, model: str, leads: Sequence[int] | None = None) -> None:
        """Make the figure of ``sample``'s layout and draw what stays the same (e.g. with a sample of NaN fields
        before any forecast exists): the figures that follow with that layout only draw their forecast."""
        panels = _example_panels(sample, variable, model, leads)
        self.close()
        self.maps, self.layout = _ExampleMaps(panels), panels["layout"]
        self.maps.draw()

    def close(self) -> None:
        if self.maps is not None:
            plt.close(self.maps.figure)
            self.maps, self.layout = None, None


#: layout of the example-forecast figure in inches: one map panel, the gaps around and between panels (room for
#: titles, tick labels and axis labels), the colour bars' bottom and height
MAP_PANEL = (2.5, 2.0)
MAP_MARGINS = {"left": 0.75, "right": 0.25, "top": 0.65, "bottom": 1.25}
MAP_GAPS = (0.75, 0.45)
MAP_BAR_BOTTOM, MAP_BAR_HEIGHT = 0.45, 0.15


def _fixed_map_grid(rows: int, columns: int):
    """A figure whose ``rows x columns`` subplot grid is placed in fixed inches (``MAP_*``): computing the layout
    from the drawn labels (``tight_layout``, ``bbox_inches="tight"``) took most of the time of the figure."""
    width = MAP_MARGINS["left"] + MAP_MARGINS["right"] + columns * MAP_PANEL[0] + (columns - 1) * MAP_GAPS[0]
    height = MAP_MARGINS["top"] + MAP_MARGINS["bottom"] + rows * MAP_PANEL[1] + (rows - 1) * MAP_GAPS[1]
    figure = plt.figure(figsize=(width, height))
    figure.subplots_adjust(left=MAP_MARGINS["left"] / width, right=1 - MAP_MARGINS["right"] / width,
                           bottom=MAP_MARGINS["bottom"] / height, top=1 - MAP_MARGINS["top"] / height,
                           wspace=MAP_GAPS[0] / MAP_PANEL[0], hspace=MAP_GAPS[1] / MAP_PANEL[1])
    return figure


# --- conditional quantiles (Murphy-Winkler factorisation) ---------------------------------------------------
class ConditionalQuantiles:
    """Streaming quantiles of a target variable conditioned on bins of another (e.g. truth given the forecast).

    Values are counted in a 2-D histogram: conditioning bins of ``bin_width`` (1 K, as the original), target
    bins of ``resolution`` (0.05 by default), growing as new data arrive, so the memory is independent of the
    number of samples (the original kept every value in float16, i.e. 0.25 K steps). Quantiles are then read
    from the cumulative histogram with linear interpolation inside a target bin: accurate to ``resolution``.
    """

    def __init__(self, bin_width: float = 1.0, resolution: float = 0.05):
        self.bin_width = float(bin_width)
        self.resolution = float(resolution)
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.origin = (0, 0)  # integer (condition, target) bin index of counts[0, 0]

    def add(self, condition: np.ndarray, target: np.ndarray) -> None:
        """Count pairs (NaNs ignored). The arrays broadcast against each other: one truth against several
        ensemble members is binned once."""
        rows = np.floor(np.asarray(condition, dtype=np.float64) / self.bin_width)
        cols = np.floor(np.asarray(target, dtype=np.float64) / self.resolution)
        rows, cols = (bins.ravel() for bins in np.broadcast_arrays(rows, cols))
        keep = np.isfinite(rows) & np.isfinite(cols)
        if not keep.any():
            return
        rows, cols = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
        self._grow(rows.min(), rows.max(), cols.min(), cols.max())
        rows -= self.origin[0]
        cols -= self.origin[1]
        flat = np.bincount(rows * self.counts.shape[1] + cols, minlength=self.counts.size)
        self.counts += flat.reshape(self.counts.shape)

    def _grow(self, row_min, row_max, col_min, col_max) -> None:
        if self.counts.size == 0:
            self.origin = (int(row_min), int(col_min))
            self.counts = np.zeros((row_max - row_min + 1, col_max - col_min + 1), dtype=np.int64)
            return
        top = max(0, self.origin[0] - row_min)
        left = max(0, self.origin[1] - col_min)
        bottom = max(0, row_max - (self.origin[0] + self.counts.shape[0] - 1))
        right = max(0, col_max - (self.origin[1] + self.counts.shape[1] - 1))
        if top or left or bottom or right:
            self.counts = np.pad(self.counts, ((top, bottom), (left, right)))
            self.origin = (self.origin[0] - top, self.origin[1] - left)

    def result(self, quantiles: Sequence[float] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """``quantile_panel [bin_center, quantile]`` (NaN for empty bins) and ``counts [bin_center]``."""
        centres = (np.arange(self.counts.shape[0]) + self.origin[0] + 0.5) * self.bin_width
        target_edges = (np.arange(self.counts.shape[1] + 1) + self.origin[1]) * self.resolution
        totals = self.counts.sum(axis=1)
        panel = np.full((len(centres), len(quantiles)), np.nan)
        cumulative = np.concatenate([np.zeros((len(centres), 1)), np.cumsum(self.counts, axis=1)], axis=1)
        for row in np.flatnonzero(totals):
            panel[row] = np.interp(np.asarray(quantiles) * totals[row], cumulative[row], target_edges)
        return xr.Dataset({"quantile_panel": (("bin_center", "quantile"), panel), "counts": ("bin_center", totals)},
                          coords={"bin_center": centres, "quantile": list(quantiles)})


def plot_conditional_quantiles(quantiles: xr.Dataset, condition_label: str, target_label: str,
                               path: str | Path, title: str = "") -> Path:
    """Median and 5/95 % quantiles of the target against the conditioning bins, the 1:1 line, and the
    histogram of the conditioning variable (grey, log scale, right axis): see :class:`ConditionalQuantileFigure`,
    which draws a series of them faster."""
    with ConditionalQuantileFigure() as figure:
        return figure.save(quantiles, condition_label, target_label, path, title)


class ConditionalQuantileFigure(_ReusedFigure):
    """One figure for a series of conditional-quantile plots (e.g. every lead hour): the axes, lines and legend
    are made once and only their data, limits and texts change per plot. A new figure per plot cost about three
    times as much, mostly in measuring the same tick labels anew (text sizes are cached per figure renderer).
    Use as a context manager (closes the figure)."""

    def __init__(self):
        self.figure, self.axis = plt.subplots(figsize=(8, 5))
        self.one_to_one, = self.axis.plot([], [], color="tab:grey", linewidth=0.8, label="1:1")
        self.lines: dict[float, object] = {}
        self.counts_axis = self.axis.twinx()
        self.counts_axis.set_yscale("log")
        self.counts_axis.set_ylabel("counts")
        self.bars: list = []  # the histogram's rectangles

    def _draw_bars(self, centres: np.ndarray, counts: np.ndarray, width) -> None:
        """The histogram bars, as ``counts_axis.bar(centres, counts, width)`` draws them: the bars of the previous
        plot are moved and resized (making a bar costs more than drawing it), missing ones added, extra ones
        removed, so that bar k is always the k-th drawn."""
        kept = min(len(self.bars), len(centres))
        for bar, left, count in zip(self.bars, centres[:kept] - np.asarray(width) / 2, counts[:kept]):
            bar.set_x(left)
            bar.set_width(width if np.ndim(width) == 0 else width[0])
            bar.set_height(count)
        for bar in self.bars[kept:]:
            bar.remove()
        self.bars = self.bars[:kept]
        if len(centres) > kept:
            self.bars += list(self.counts_axis.bar(centres[kept:], counts[kept:], width=width, color="grey",
                                                   alpha=0.3))

    def _quantile_lines(self, levels) -> list:
        """The line of each quantile level (made, with the legend, when the levels change)."""
        if list(self.lines) != list(levels):
            for line in self.lines.values():
                line.remove()
            self.lines = {}
            for q in levels:
                solid = np.isclose(q, 0.5)
                self.lines[q], = self.axis.plot([], [], color="black", linestyle="-" if solid else "--",
                                                linewidth=1.5 if solid else 1.0, label=f"{q:.0%} quantile")
            self.axis.legend(loc="upper left")
        return list(self.lines.values())

    def save(self, quantiles: xr.Dataset, condition_label: str, target_label: str, path: str | Path,
             title: str = "") -> Path:
        """Draw ``quantiles`` (``ConditionalQuantiles.result()``) and write the PNG ``path`` atomically."""
        self._show(quantiles, condition_label, target_label, title)
        with atomic_path(Path(path)) as tmp:  # matplotlib's default margins hold both axes' labels
            self.figure.savefig(tmp, format="png", dpi=100, pil_kwargs=PNG_OPTIONS)
        return Path(path)

    def prepare(self, condition_label: str, target_label: str) -> None:
        """Draw the figure once with these labels and no data (before any forecast exists): the plots that follow
        find the legend made and the sizes of their texts measured."""
        self._show(ConditionalQuantiles().result(), condition_label, target_label, "")
        self.figure.canvas.draw()

    def _show(self, quantiles: xr.Dataset, condition_label: str, target_label: str, title: str) -> None:
        axis, counts_axis = self.axis, self.counts_axis
        centres = quantiles["bin_center"].values
        panel = quantiles["quantile_panel"]
        counts = quantiles["counts"].values
        present = counts > 0
        limits = [centres[present].min() - 0.5, centres[present].max() + 0.5] if present.any() else [0, 1]
        self.one_to_one.set_data(limits, limits)
        levels = panel["quantile"].values
        for line, q in zip(self._quantile_lines(levels), levels):
            line.set_data(centres, panel.sel(quantile=q).values)
        axis.relim()
        axis.set_xlim(limits)
        axis.autoscale_view(scalex=False)
        axis.set_xlabel(condition_label)
        axis.set_ylabel(target_label)
        self._draw_bars(centres, counts, np.diff(centres[:2]) if len(centres) > 1 else 1.0)
        # the histogram in the lower part of the panel; nothing counted: one decade (limits of a previous plot
        # would stay, matplotlib does not autoscale an axis without data)
        counts_axis.set_ylim((0.5, counts.max() ** 3) if present.any() else (1, 10))
        # a title at a fixed height: its automatic placement measures every tick label of both axes per drawing
        axis.set_title(title, y=1.0)

