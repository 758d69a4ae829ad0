"""The helper process of a postprocessing run: draws its figures beside the main process.

:class:`HelperProcess` spawns the helper before the model is loaded, so that its imports (matplotlib, xarray) and
the building of its figures (:meth:`HelperProcess.prepare`) overlap the main process's
TensorFlow import and model loading. When the forecasts are scored, the figure tasks are handed over
(:meth:`HelperProcess.submit`: the example maps first, then the conditional-quantile plots); the main process
draws its own figures, then :meth:`HelperProcess.finish` takes over the tasks the helper has not started, from
the end of the list, so that both work until the last figure. Each process draws all its tasks on one
example-forecast figure and one conditional-quantile figure (:class:`Figures`): reused figures that give the
pixels of new ones.

Example::

    with HelperProcess() as helper:
        helper.prepare(nan_sample, "2t", "convLSTM", ("forecast [K]", "truth [K]"))  # while the model is loaded
        ...
        helper.submit([example_task(sample_file, "2t", "convLSTM", png_path),
                       quantiles_task(quantiles, "forecast [K]", "truth [K]", png_path, "lead 1 h")])
        ...  # the main process's own figures
        helper.finish()
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import xarray as xr

from . import plots

EXAMPLE, QUANTILES = "example forecast", "conditional quantiles"


class Figures:
    """The reused figures of one process: an example-forecast figure and a conditional-quantile figure (made
    when first needed)."""

    def __init__(self):
        self.examples = plots.ExampleForecastFigure()
        self._quantiles: plots.ConditionalQuantileFigure | None = None

    @property
    def quantiles(self) -> plots.ConditionalQuantileFigure:
        if self._quantiles is None:
            self._quantiles = plots.ConditionalQuantileFigure()
        return self._quantiles

    def draw(self, task: tuple) -> None:
        """Draw the figure of a task (:func:`example_task`, :func:`quantiles_task`)."""
        kind, *arguments = task
        if kind == EXAMPLE:
            sample_path, variable, model_name, path = arguments
            with xr.open_dataset(sample_path, engine="netcdf4") as sample:
                self.examples.save(sample.load(), variable, model_name, path)
        else:
            quantiles, condition_label, target_label, path, title = arguments
            self.quantiles.save(quantiles, condition_label, target_label, path, title=title)

    def close(self) -> None:
        self.examples.close()
        if self._quantiles is not None:
            self._quantiles.close()
            self._quantiles = None


def example_task(sample_path: Path, variable: str, model_name: str, path: Path) -> tuple:
    """The example map of the forecast in a per-sample file, written to ``path``."""
    return EXAMPLE, sample_path, variable, model_name, path


def quantiles_task(quantiles: xr.Dataset, condition_label: str, target_label: str, path: Path, title: str) -> tuple:
    """A conditional-quantile plot of ``ConditionalQuantiles.result()``, written to ``path``."""
    return QUANTILES, quantiles, condition_label, target_label, path, title


#: the helper process's figures (None in any other process)
_HELPER_FIGURES: Figures | None = None


def _helper_figures() -> Figures:
    global _HELPER_FIGURES
    if _HELPER_FIGURES is None:
        _HELPER_FIGURES = Figures()
    return _HELPER_FIGURES


def _draw_in_helper(task: tuple) -> None:
    _helper_figures().draw(task)


def _prepare_in_helper(sample: xr.Dataset, variable: str, model_name: str, quantile_labels: tuple[str, str]) -> None:
    figures = _helper_figures()
    figures.examples.prepare(sample, variable, model_name)
    figures.quantiles.prepare(*quantile_labels)


def _exit_now() -> None:
    """The helper's last step: everything it made was sent or written, so the interpreter's teardown of
    matplotlib, xarray and the rest (which the main process would wait for) is skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _start_helper(parent_pid: int) -> None:
    """Helper initialiser: end the helper as soon as its parent is gone (a killed postprocessing run must not
    leave it waiting for tasks forever; checked twice a second in a daemon thread), and without the
    interpreter's teardown when it is done."""
    import atexit
    import threading
    import time

    atexit.register(_exit_now)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class HelperProcess:
    """A spawned helper process (see the module docstring); a context manager. Spawned, the helper
    imports only what the plotting needs (matplotlib, xarray, this package's postprocessing modules), not
    TensorFlow. When the block ends with an error, the helper is stopped at once (a refused run ends without
    waiting for the helper's imports) and the figures not drawn are dropped."""

    def __init__(self):
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_helper, initargs=(os.getpid(),))
        # started now: the spawn and the imports take a while
        self.preparations = [self.pool.submit(_helper_figures)]
        self.submitted: list[tuple[Future, tuple]] = []

    def prepare(self, sample: xr.Dataset, variable: str, model_name: str, quantile_labels: tuple[str, str]) -> None:
        """Build the helper's figures before there is anything to draw: the example-forecast figure for
        ``sample``'s layout (e.g. NaN fields of the run's grid: its example maps then only draw their forecasts)
        and the conditional-quantile figure with its (condition, target) labels."""
        self.preparations.append(self.pool.submit(_prepare_in_helper, sample, variable, model_name,
                                                  quantile_labels))

    def submit(self, tasks: list[tuple]) -> None:
        """Hand ``tasks`` (one figure each) to the helper, in order."""
        self.submitted += [(self.pool.submit(_draw_in_helper, task), task) for task in tasks]

    def finish(self) -> None:
        """Draw here the tasks the helper has not taken (from the end of the list, while the helper goes on from
        its start; it has taken the one it draws and the next), wait for the others; raises the first error."""
        figures = None
        try:
            for future, task in reversed(self.submitted):
                if future.cancel():
                    figures = figures or Figures()
                    figures.draw(task)
        finally:
            if figures is not None:
                figures.close()
        for future in [*self.preparations, *(future for future, _ in self.submitted if not future.cancelled())]:
            future.result()
        self.preparations, self.submitted = [], []

    def __enter__(self) -> "HelperProcess":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            # no public way to stop a ProcessPoolExecutor's processes before Python 3.14 (terminate_workers)
            for process in list((self.pool._processes or {}).values()):
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
