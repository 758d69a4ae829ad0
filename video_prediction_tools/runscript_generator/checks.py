"""Validators of the runscript generator: each parses one typed answer and returns its value, or raises
:class:`UserError` with a message that says what was expected (the wizard shows it and asks again).

Checks against the data of earlier steps look at the real files: GRIB files per year and month, extracted
netCDF files, their variables and grid, TFRecord files, run directories and checkpoints.

Example::

    from video_prediction_tools.runscript_generator import checks
    checks.parse_years("2017, 2018-2019")         # [2017, 2018, 2019]
    checks.parse_months("1-3,12")                  # [1, 2, 3, 12]
    checks.parse_pair("38.4, 0", "SW corner", float)  # (38.4, 0.0)
"""
from __future__ import annotations

import functools
import json
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Iterable

from ..postprocess.file_names import EVALUATION_FILE
from ..utils.errors import UserError
from ..utils.ranges import parse_int_ranges

FIRST_ERA5_YEAR = 1940
#: the last year a year question accepts
LAST_YEAR = 2100
GRIB_SUFFIXES = (".grb", ".grib", ".grb2", ".grib2")
#: SLURM values written into ``#SBATCH`` lines (not shell-parsed, so restricted to harmless characters)
_SLURM_WORD = re.compile(r"^[A-Za-z0-9_.,:=/@+%-]*$")
_SLURM_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")


def _split(text: str) -> list[str]:
    return [item for item in re.split(r"[,\s]+", str(text).strip()) if item]


def parse_years(text: str) -> list[int]:
    """Comma- or space-separated years or ranges, ERA5 years only (1940 or later)."""
    return parse_int_ranges(text, "years", FIRST_ERA5_YEAR, LAST_YEAR)


def parse_months(text: str) -> list[int]:
    return parse_int_ranges(text, "months", 1, 12)


def format_numbers(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in values)


def parse_int(text: str, what: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"{what} must be an integer, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise UserError(f"{what} must be {bounds}, got {value}")
    return value


def parse_pair(text: str, what: str, convert: Callable[[str], Any]) -> tuple[Any, Any]:
    """Two values separated by a comma and/or blanks (``2.5, 3``, ``2.5,3``, ``2.5 3``), each converted."""
    items = _split(text)
    if len(items) != 2:
        raise UserError(f"{what}: expected two values separated by a comma or blank, got {text!r}")
    try:
        return convert(items[0]), convert(items[1])
    except ValueError:
        raise UserError(f"{what}: {text!r} are not two {'whole ' if convert is int else ''}numbers") from None


def parse_identifier(text: str, what: str = "experiment id") -> str:
    """A typed id used in file and directory names: not empty, no '/', blanks or control characters, no leading
    '-' or '.' (a name with blanks breaks every unquoted use of the files named after it)."""
    value = str(text).strip()
    if not value:
        raise UserError(f"{what} must not be empty")
    if "/" in value or any(ord(ch) < 32 or ch.isspace() for ch in value) or value.startswith(("-", ".")):
        raise UserError(f"{what} {value!r} must not contain '/', blanks or control characters nor start with '-' "
                        f"or '.'")
    return value


#: a runscript file name: no path, blanks, quotes or characters sbatch reads specially in its log names
_RUNSCRIPT_NAME = re.compile(r"[^\s/\"'\\%$`.-][^\s/\"'\\%$`]*\.sh")


def _taken(directory: Path, name: str) -> bool:
    return (directory / name).exists() or (directory / f"{name}.answers.yaml").exists()


def new_runscript_name(text: str, directory: Path) -> str:
    """A runscript file name not taken yet in ``directory`` (nor its answers file)."""
    name = str(text).strip()
    if not _RUNSCRIPT_NAME.fullmatch(name):
        raise UserError(f"runscript name {name!r}: expected a file name ending in .sh, without '/', blanks, quotes, "
                        f"'%', '$' or '`', not starting with '-' or '.'")
    if _taken(directory, name):
        raise UserError(f"{directory / name} exists already; choose another name")
    return name


def free_runscript_name(runscript: Path) -> str:
    """``<stem>_2.sh``, or the first of ``_3``, ``_4``, ... not taken, for an existing ``runscript``."""
    number = 2
    while _taken(runscript.parent, f"{runscript.stem}_{number}.sh"):
        number += 1
    return f"{runscript.stem}_{number}.sh"


# ----------------------------------------------------------------------------------------------- files and data
def existing_dir(text: str, what: str) -> Path:
    path = Path(str(text).strip()).expanduser()
    if not str(text).strip():
        raise UserError(f"{what}: no directory given")
    if not path.is_dir():
        raise UserError(f"{what} {path} is not an existing directory")
    return path.resolve()


def grib_files(month_dir: Path) -> list[Path]:
    if not month_dir.is_dir():
        return []
    return sorted(p for p in month_dir.iterdir() if p.is_file() and p.suffix.lower() in GRIB_SUFFIXES)


def era5_archive(text: str, exclude: Path | None = None) -> Path:
    """A directory holding ERA5 data in any layout the extraction reads (GRIB 1/2 or CDS netCDF files of any
    period and name, or the original's ``<YYYY>/<MM>/`` hourly files); ``exclude``: the extraction's target."""
    root = existing_dir(text, "ERA5 directory")
    if not archive_survey(root, exclude).months():
        raise UserError(f"ERA5 directory {root} holds no GRIB or netCDF data files (any layout: files of any period "
                        f"anywhere under it, or <YYYY>/<MM>/*.grb)")
    return root


@functools.lru_cache(maxsize=8)
def archive_survey(root: Path, exclude: Path | None = None):
    """The extraction's own :func:`..data_extraction.archive.survey` of ``root`` (headers read once per generator
    run, whichever question asks)."""
    from ..data_extraction.archive import survey

    return survey(root, exclude=exclude)


def archive_grid(archive, year: int, month: int) -> dict[str, Any]:
    """The grid (eccodes grid keys) of the first field of a month of an
    :class:`..data_extraction.archive.Archive`: the grid the extraction will write. UserError naming the file if it
    is not readable."""
    from ..data_extraction.archive import index_files
    from ..data_extraction.fields import GRID_KEYS

    first = archive.files_of_month(year, month)[0]
    messages = archive.period_messages.get(first) or index_files([first])
    return dict(zip(GRID_KEYS, messages[0].grid))


def grid_of_grib(keys: dict[str, Any]):
    """``(lat, lon)`` numpy arrays of the data extracted from GRIB messages with these grid keys."""
    from ..data_extraction.grib import Grid

    grid = Grid.from_keys(keys)
    return grid.latitudes, grid.longitudes


def missing_months(root: Path, years: list[int], months: list[int], has_data: Callable[[Path], bool]) -> list[str]:
    return [f"{year}-{month:02d}" for year in years for month in months
            if not has_data(root / f"{year:04d}" / f"{month:02d}")]


def require_months(root: Path, years: list[int], months: list[int], has_data: Callable[[Path], bool],
                   what: str) -> None:
    missing = missing_months(root, years, months, has_data)
    if missing:
        raise UserError(f"{root} has no {what} for {', '.join(missing)}")


def netcdf_files(month_dir: Path) -> list[Path]:
    return sorted(month_dir.glob("*.nc")) if month_dir.is_dir() else []


def months_with_data(root: Path, years: list[int], has_data: Callable[[Path], bool]) -> list[int]:
    """Months that hold data in EVERY one of ``years`` (``<root>/<YYYY>/<MM>``): the months a step can take."""
    return [month for month in range(1, 13)
            if years and all(has_data(root / f"{year:04d}" / f"{month:02d}") for year in years)]


def require_years(years: list[int], found: list[int], root: Path, what: str) -> list[int]:
    """``years`` all among ``found`` (the years of ``root`` holding ``what``), else a UserError naming them."""
    missing = [str(year) for year in years if year not in found]
    if missing:
        raise UserError(f"no {what} for year(s) {', '.join(missing)} in {root} "
                        f"(years found: {format_numbers(found) or 'none'})")
    return years


def years_with_data(root: Path, has_data: Callable[[Path], bool]) -> list[int]:
    """Years ``<root>/<YYYY>`` with at least one month folder that holds data."""
    if not root.is_dir():
        return []
    return sorted(int(year.name) for year in root.glob("[0-9][0-9][0-9][0-9]")
                  if any(has_data(month) for month in year.glob("[0-9][0-9]")))


def longest_month_hours(experiment_dir: Path) -> int | None:
    """Hours (time steps) of the longest month step 1 wrote in an experiment (``<YYYY>/X_<MM>.nc``, one per
    month): no window of step 2 can be longer. None when no month is there yet (chain mode)."""
    import netCDF4

    hours = []
    for path in experiment_dir.glob("[0-9][0-9][0-9][0-9]/X_[0-9][0-9].nc"):
        try:
            with netCDF4.Dataset(path) as dataset:
                hours.append(len(dataset.dimensions["time"]))
        except (OSError, KeyError):  # a month step 1 is still writing: step 2 will refuse it anyway
            continue
    return max(hours, default=None)


# netCDF files are read with netCDF4 (not xarray, whose import alone takes seconds): the generator answers at once
def dataset_variables(path: Path) -> list[str]:
    """Data variables of one extracted netCDF file (only those with lat and lon dimensions)."""
    import netCDF4

    with netCDF4.Dataset(path) as dataset:
        return [name for name, var in dataset.variables.items()
                if name not in dataset.dimensions and {"lat", "lon"} <= set(var.dimensions)]


def grid_of(path: Path):
    """``(lat, lon)`` numpy arrays of an extracted netCDF file."""
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path) as dataset:
        if "lat" not in dataset.variables or "lon" not in dataset.variables:
            raise UserError(f"{path} has no lat/lon coordinates")
        return (np.asarray(dataset["lat"][:], dtype=float), np.asarray(dataset["lon"][:], dtype=float))


def parse_variables(text: str, available_per_file: dict[Path, list[str]]) -> list[str]:
    """One or more distinct variable names (order kept: the channel order) present in EVERY given file."""
    names = [name.lower() for name in _split(text)]
    if not names:
        raise UserError("give at least one variable name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"variable(s) {', '.join(repeated)} given more than once; each channel must be a "
                        f"different variable")
    for path, available in available_per_file.items():
        missing = [name for name in names if name not in available]
        if missing:
            raise UserError(f"variable(s) {', '.join(missing)} not in {path} (it has: {', '.join(available)})")
    return names


def find_domain(lat, lon, sw_corner: tuple[float, float], nyx: tuple[int, int]):
    """The preprocessing domain for this grid (step 1's own rule: nearest grid point, wrap on cyclic grids);
    a box that leaves the grid or ny, nx < 2 is a UserError."""
    from ..data_preprocess.domain import find_domain as step1_find_domain

    return step1_find_domain(lat, lon, sw_corner=sw_corner, nyx=nyx)


def tfrecord_months(tfrecords_dir: Path) -> set[tuple[int, int]]:
    """(year, month) of the month files written by preprocessing step 2."""
    from ..data_preprocess.records import tfrecord_months as step2_months

    return step2_months(tfrecords_dir)


def checkpoints(run_dir: Path) -> list[str]:
    """Names of the complete ``checkpoint_<step>`` directories of a training run (training's own completeness
    rule: a directory missing a file that resuming or evaluation needs is not offered), by step."""
    from ..training.checkpoints import complete_checkpoints

    return [path.name for path in complete_checkpoints(run_dir)]


def known_metrics() -> tuple[str, ...]:
    """The metrics main_visualize_postprocess.py computes (every registered metric)."""
    from ..postprocess.metrics import METRICS

    return tuple(METRICS)


def evaluated_metrics(results_dir: Path) -> tuple[list[str] | None, bool]:
    """The bootstrapped metrics of a postprocessed run (its ``evaluation_metrics.nc`` variables
    ``<variable>_<model>_<metric>_bootstrapped``; None when the file does not say which model and variable it
    holds) and whether it has persistence scores."""
    import netCDF4

    with netCDF4.Dataset(results_dir / EVALUATION_FILE) as dataset:
        names = list(dataset.variables)
        attributes = {name: getattr(dataset, name, None) for name in ("model", "variable")}
    persistence = any("_persistence_" in name for name in names)
    if not all(attributes.values()):
        return None, persistence
    prefix, suffix = f"{attributes['variable']}_{attributes['model']}_", "_bootstrapped"
    metrics = [name[len(prefix):-len(suffix)] for name in names if name.startswith(prefix) and name.endswith(suffix)]
    return [name for name in known_metrics() if name in metrics], persistence


def evaluated_windows(tfrecords_dir: Path, ranges: list, sequence_length: int) -> int | None:
    """Windows of ``sequence_length`` hours inside the hour ``ranges`` of a split's mode (as the data split's
    ``load_split`` gives them) that the step-2 files hold: the reader's windows
    (:func:`..datasets.datasplit.window_rows` on each month's gap-free blocks from step 2's ``dataset_info.json``);
    None if that file is missing."""
    from ..data_preprocess.records import DATASET_INFO
    from ..datasets.datasplit import window_rows
    from ..data_preprocess.records import block_hours

    try:
        info = json.loads((tfrecords_dir / DATASET_INFO).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    entries = info.get("months", {}) if isinstance(info, dict) else {}
    return sum(len(window_rows(block_hours(entry.get("blocks", [])), ranges, sequence_length))
               for entry in entries.values())


def parse_metrics(text: str) -> list[str]:
    names = [name.lower() for name in _split(text)]
    unknown = [name for name in names if name not in known_metrics()]
    if unknown or not names:
        raise UserError(f"unknown evaluation metric(s) {', '.join(unknown) or '(none given)'}; "
                        f"known: {', '.join(known_metrics())}")
    return names


def climatology_file(text: str) -> Path | None:
    """Empty → no climatology; otherwise a climatology file that postprocessing reads (AMBS or CDO layout)."""
    if not str(text).strip():
        return None
    path = Path(str(text).strip()).expanduser()
    if path.is_dir():
        raise UserError(f"climatology file {path} is a directory; give the netCDF file in it")
    from ..data_extraction.climatology import check_climatology_file

    check_climatology_file(path)
    return path.resolve()


# ----------------------------------------------------------------------------------------------- JSON contents
def parse_json_text(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{what} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None


def varmapping(content: Any, path: Path, archive_root: Path | None = None, exclude: Path | None = None) -> None:
    """Validate a variable mapping with the extraction's own validator and, given the archive's root, check that
    its files hold every field it names (shortNames, as :meth:`..data_extraction.archive.Archive.variables` lists
    them)."""
    from ..data_extraction.varmapping import load_varmapping

    mapping = load_varmapping(path)
    if archive_root is None:
        return
    held = archive_survey(archive_root, exclude).variables()
    missing = sorted({*mapping.surface, *(item.short_name for item in mapping.levels)} - set(held))
    if missing:
        raise UserError(f"field(s) {', '.join(missing)} are not in the GRIB files (or netCDF files) of the archive "
                        f"{archive_root} (they hold: {', '.join(held) or 'nothing'})")


def hparams(content: Any, model: str, template: Path) -> dict[str, Any]:
    """Validate hyper-parameters with training's own rules (keys, types, ranges, ``context_frames`` <
    ``sequence_length``) and return them completed by the defaults. When every given key is in the model's JSON
    ``template``, the template serves as the defaults; a key the template does not list is checked against the
    model's own defaults in a child process (:func:`_resolve_apart`), so that the wizard never imports a model
    module: TensorFlow takes seconds to start and prints its start-up lines into the dialogue."""
    from ..models.registry import resolve_hparams

    try:
        listed = json.loads(template.read_text())
    except (OSError, json.JSONDecodeError):  # no usable template: the model's own defaults decide
        listed = None
    if isinstance(listed, dict) and isinstance(content, dict) and set(content) <= set(listed):
        return resolve_hparams(model, content, source="model_hparams.json", defaults=listed)
    return _resolve_apart(model, content)


#: run by :func:`_resolve_apart`: the model's hyper-parameters (JSON on stdin) resolved, as JSON on stdout
_RESOLVE_CODE = """
import json, sys
from video_prediction_tools.models.registry import resolve_hparams
from video_prediction_tools.utils.errors import UserError
try:
    print(json.dumps(resolve_hparams(sys.argv[1], json.load(sys.stdin), source="model_hparams.json")))
except UserError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""


def _resolve_apart(model: str, content: Any) -> dict[str, Any]:
    """:func:`..models.registry.resolve_hparams` against the model's own defaults, in a child Python (the model
    module and TensorFlow are imported there, their start-up lines dropped); its UserError is raised here."""
    import os
    import subprocess
    import sys

    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-c", _RESOLVE_CODE, model], input=json.dumps(content), text=True,
                          capture_output=True, env=env, check=False)
    if done.returncode == 3:
        raise UserError(done.stderr.strip().splitlines()[-1])
    if done.returncode != 0:
        raise RuntimeError(f"checking the hyper-parameters of {model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


#: the most training steps (``max_epochs`` x steps per epoch) the wizard accepts: more is a typo, not a plan
MAX_TRAINING_STEPS = 10**7


def longest_window(windows_of: Callable[[int], int], most: int = 24 * 31) -> int:
    """The longest window (in frames) of which ``windows_of`` counts at least one (0 if none of 1 frame): a
    window that fits still fits when shorter, so a bisection finds it."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if windows_of(middle) > 0 else (low, middle - 1)
    return low


def hparams_fit_data(hparams: dict[str, Any], windows_of: Callable[[int], int] | None) -> None:
    """Hyper-parameters checked against the training data: ``sequence_length`` fits into a gap-free block of the
    training split, ``batch_size`` is at most its number of windows (training takes ``windows // batch_size``
    steps an epoch), and ``max_epochs`` times those steps is at most :data:`MAX_TRAINING_STEPS`.
    ``windows_of(length)``: the training windows of ``length`` frames; None while the data are not there yet
    (chain mode), when only ``max_epochs`` is bounded."""
    length, batch_size, epochs = (hparams.get(key) for key in ("sequence_length", "batch_size", "max_epochs"))
    steps_per_epoch = 1
    if windows_of is not None and isinstance(length, int):
        windows = windows_of(length)
        if windows == 0:
            raise UserError(f"hyper-parameter sequence_length {length}: no window that long fits into a gap-free "
                            f"block of the training split (the longest holds {longest_window(windows_of)} frames)")
        if isinstance(batch_size, int) and batch_size > windows:
            raise UserError(f"hyper-parameter batch_size {batch_size}: the training split holds {windows} windows "
                            f"of {length} frames, so at most {windows}")
        steps_per_epoch = windows // batch_size if isinstance(batch_size, int) else 1
    if isinstance(epochs, int) and epochs * steps_per_epoch > MAX_TRAINING_STEPS:
        raise UserError(f"hyper-parameter max_epochs {epochs}: {epochs} x {steps_per_epoch} steps an epoch exceeds "
                        f"{MAX_TRAINING_STEPS} training steps; at most {MAX_TRAINING_STEPS // steps_per_epoch} epochs")


# ----------------------------------------------------------------------------------------------- SLURM values
def slurm_word(value: Any, what: str) -> str:
    text = str(value).strip()
    if not _SLURM_WORD.match(text):
        raise UserError(f"SLURM {what} {text!r} may only hold letters, digits and _.,:=/@+%-")
    return text


def slurm_time(value: Any) -> str:
    """A SLURM time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (minutes and seconds < 60)."""
    text = str(value).strip()
    if not _SLURM_TIME.match(text) or any(int(part) > 59 for part in text.split("-")[-1].split(":")[1:]):
        raise UserError(f"SLURM time {text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS (minutes and seconds "
                        f"below 60)")
    return text


#: the values sbatch accepts for --mail-type (comma-separated)
SLURM_MAIL_TYPES = ("NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT",
                    "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")


def slurm_mail_type(value: Any) -> str:
    text = str(value).strip()
    unknown = [item for item in text.split(",") if item.strip().upper() not in SLURM_MAIL_TYPES]
    if not text or unknown:
        raise UserError(f"SLURM mail type {text!r}: expected one or more (comma-separated) of "
                        f"{', '.join(SLURM_MAIL_TYPES)}")
    return ",".join(item.strip().upper() for item in text.split(","))


def srun_options(value: Any) -> str:
    """Options passed to srun: shell words, each an option (``--mpi=pmi2``) or the value after one."""
    try:
        words = shlex.split(str(value))
    except ValueError as err:
        raise UserError(f"srun options {value!r}: {err}") from None
    if words and not words[0].startswith("-"):
        raise UserError(f"srun options {value!r}: expected options such as --mpi=pmi2 --cpu-bind=none "
                        f"(the first word must start with '-')")
    return " ".join(shlex.quote(word) for word in words)


def slurm_extra(value: Any) -> list[str]:
    """Extra ``#SBATCH`` options: a list (or ';'-separated text) of ``--option=value`` items."""
    items = value if isinstance(value, list) else [item for item in str(value).split(";")]
    lines = [str(item).strip() for item in items if str(item).strip()]
    for line in lines:
        if not re.fullmatch(r"--[A-Za-z][A-Za-z0-9-]*(=[A-Za-z0-9_.,:=/@+%-]+)?", line):
            raise UserError(f"extra SBATCH option {line!r}: expected --name or --name=value "
                            f"(value of letters, digits and _.,:=/@+%-)")
    return lines


def job_setup(value: Any) -> list[str]:
    """Shell lines run before the first ``srun`` of a SLURM job (``module load ...``): a list (or '; '-separated
    text), each one line that bash can parse and not a ``#SBATCH`` line (those belong to ``extra``)."""
    import subprocess

    items = value if isinstance(value, list) else str(value).split(";")
    lines = [str(item).strip() for item in items if str(item).strip()]
    for line in lines:
        if any(ord(ch) < 32 and ch != "\t" for ch in line) or line.startswith("#"):
            raise UserError(f"job set-up line {line!r}: expected one shell command such as 'module load CUDA' "
                            f"(no line breaks; #SBATCH options go into 'extra')")
    parsed = subprocess.run(["bash", "-n"], input="\n".join(lines) + "\n", text=True, capture_output=True,
                            check=False)
    if parsed.returncode != 0:
        raise UserError(f"job set-up lines {'; '.join(lines)!r}: bash cannot parse them: "
                        f"{' '.join(parsed.stderr.split())}")
    return lines


def sbatch_id(typed: str) -> str:
    """An id that becomes part of the ``#SBATCH --output`` log names (read unquoted by sbatch)."""
    if re.search(r"[\s\"'\\%$`]", typed):
        raise UserError(f"experiment id {typed!r}: with SLURM it names the job's log files, which sbatch cannot "
                        f"take with blanks, quotes, '%', '$' or '`'; use letters, digits, '_', '-' or '.'")
    return typed


def sbatch_path(path: Path) -> str:
    """A path written into ``#SBATCH --output``: sbatch reads it unquoted and expands '%' patterns."""
    text = str(path)
    if re.search(r"[\s\"'\\%$`]", text):
        raise UserError(f"SLURM log path {text} contains blanks, quotes, '%', '$' or '`', which sbatch cannot take; "
                        f"choose a runscript directory without them")
    return text
