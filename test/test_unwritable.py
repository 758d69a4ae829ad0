"""An output directory that cannot be written ends every CLI with one ``ERROR:`` line naming it, exit status 2.

Tests run as root, for whom permission bits do not stop writes; the CLI subprocess therefore starts with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its capability bounding set, so that a directory of mode 0555
is read-only to it, as to any user (it stays root: it still reads the root-owned test files and Python).
"""
import ctypes
import json
import os
import subprocess
import sys

import pytest
from fixtures.archive import TINY_YEAR
from fixtures.common import assert_user_error
from fixtures.preprocessed import make_step1_experiment, write_extracted_archive
from fixtures.trained import TINY_CONVLSTM_HPARAMS, TRAIN_MODULE

from video_prediction_tools.utils.errors import USER_ERROR_EXIT_CODE, UserError, file_system_error, run_cli

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_permission_override():
    """preexec_fn: make permission bits bind this process even when it runs as root."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_unprivileged(module, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_drop_file_permission_override)


@pytest.fixture
def read_only_dir(tmp_path):
    directory = tmp_path / "read_only"
    directory.mkdir()
    directory.chmod(0o555)
    check = subprocess.run([sys.executable, "-c", f"open({str(directory / 'x')!r}, 'w')"], capture_output=True,
                           preexec_fn=_drop_file_permission_override)
    assert check.returncode != 0 and b"PermissionError" in check.stderr  # the directory really is read-only
    yield directory
    directory.chmod(0o755)


def assert_nothing_created(directory):
    assert list(directory.iterdir()) == []


def test_run_cli_maps_file_system_errors_and_keeps_bugs(tmp_path, capsys):
    def unwritable(argv):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / "x.log"))

    with pytest.raises(SystemExit) as exit_info:
        run_cli(unwritable)
    assert exit_info.value.code == USER_ERROR_EXIT_CODE
    assert capsys.readouterr().err == (f"ERROR: cannot create or write {tmp_path}/out/x.log: Permission denied "
                                       f"(check that the directory {tmp_path}/out exists, is a directory and is "
                                       "writable)\n")
    assert isinstance(file_system_error(NotADirectoryError(20, "Not a directory", "a/b")), UserError)
    assert file_system_error(FileNotFoundError(2, "No such file", "a/b")) is None

    def bug(argv):
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        run_cli(bug)


def test_extraction_into_a_read_only_directory(read_only_dir, tiny_grib_archive, repo_root):
    args = ["--source_dir", tiny_grib_archive, "--year", TINY_YEAR, "--months", "1",
            "--varslist_path", repo_root / "templates/data_extraction/era5_varmapping_template.json"]
    module = "video_prediction_tools.main_scripts.main_data_extraction"
    result = run_unprivileged(module, *args, "--target_dir", read_only_dir / "ExtractedData")
    assert_user_error(result, f"directory {read_only_dir} is not writable")
    assert_nothing_created(read_only_dir)
    # the target exists and is writable, but its year directory is not: caught where the log file is created
    read_only_dir.chmod(0o755)
    (read_only_dir / f"{TINY_YEAR}").mkdir(mode=0o555)
    result = run_unprivileged(module, *args, "--target_dir", read_only_dir)
    assert_user_error(result, "Permission denied", f"directory {read_only_dir / str(TINY_YEAR)} exists")
    # a file where the target directory should be
    (read_only_dir / "file").write_text("")
    result = run_unprivileged(module, *args, "--target_dir", read_only_dir / "file")
    assert_user_error(result, f"{read_only_dir / 'file'} is not a directory")


def test_step1_into_a_read_only_directory(read_only_dir, tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1], days=1)
    result = run_unprivileged("video_prediction_tools.main_scripts.main_preprocess_data_step1",
                              "--source_dir", source, "--destination_dir", read_only_dir / "PreprocessedData",
                              "--years", 2017, "--vars", "2t", "--sw_corner", 42.0, 3.0, "--nyx", 3, 4)
    assert_user_error(result, f"directory {read_only_dir} is not writable")
    assert_nothing_created(read_only_dir)


def test_step2_into_a_read_only_directory(read_only_dir, tmp_path):
    exp_dir = tmp_path / "EXP"
    make_step1_experiment(exp_dir, {(2017, 1): 24})
    result = run_unprivileged("video_prediction_tools.main_scripts.main_preprocess_data_step2",
                              "--source_dir", exp_dir, "--dest_dir", read_only_dir / "tfrecords")
    assert_user_error(result, f"directory {read_only_dir} is not writable")
    assert_nothing_created(read_only_dir)
    assert (exp_dir / "2017" / "X_01.nc").exists()


def tree_state(directory):
    """Every path under ``directory`` with its mode, size and modification time."""
    return {path: (info.st_mode, info.st_size, info.st_mtime_ns)
            for path in [directory, *sorted(directory.rglob("*"))] for info in [path.stat()]}


def test_step2_reads_a_read_only_step1_directory_with_keep_netcdf(tmp_path):
    exp_dir = tmp_path / "EXP"
    make_step1_experiment(exp_dir, {(2017, 1): 24, (2017, 2): 24})
    read_only = [exp_dir, *(path for path in exp_dir.rglob("*") if path.is_dir())]
    for directory in read_only:
        directory.chmod(0o555)
    before = tree_state(exp_dir)
    try:
        module = "video_prediction_tools.main_scripts.main_preprocess_data_step2"
        dest_dir = tmp_path / "elsewhere" / "tfrecords"
        result = run_unprivileged(module, "--source_dir", exp_dir, "--dest_dir", dest_dir, "--keep_netcdf",
                                  "--sequence_length", 12)
        assert result.returncode == 0, result.stderr
        assert tree_state(exp_dir) == before   # nothing created, changed or deleted in the step-1 directory
        statistics = json.loads((dest_dir / "statistics.json").read_text())
        assert statistics["common_stat"] == {"nhours": 48, "months": ["2017-01", "2017-02"]}
        assert sorted(path.name for path in dest_dir.glob("*.tfrecords")) == [
            "sequence_Y_2017_M_01.tfrecords", "sequence_Y_2017_M_02.tfrecords"]
        # without --keep_netcdf step 2 must delete the netCDF files: refused before anything is written
        result = run_unprivileged(module, "--source_dir", exp_dir, "--dest_dir", tmp_path / "other")
        assert_user_error(result, f"--source_dir {exp_dir}: directory {exp_dir} is not writable")
        assert not (tmp_path / "other").exists() and tree_state(exp_dir) == before
    finally:
        for directory in read_only:
            directory.chmod(0o755)


def test_training_into_a_read_only_directory(read_only_dir, tmp_path, tiny_tfrecords):
    hparams = tmp_path / "hparams.json"
    hparams.write_text(json.dumps(TINY_CONVLSTM_HPARAMS))
    split = tmp_path / "split.json"
    split.write_text(json.dumps(tiny_tfrecords.datasplit))
    result = run_unprivileged(TRAIN_MODULE, "--input_dir", tiny_tfrecords.exp_dir, "--output_dir",
                              read_only_dir / "run", "--datasplit_dict", split, "--model", "convLSTM",
                              "--model_hparams_dict", hparams)
    assert_user_error(result, "Permission denied", str(read_only_dir))
    assert_nothing_created(read_only_dir)


@pytest.mark.slow  # trains the tiny run (tiny_trained_run), which no fast test needs
def test_postprocessing_into_a_read_only_directory(read_only_dir, tiny_trained_run):
    result = run_unprivileged("video_prediction_tools.main_scripts.main_visualize_postprocess",
                              "--checkpoint", tiny_trained_run, "--results_dir", read_only_dir / "results",
                              "--evaluation_metrics", "mse", "--lquick_evaluation", "--block_length", 4)
    assert_user_error(result, "Permission denied", str(read_only_dir))
    assert_nothing_created(read_only_dir)
