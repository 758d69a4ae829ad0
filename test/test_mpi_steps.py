"""MPI with 3 ranks over an uneven number of months (4) and over fewer months than ranks (2): every file of
extraction, step 1 and step 2 is byte-identical to the one-rank result (logs and provenance records excepted)."""
import json

import pytest
from fixtures.archive import TINY_GRID, TINY_YEAR
from fixtures.common import mpiexec
from fixtures.preprocessed import STEP1_MODULE, make_step1_experiment, write_extracted_archive

from video_prediction_tools.data_extraction.synthetic import generate_archive
from video_prediction_tools.data_preprocess import step2

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

RANKS = 3
FOUR_MONTHS = (1, 2, 3, 4)


def month_files(directory, pattern):
    """``{relative path: bytes}`` of the files matching ``pattern`` under ``directory``."""
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.glob(pattern))}


def assert_same_bytes(one, many, expected_count):
    assert list(one) == list(many) and len(one) == expected_count, (list(one), list(many))
    for name in one:
        assert one[name] == many[name], name


def test_extraction_three_ranks_identical_to_one(tmp_path):
    grib = tmp_path / "grib"
    generate_archive(grib, [TINY_YEAR], FOUR_MONTHS, TINY_GRID, seed=3, days=1)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"surface": ["2t", "tcc"], "multi": {"t": {"pl": 85000}}}))
    module = "video_prediction_tools.main_scripts.main_data_extraction"
    outputs = {}
    for ranks, months in ((1, FOUR_MONTHS), (RANKS, FOUR_MONTHS), (RANKS, (1, 2))):
        target = tmp_path / f"n{ranks}_m{len(months)}"
        result = mpiexec(ranks, module, "--source_dir", grib, "--target_dir", target, "--year", TINY_YEAR,
                         "--months", *months, "--varslist_path", mapping)
        assert result.returncode == 0, result.stderr
        outputs[ranks, len(months)] = month_files(target, "*/*/era5_*.nc")
    assert_same_bytes(outputs[1, 4], outputs[RANKS, 4], 4)
    # more ranks than months: the months done are identical to those of the one-rank run
    assert_same_bytes({name: outputs[1, 4][name] for name in outputs[RANKS, 2]}, outputs[RANKS, 2], 2)


def test_step1_three_ranks_identical_to_one(tmp_path):
    source = write_extracted_archive(tmp_path / "ExtractedData", [2017], FOUR_MONTHS, days=1)
    outputs = {}
    for ranks, months in ((1, FOUR_MONTHS), (RANKS, FOUR_MONTHS), (1, (1, 2)), (RANKS, (1, 2))):
        destination = tmp_path / f"n{ranks}_m{len(months)}"
        result = mpiexec(ranks, STEP1_MODULE, "--source_dir", source, "--destination_dir", destination,
                         "--years", 2017, "--months", *months, "--vars", "2t", "tcc", "2t",
                         "--sw_corner", 42.0, 3.0, "--nyx", 4, 5)
        assert result.returncode == 0, result.stderr
        [expdir] = destination.iterdir()
        files = month_files(expdir, "2017/*")
        files = {name: data for name, data in files.items() if not name.endswith((".provenance.json", ".log"))}
        metadata = json.loads((expdir / "metadata.json").read_text())
        files["metadata.json"] = json.dumps(dict(metadata, expdir=None)).encode()
        outputs[ranks, len(months)] = files
    assert_same_bytes(outputs[1, 4], outputs[RANKS, 4], 2 * 4 + 1)
    assert_same_bytes(outputs[1, 2], outputs[RANKS, 2], 2 * 2 + 1)


@pytest.mark.parametrize("months", [{(2017, 1): 30, (2017, 2): 20, (2017, 3): 26, (2018, 1): 24},
                                    {(2017, 1): 30, (2017, 2): 20}], ids=["uneven", "more_ranks_than_months"])
def test_step2_three_ranks_identical_to_one(tmp_path, months):
    outputs = []
    for ranks in (1, RANKS):
        exp_dir = tmp_path / f"n{ranks}" / "EXP"
        make_step1_experiment(exp_dir, months)
        if ranks == 1:
            step2.run_step2(exp_dir)
        else:
            result = mpiexec(ranks, "video_prediction_tools.main_scripts.main_preprocess_data_step2",
                             "--source_dir", exp_dir)
            assert result.returncode == 0, result.stderr
        files = month_files(exp_dir, "tfrecords/*")
        files = {name: data for name, data in files.items()
                 if not name.endswith(".provenance.json") and ".log" not in name}
        files["statistics.json"] = (exp_dir / "statistics.json").read_bytes()
        outputs.append(files)
    assert_same_bytes(outputs[0], outputs[1], len(months) + 2)
