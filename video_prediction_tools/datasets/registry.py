"""Dataset registry: name → reader class, and the :class:`Reader` protocol that every dataset implements.

Datasets are found, not listed: every module of the ``datasets`` package is read as text and each class decorated
with ``@register_dataset("<name>")`` is a dataset. Listing the names (:func:`known_datasets`) imports no dataset
module (so neither numpy-heavy readers nor TensorFlow); :func:`get_dataset_class` imports the one asked for.
Training (``--dataset``), step 2 (``--dataset``) and postprocessing take the dataset's behaviour from its class
only, so a new dataset (another data split form, another source) is one new registered class.

What a dataset class knows (the :class:`Reader` protocol):

* reading: constructed on one data-split mode, it yields batches ``{"images": float32 [B, T, H, W, C]
  normalised, "t_start": int64 [B]}`` (:meth:`Reader.batches`, or as ``tf.data`` :meth:`Reader.make_dataset`),
  knows its frame shape ``(H, W, C)``, variables (channels), number of windows and normalisation, and which files
  it reads (:meth:`Reader.input_files`, :meth:`Reader.description_files`: the run's input fingerprint);
* its data split: the JSON forms it accepts (ERA5: whole months or hour ranges; Moving MNIST: index ranges), how it
  is checked (:meth:`Reader.load_split`, which the runscript generator uses too) and its template
  (:attr:`Reader.split_template` under ``templates/``);
* its step 2 (:meth:`Reader.convert`: the work of ``main_preprocess_data_step2 --dataset <name>``);
* how postprocessing evaluates it (:attr:`Reader.evaluation`, one of :data:`EVALUATIONS`).

Example::

    from video_prediction_tools.datasets.registry import get_dataset_class, known_datasets
    known_datasets()                                    # ['era5', 'moving_mnist']
    reader_class = get_dataset_class("era5")
    reader_class.evaluation                             # 'gridded'
    train = reader_class("PreprocessedData/<EXPNAME>", "data_split.json", "train", hparams={"sequence_length": 24})
    for batch in train.batches(batch_size=4):
        batch["images"]                                 # float32 [4, 24, H, W, C]

A new dataset::

    @register_dataset("radar")
    class RadarDataset(Reader):
        evaluation = "gridded"
        split_template = "data_split/radar/datasplit_template.json"
        ...                                             # the members of Reader
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Protocol, runtime_checkable

from ..utils.conventions import DEFAULT_SEQUENCE_LENGTH
from ..utils.errors import UserError
from ..utils.settings import templates_dir
from ..utils.source_scan import look_up, registered_modules

if TYPE_CHECKING:
    import numpy as np

    from .normalization import Normalization

#: the ways postprocessing evaluates a dataset (a reader's :attr:`Reader.evaluation`)
EVALUATIONS = {
    "gridded": "fields on a lat/lon grid with valid times (lat, lon set; t_start = YYYYMMDDHH of frame 0): "
               "forecast files per window, latitude-weighted scores, persistence of the previous day, climatology "
               "(ACC), maps",
    "sequences": "independent sequences without coordinates (lat, lon None; t_start = the sequence index): "
                 "scores per forecast frame against a copy-last-frame baseline, example sequences",
}

_REGISTRY: dict[str, type[Reader]] = {}


@runtime_checkable
class Reader(Protocol):
    """What training and postprocessing use of a dataset's reader; dataset classes subclass it (for the default
    members below) and are registered with :func:`register_dataset`.

    A reader is built on ONE data-split mode; the windows of a pass come in a fixed order for a given
    ``(seed, epoch)`` (shuffled in training, see :attr:`shuffled`).
    """

    #: the registered name (set by :func:`register_dataset`)
    name: ClassVar[str]
    #: how postprocessing evaluates the dataset: a key of :data:`EVALUATIONS`
    evaluation: ClassVar[str]
    #: the data-split template, relative to ``templates/``
    split_template: ClassVar[str]

    #: data-split mode: train, val or test
    mode: str
    seed: int
    #: frames of a window (the hyper-parameter ``sequence_length``)
    sequence_length: int
    #: default of :meth:`batches`' ``batch_size`` (the hyper-parameter ``batch_size``)
    batch_size: int
    shuffle_on_val: bool
    #: channel names, in channel order
    variables: list[str]
    #: ``(H, W, C)`` of a frame
    frame_shape: tuple[int, ...]
    #: latitudes ``[H]`` and longitudes ``[W]`` in degrees, None for data without coordinates
    lat: np.ndarray | None
    lon: np.ndarray | None
    #: windows of one pass of the mode
    num_windows: int
    normalization: Normalization

    def __init__(self, input_dir, datasplit, mode: str, hparams: dict | None = None, seed: int = 1234,
                 normalization: Normalization | None = None, normalization_months: str = "train") -> None:
        """Open mode ``mode`` of the data split ``datasplit`` (path or dict) of the data in ``input_dir``.
        ``normalization``: the one to apply (a trained model's), else derived from the data's statistics as
        ``normalization_months`` says (``train``: of the train split; ``all``: of every month). UserError for
        bad input."""

    @classmethod
    def load_split(cls, datasplit, input_dir=None) -> dict[str, Any]:
        """The data split (JSON path or dict) validated; with ``input_dir`` also against the data there
        (what it names must exist). UserError naming the file and the value otherwise."""

    @classmethod
    def convert(cls, source, dest_dir=None, *, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                overwrite: bool = False, keep_netcdf: bool = False) -> Path:
        """Step 2: convert ``source`` into what the reader reads, in ``dest_dir`` (default: the dataset's);
        return ``dest_dir``. ``sequence_length``: window length that must fit into the data, for datasets with
        variable-length data; ``keep_netcdf``: keep the intermediate files of step 1, where there are any."""

    def input_files(self) -> list[Path]:
        """The data files this reader reads."""

    def description_files(self) -> list[Path]:
        """The JSON files that describe the data files (read by the input fingerprint where they exist)."""

    def batches(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False,
                skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """One pass from batch ``skip`` on: ``{"images": float32 [B, T, H, W, C] normalised, "t_start": int64
        [B]}``; an ``images`` array may be reused once the caller releases it."""

    def make_dataset(self, batch_size: int | None = None, epoch: int = 0, drop_remainder: bool = False):
        """The batches of :meth:`batches` as a ``tf.data.Dataset``."""

    @property
    def shuffled(self) -> bool:
        """Whether a pass is shuffled: always in training, in validation with the hparam ``shuffle_on_val``."""
        return self.mode == "train" or (self.mode == "val" and self.shuffle_on_val)

    def resolve_batch_size(self, batch_size: int | None) -> int:
        """``batch_size``, or the reader's default when None; UserError unless positive."""
        batch_size = self.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size}: expected a positive integer")
        return batch_size

    @classmethod
    def split_template_path(cls) -> Path:
        """The data-split template of the dataset (``templates/<split_template>``)."""
        return templates_dir() / cls.split_template


def register_dataset(name: str):
    """Class decorator: register a :class:`Reader` class as dataset ``name`` (also its :attr:`Reader.name`)."""

    def decorator(cls):
        if cls.evaluation not in EVALUATIONS:
            raise ValueError(f"dataset {name}: evaluation {cls.evaluation!r} is not one of {', '.join(EVALUATIONS)}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def dataset_modules() -> dict[str, str]:
    """``{dataset name: module name}`` of every dataset of the ``datasets`` package, found by reading (not
    importing) its modules."""
    from . import __path__ as package_path

    return registered_modules(package_path, __package__, "register_dataset")


def known_datasets() -> list[str]:
    """The names of every dataset (no dataset module is imported)."""
    return sorted(dataset_modules())


def registered_datasets() -> dict[str, type[Reader]]:
    """``{name: class}`` of the datasets registered so far, i.e. whose module is imported (:func:`known_datasets`
    lists all of them)."""
    return dict(_REGISTRY)


def get_dataset_class(name: str) -> type[Reader]:
    """The reader class of dataset ``name`` (its module imported on demand); UserError for an unknown name."""
    return look_up(_REGISTRY, name, dataset_modules, "dataset")
