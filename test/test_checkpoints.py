"""Unit tests of training/checkpoints.py: the completeness rule, the best step, pruning, the atomic save/restore
round trip (real values), and which checkpoint a run directory resolves to."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from video_prediction_tools.training import checkpoints
from video_prediction_tools.utils.errors import UserError

FILES = (checkpoints.WEIGHTS_FILE, checkpoints.VARIABLES_FILE, checkpoints.STATE_FILE)
TINY = {"num_features": 2, "filter_size": 3, "context_frames": 2, "sequence_length": 4, "batch_size": 2}


def plant(run_dir: Path, step: int, files=FILES) -> Path:
    """A ``checkpoint_<step>`` directory holding ``files`` (contents do not matter to the completeness rule)."""
    path = checkpoints.checkpoint_path(run_dir, step)
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"x")
    return path


def test_completeness_rule_needs_the_name_and_all_three_files(tmp_path):
    assert checkpoints.is_complete(plant(tmp_path, 9))
    for missing in FILES:
        partial = plant(tmp_path / missing, 3, [name for name in FILES if name != missing])
        assert not checkpoints.is_complete(partial)
    wrong_name = tmp_path / "checkpoint_x"
    shutil.copytree(tmp_path / "checkpoint_9", wrong_name)
    assert not checkpoints.is_complete(wrong_name)
    shutil.copytree(tmp_path / "checkpoint_9", tmp_path / ".checkpoint_11.tmp-abc")
    plant(tmp_path, 10)
    plant(tmp_path, 12, FILES[:2])
    # numeric order (10 after 9), the incomplete checkpoint_12 and the temporary directory left out
    assert [path.name for path in checkpoints.complete_checkpoints(tmp_path)] == ["checkpoint_9", "checkpoint_10"]
    assert checkpoints.newest_checkpoint(tmp_path).name == "checkpoint_10"
    assert checkpoints.complete_checkpoints(tmp_path / "nope") == []


def test_best_step_is_the_lowest_finite_validation_loss_among_saved_steps():
    history = [{"step": 2, "val_loss": 5.0}, {"step": 4, "val_loss": 3.0}, {"step": 6, "val_loss": 3.0},
               {"step": 8, "val_loss": 1.0}, {"step": 10, "val_loss": math.nan}, {"step": 12, "val_loss": 4.0}]
    assert checkpoints.best_step(history, [4, 6, 12]) == (4, 3.0)       # tie: the first
    assert checkpoints.best_step(history, [2, 8, 12]) == (8, 1.0)       # 8 is saved: it wins
    assert checkpoints.best_step(history, [10, 12]) == (12, 4.0)        # NaN is never the best
    assert checkpoints.best_step(history, [10]) is None
    assert checkpoints.best_step(history, [3]) is None                  # no validation at that step


def test_pruning_deletes_all_complete_checkpoints_but_the_kept_ones(tmp_path):
    for step in (2, 4, 6, 8):
        plant(tmp_path, step)
    incomplete = plant(tmp_path, 10, FILES[:1])
    assert sorted(checkpoints.prune_checkpoints(tmp_path, keep={4, 8})) == [2, 6]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint_10", "checkpoint_4", "checkpoint_8"]
    assert incomplete.is_dir()  # not a checkpoint by the rule: left alone


def tiny_model_and_optimizers(seed: int):
    import keras

    from video_prediction_tools.models.registry import build_model
    from video_prediction_tools.training.trainer import build_optimizers

    keras.utils.set_random_seed(seed)
    model = build_model("convLSTM", TINY, frame_shape=(4, 5, 2))
    return model, build_optimizers(model, model.optimization_phases())


def test_save_and_restore_round_trip_every_variable_and_the_state(tmp_path):
    model, optimizers = tiny_model_and_optimizers(seed=1)
    rng = np.random.default_rng(0)
    for variable in [*model.variables, *[v for opt in optimizers.values() for v in opt.variables]]:
        dtype = np.dtype(variable.dtype)  # distinctive values everywhere, not the initial ones
        values = rng.normal(size=variable.shape) if dtype.kind == "f" else rng.integers(1, 1000, variable.shape)
        variable.assign(values.astype(dtype))
    state = checkpoints.TrainerState(step=7, epoch=1, batch_index=3, frame_shape=[4, 5, 2],
                                     train_history=[{"step": 7, "loss": 0.5}], val_history=[{"step": 7,
                                                                                             "val_loss": 2.5}],
                                     rng={"python": [1], "numpy": [2]}, sessions=[1, 5])
    path = checkpoints.save_checkpoint(tmp_path, state, model, optimizers)
    assert path == tmp_path / "checkpoint_7" and checkpoints.is_complete(path)
    assert [entry.name for entry in tmp_path.iterdir()] == ["checkpoint_7"]  # no temporary left

    other, other_optimizers = tiny_model_and_optimizers(seed=2)
    restored = checkpoints.restore_checkpoint(path, other, other_optimizers)
    assert restored == state
    for saved, loaded in zip(model.variables, other.variables):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=saved.path)
    for name, optimizer in optimizers.items():
        for saved, loaded in zip(optimizer.variables, other_optimizers[name].variables):
            np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=saved.path)


def test_non_finite_weights_are_never_saved(tmp_path):
    model, optimizers = tiny_model_and_optimizers(seed=1)
    weight = model.trainable_variables[0]
    weight.assign(np.where(np.arange(weight.shape.num_elements()).reshape(weight.shape) == 1, np.nan,
                           weight.numpy()))
    with pytest.raises(UserError, match=f"by step 3: variable {weight.path} is not finite; no checkpoint"):
        checkpoints.save_checkpoint(tmp_path, checkpoints.TrainerState(step=3), model, optimizers)
    assert list(tmp_path.iterdir()) == []


def test_a_run_directory_resolves_to_its_best_checkpoint_and_never_silently_to_another(tmp_path):
    for step in (4, 6):
        plant(tmp_path, step)
    assert checkpoints.resolve_checkpoint(tmp_path).name == "checkpoint_6"  # no pointer: the newest
    checkpoints.write_best_pointer(tmp_path, 4, 0.25)
    assert json.loads((tmp_path / checkpoints.BEST_FILE).read_text()) == {"step": 4, "val_loss": 0.25}
    assert checkpoints.resolve_checkpoint(tmp_path).name == "checkpoint_4"
    (tmp_path / "checkpoint_4" / checkpoints.STATE_FILE).unlink()
    with pytest.raises(UserError) as error:
        checkpoints.resolve_checkpoint(tmp_path)
    message = str(error.value)
    assert f"best checkpoint {tmp_path / 'checkpoint_4'}" in message and "incomplete" in message
    assert "complete checkpoints: checkpoint_6" in message and f"--checkpoint {tmp_path}/checkpoint_<step>" in message
    assert checkpoints.resolve_checkpoint(tmp_path / "checkpoint_6").name == "checkpoint_6"  # explicit choice


@pytest.mark.slow  # trains the tiny run (tiny_trained_run), which no fast test needs
def test_postprocessing_refuses_a_run_whose_best_checkpoint_is_incomplete(tiny_trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_trained_run, run_dir)
    best = json.loads((run_dir / checkpoints.BEST_FILE).read_text())["step"]
    (run_dir / f"checkpoint_{best}" / checkpoints.WEIGHTS_FILE).unlink()
    with pytest.raises(UserError, match=f"best checkpoint {run_dir / f'checkpoint_{best}'} .* --checkpoint"):
        checkpoints.load_trained_model(run_dir)
