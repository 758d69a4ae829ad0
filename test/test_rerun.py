"""A CLI killed with SIGKILL at several points, then rerun, leaves the same bytes as an uninterrupted run.

Each test runs the step once uninterrupted and keeps its output bytes, then, for each kill point, deletes the
output, starts the CLI again, SIGKILLs it as soon as a file matching the point's pattern appears (a temporary of the
first month = mid-write, the first month's finished file, a temporary of the next month = mid-way), reruns it to
the end and compares every output file byte for byte (logs and provenance records, which hold times, excepted).
"""
import fnmatch
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from fixtures.archive import TINY_YEAR
from fixtures.preprocessed import STEP1_MODULE, make_step1_experiment, write_extracted_archive

pytestmark = pytest.mark.slow

KILL_TIMEOUT_S = 300


def command(module, *args):
    return [sys.executable, "-m", module, *map(str, args)]


def kill_when_file_appears(cmd, directory, pattern):
    """Start ``cmd``; SIGKILL it as soon as a file whose name matches ``pattern`` exists under ``directory``."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        if directory.exists() and any(fnmatch.fnmatch(path.name, pattern) for path in directory.rglob("*")):
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"{pattern} did not appear before the run ended"


def output_bytes(directory):
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*"))
            if path.is_file() and ".log" not in path.name and not path.name.endswith(".provenance.json")}


def check_kill_and_rerun(cmd, output_dir, kill_patterns, prepare=lambda: None):
    """Uninterrupted run vs. killed-then-rerun runs at each pattern: identical bytes, no temporaries left."""
    prepare()
    subprocess.run(cmd, check=True, capture_output=True)
    reference = output_bytes(output_dir)
    assert reference
    for pattern in kill_patterns:
        shutil.rmtree(output_dir)
        prepare()
        kill_when_file_appears(cmd, output_dir, pattern)
        rerun = subprocess.run(cmd, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        result = output_bytes(output_dir)
        assert list(result) == list(reference), pattern
        for name in reference:
            assert result[name] == reference[name], (pattern, name)
        assert not [path for path in output_dir.rglob("*") if ".tmp-" in path.name], pattern


def test_extraction_killed_and_rerun_gives_identical_files(tmp_path, tiny_grib_archive, tiny_extracted_archive):
    target = tmp_path / "ExtractedData"
    cmd = command("video_prediction_tools.main_scripts.main_data_extraction", "--source_dir", tiny_grib_archive,
                  "--target_dir", target, "--year", TINY_YEAR, "--varslist_path",
                  tiny_extracted_archive.parent / "varmapping.json")
    check_kill_and_rerun(cmd, target, [".era5_2017_01.nc.tmp-*", "era5_2017_01.nc", ".era5_2017_02.nc.tmp-*"])


def test_step1_killed_and_rerun_gives_identical_files(tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], [1, 2, 3], days=2)
    destination = tmp_path / "PreprocessedData"
    cmd = command(STEP1_MODULE, "--source_dir", source, "--destination_dir", destination, "--years", 2017,
                  "--vars", "2t", "tcc", "--sw_corner", 42.0, 3.0, "--nyx", 4, 5)
    check_kill_and_rerun(cmd, destination, [".X_01.nc.tmp-*", "stat_01.json", ".X_02.nc.tmp-*"])


def test_step2_killed_and_rerun_gives_identical_files(tmp_path):
    exp_dir = tmp_path / "EXP"
    # whole months: writing one takes long enough for its temporary to be seen
    months = {(2017, 1): 744, (2017, 2): 672, (2017, 3): 744}

    def fresh_step1_output():
        shutil.rmtree(exp_dir, ignore_errors=True)
        make_step1_experiment(exp_dir, months)

    cmd = command("video_prediction_tools.main_scripts.main_preprocess_data_step2", "--source_dir", exp_dir)
    check_kill_and_rerun(cmd, exp_dir, [".sequence_Y_2017_M_01.tfrecords.tmp-*", "sequence_Y_2017_M_01.tfrecords",
                                        "sequence_Y_2017_M_02.provenance.json"], prepare=fresh_step1_output)
    info = json.loads((exp_dir / "tfrecords" / "dataset_info.json").read_text())
    assert sorted(info["months"]) == ["2017-01", "2017-02", "2017-03"]
