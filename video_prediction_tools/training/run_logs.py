"""Logs of a training run: TensorBoard scalars, loss CSV/JSON files and the loss plot.

Files (in the run directory): ``train_losses.csv`` (step, epoch, seconds, loss, components; one row per step),
``val_losses.csv`` (step, val_loss; one row per validation), ``losses.json`` (both histories) and
``plot_train.png``. They are rewritten in full from the trainer state's histories, so they can always be
regenerated from a checkpoint. During training :class:`LossLogWriter` writes them in a background thread (the
plot takes about a second, the steps go on meanwhile).

Example::

    with writer.as_default(step=10):
        summary_scalar("total_loss", 0.25)
    write_loss_logs(run_dir, state, tracked_loss="total_loss")
"""
from __future__ import annotations

import csv
import io
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from ..utils.io import atomic_path, write_json, write_text

#: marks an event as a TensorBoard scalar (``tf.summary.scalar`` itself needs the tensorboard package installed)
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def summary_scalar(tag: str, value: float) -> None:
    """Write one scalar to the default summary writer (at its default step)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR_METADATA)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_loss_logs(run_dir: Path, state, tracked_loss: str) -> None:
    """``train_losses.csv``, ``val_losses.csv``, ``losses.json`` and ``plot_train.png`` from the histories."""
    write_text(run_dir / "train_losses.csv", _csv_text(state.train_history))
    write_text(run_dir / "val_losses.csv", _csv_text(state.val_history))
    write_json(run_dir / "losses.json", {"tracked_loss": tracked_loss, "val_loss": "MSE of the target channels "
                                         "in physical units (squared data units)",
                                         "train": state.train_history, "val": state.val_history})
    plot_losses(run_dir / "plot_train.png", state.train_history, state.val_history, tracked_loss)


def plot_losses(path: Path, train_history, val_history, tracked_loss: str) -> None:
    """Train loss (normalised units) and validation MSE (physical units) against the step, log y-axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    top.plot([row["step"] for row in train_history], [row["loss"] for row in train_history], color="green",
             label=f"train {tracked_loss}")
    top.set_ylabel(f"train {tracked_loss}\n(normalised)")
    bottom.plot([row["step"] for row in val_history], [row["val_loss"] for row in val_history], "o-",
                color="blue", label="validation MSE")
    bottom.set_ylabel("validation MSE\n(physical units²)")
    bottom.set_xlabel("training step")
    for axis in (top, bottom):
        if any(line.get_ydata().size and np.all(np.asarray(line.get_ydata()) > 0) for line in axis.lines):
            axis.set_yscale("log")
        axis.legend(loc="upper right")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def _import_pyplot() -> None:
    """Import matplotlib's pyplot (Agg): the loss-log thread's first task, so no plot pays it later."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


class LossLogWriter:
    """Writes the loss logs (:func:`write_loss_logs`) of a training loop in one background thread, while the next
    steps run (TensorFlow releases the GIL while it computes). Each request writes a copy of the histories at that
    moment; a request not started when a newer one arrives is dropped (the files are rewritten in full). An error
    in the thread is raised by the next :meth:`submit` or by :meth:`close`, which waits for the last write."""

    def __init__(self, run_dir: Path, tracked_loss: str):
        self.run_dir, self.tracked_loss = run_dir, tracked_loss
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loss-logs")
        self.pending: list[Future] = [self.executor.submit(_import_pyplot)]

    def _collect(self, wait: bool) -> None:
        """Raise the error of a finished (or, with ``wait``, of any) request; forget the finished ones."""
        for future in list(self.pending):
            if wait or future.done():
                self.pending.remove(future)
                if not future.cancelled():
                    future.result()

    def submit(self, state) -> None:
        """Write the logs of ``state``'s histories as they are now (returns at once)."""
        for future in self.pending[1:]:  # superseded; the first one may be running
            future.cancel()
        self._collect(wait=False)
        snapshot = SimpleNamespace(train_history=list(state.train_history), val_history=list(state.val_history))
        self.pending.append(self.executor.submit(write_loss_logs, self.run_dir, snapshot, self.tracked_loss))

    def close(self) -> None:
        """Wait for the last write (raising its error) and end the thread."""
        try:
            self._collect(wait=True)
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)
