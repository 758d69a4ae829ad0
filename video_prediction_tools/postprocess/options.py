"""The options of a postprocessing run (those of ``main_visualize_postprocess``) and the checks every pipeline
makes of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..datasets.registry import get_dataset_class
from ..utils.errors import UserError
from .bootstrap import BLOCK_LENGTH, NBOOTS
from .metrics import DEFAULT_CONVENTIONS
from .results_io import SAMPLE_COMPRESSION

if TYPE_CHECKING:
    from ..datasets.registry import Reader
    from ..training.checkpoints import TrainedRun

#: the data splits a run can be evaluated on
MODES = ("test", "val", "train")


@dataclass
class PostprocessOptions:
    """The options of ``main_visualize_postprocess`` (names as the original CLI)."""

    checkpoint: str
    results_dir: str
    mode: str = "test"
    batch_size: int = 8
    num_stochastic_samples: int = 1
    #: None: every metric of the run's dataset (for ERA5, ACC-type ones only with a climatology file)
    evaluation_metrics: Sequence[str] | None = None
    climatology_file: str | None = None
    #: how the climatology's grid may differ from the data's (``data_extraction.climatology.CLIMATOLOGY_REGRIDDINGS``):
    #: ``none`` (the same grid points) or ``nearest``
    climatology_regridding: str = "none"
    lquick_evaluation: bool = False
    seed: int = 7
    channel: int = 0
    block_length: int = BLOCK_LENGTH
    nboots: int = NBOOTS
    data_range: float | None = None
    #: metric definitions (``metrics.CONVENTIONS``): ``ambs`` or ``gmd2022`` (the original's published numbers)
    metric_conventions: str = DEFAULT_CONVENTIONS
    overwrite: bool = False
    #: compression of the per-sample files, a key of ``results_io.SAMPLE_COMPRESSION``
    sample_compression: str = "none"
    #: the run's step-2 data when not where training recorded them (a moved data tree); None: the recorded place
    input_dir: str | None = None


def check_options(options: PostprocessOptions) -> None:
    """UserError for an option no pipeline accepts: an unknown split, a batch size or number of stochastic
    samples below 1, an unknown sample compression."""
    if options.mode not in MODES:
        raise UserError(f"--mode {options.mode!r}: expected test, val or train")
    if options.batch_size < 1:
        raise UserError(f"--batch_size {options.batch_size}: expected a positive integer")
    if options.num_stochastic_samples < 1:
        raise UserError(f"--num_stochastic_samples {options.num_stochastic_samples}: expected a positive integer")
    if options.sample_compression not in SAMPLE_COMPRESSION:
        raise UserError(f"--sample_compression {options.sample_compression!r}: expected one of "
                        f"{', '.join(SAMPLE_COMPRESSION)}")



def open_evaluated_split(run: TrainedRun, options: PostprocessOptions, evaluation: str, what: str) -> Reader:
    """The reader of the split ``options.mode`` of the run's data, in time order, normalised as in training; a run
    whose dataset is evaluated otherwise than ``evaluation`` (``what``: its data in words) is refused."""
    reader_class = get_dataset_class(run.dataset)
    if reader_class.evaluation != evaluation:
        raise UserError(f"{run.run_dir} was trained on {run.dataset!r}, whose data are not {what}")
    hparams = {**run.hparams, "shuffle_on_val": False, "batch_size": options.batch_size}
    return reader_class(run.input_dir, run.datasplit, options.mode, hparams=hparams, normalization=run.normalization)
