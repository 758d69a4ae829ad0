"""A trained run whose data tree moved: postprocessing finds the step-2 data at the same place relative to the run,
or names the recorded path and ``--input_dir``, which points at the new place."""
import json
import logging
import shutil

import pytest
from fixtures.common import assert_user_error, run_module

from video_prediction_tools.training.checkpoints import OPTIONS_FILE, read_trained_run

POSTPROCESS_MODULE = "video_prediction_tools.main_scripts.main_visualize_postprocess"

pytestmark = pytest.mark.slow  # every test needs the tiny trained run


@pytest.fixture
def moved_base(tiny_trained_run, tiny_tfrecords, tmp_path):
    """A base directory holding the tiny run and its data, trained there (as its options.json records), then moved
    as a whole: returns (old base, new base, run directory and step-2 directory relative to the base)."""
    old, new = tmp_path / "old_base", tmp_path / "new_base"
    data = f"PreprocessedData/{tiny_tfrecords.exp_dir.name}"
    run = "Models/EXP/convLSTM/run"
    shutil.copytree(tiny_tfrecords.exp_dir, old / data)
    shutil.copytree(tiny_trained_run, old / run)
    options_file = old / run / OPTIONS_FILE
    options = json.loads(options_file.read_text())
    options_file.write_text(json.dumps({**options, "input_dir": str(old / data), "output_dir": str(old / run)}))
    shutil.move(old, new)
    return old, new, run, data


def test_data_moved_with_the_run_are_found_relative_to_it(moved_base, caplog):
    old, new, run, data = moved_base
    logger = logging.getLogger("ambs")  # does not propagate to the root logger caplog listens to
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="ambs"):
            trained = read_trained_run(new / run)
    finally:
        logger.removeHandler(caplog.handler)
    assert trained.input_dir == str(new / data)
    assert f"the recorded input_dir {old / data} is gone; using {new / data}" in caplog.text


def test_data_moved_elsewhere_are_named_by_input_dir(moved_base, tmp_path):
    old, new, run, data = moved_base
    elsewhere = tmp_path / "scratch" / "EXP"
    shutil.move(new / data, elsewhere)
    results = tmp_path / "results"
    refused = run_module(POSTPROCESS_MODULE, "--checkpoint", new / run, "--results_dir", results,
                         "--lquick_evaluation")
    assert_user_error(refused, f"input_dir {old / data} recorded in {new / run / OPTIONS_FILE} does not exist",
                      f"nor does {new / data}", "give their new place with --input_dir")
    assert not results.exists()
    assert read_trained_run(new / run, elsewhere).input_dir == str(elsewhere)
    result = run_module(POSTPROCESS_MODULE, "--checkpoint", new / run, "--results_dir", results,
                        "--lquick_evaluation", "--block_length", 4, "--input_dir", elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (results / "evaluation_metrics.nc").is_file()
