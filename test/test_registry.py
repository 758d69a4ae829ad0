"""Tests of models/registry.py: models found without a module list, listing without TensorFlow, template fallback,
hyper-parameter range checks."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from fixtures.common import PYTHON, REPO_ROOT
from video_prediction_tools.models import registry
from video_prediction_tools.utils.errors import UserError

EXTRA_MODEL = '''
from .convlstm import ConvLSTM
from .registry import register


@register("tiny_extra")
class TinyExtra(ConvLSTM):
    @classmethod
    def default_hparams(cls):
        hparams = super().default_hparams()
        hparams.update(num_features=3, filter_size=3, max_epochs=7)
        return hparams
'''


@pytest.fixture
def extra_model_package(tmp_path, monkeypatch):
    """A model module written at test time into a directory added to the ``models`` package path."""
    import video_prediction_tools.models as models

    (tmp_path / "tiny_extra_model.py").write_text(EXTRA_MODEL)
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    yield "video_prediction_tools.models.tiny_extra_model"
    sys.modules.pop("video_prediction_tools.models.tiny_extra_model", None)
    registry._REGISTRY.pop("tiny_extra", None)


def test_a_model_module_added_to_the_package_path_is_found_and_gets_its_defaults(extra_model_package):
    assert "tiny_extra" in registry.known_models()
    assert extra_model_package not in sys.modules  # listing names imports no model module
    assert registry.model_modules()["tiny_extra"] == extra_model_package
    defaults = registry.default_hparams("tiny_extra")  # imports the module on first use
    assert (defaults["num_features"], defaults["filter_size"], defaults["max_epochs"]) == (3, 3, 7)
    # no templates/hparams/era5/tiny_extra/ exists: the template is the model's defaults
    assert not (REPO_ROOT / "templates/hparams/era5/tiny_extra").exists()
    assert registry.template_hparams("tiny_extra") == defaults
    model = registry.build_model("tiny_extra", {"context_frames": 2, "sequence_length": 4}, frame_shape=(4, 4, 1))
    assert model.forecast_frames == 2 and model.count_params() > 0


def test_a_model_with_a_template_gets_the_template():
    template = json.loads((REPO_ROOT / "templates/hparams/era5/convLSTM/model_hparams_template.json").read_text())
    assert registry.template_hparams("convLSTM") == template


def test_listing_models_their_traits_and_checking_values_need_no_tensorflow():
    script = ("import sys\n"
              "from video_prediction_tools.models.registry import (known_models, check_hparam_values, model_traits,\n"
              "                                                    models_with_template)\n"
              "from video_prediction_tools.training import checkpoints\n"
              "check_hparam_values('convLSTM', {'lr': 0.01, 'batch_size': 2})\n"
              "print(known_models(), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
              "print([name for name in known_models() if model_traits(name).stochastic],\n"
              "      models_with_template('moving_mnist'), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    result = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "['convLSTM', 'convLSTM_gan', 'mcnet', 'ours_gan', 'ours_vae_l1', 'savp', 'simvp', 'tau', 'vae'] False False",
        "['ours_gan', 'ours_vae_l1', 'savp', 'vae'] ['convLSTM', 'simvp', 'tau'] False False"]


def test_traits_read_from_the_source_agree_with_the_imported_classes(extra_model_package):
    """For every registered model (one added to the package path included), the trait the registry reads from the
    source is the class attribute of the imported class, and the module it names defines the class."""
    names = registry.known_models()
    assert "tiny_extra" in names
    for name in names:
        traits = registry.model_traits(name)
        cls = registry.get_model_class(name)
        assert (traits.stochastic, traits.module) == (cls.stochastic, cls.__module__), name
    assert registry.model_traits("tiny_extra").stochastic is False     # inherited from ConvLSTM through an import
    with pytest.raises(UserError, match="unknown model 'nope'"):
        registry.model_traits("nope")


def test_a_stochastic_attribute_the_source_cannot_tell_is_named(tmp_path, monkeypatch):
    """A model whose ``stochastic`` is not a literal True or False cannot be read without importing it: the
    registry says so, naming the class, instead of guessing."""
    import video_prediction_tools.models as models

    (tmp_path / "odd_model.py").write_text("from .convlstm import ConvLSTM\nfrom .registry import register\n\n\n"
                                           "@register('odd')\nclass Odd(ConvLSTM):\n    stochastic = 1 > 0\n")
    monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
    assert "odd" in registry.known_models()       # listing needs no trait
    with pytest.raises(ValueError, match="class Odd: 'stochastic' must be set to True or False"):
        registry.model_traits("odd")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown model 'nope'; known models: convLSTM, convLSTM_gan"):
        registry.default_hparams("nope")


@pytest.mark.parametrize("hparams, fragments", [
    ({"lr": math.nan}, ["'lr'", "finite", "nan"]),
    ({"lr": math.inf}, ["'lr'", "finite", "inf"]),
    ({"lr": -0.001}, ["'lr'", "greater than 0", "-0.001"]),
    ({"lr": 0.0}, ["'lr'", "greater than 0", "0.0"]),
    ({"batch_size": 0}, ["'batch_size'", ">= 1", "got 0"]),
    ({"max_epochs": -1}, ["'max_epochs'", ">= 1", "got -1"]),
    ({"context_frames": 24, "sequence_length": 24}, ["'context_frames'", "sequence_length (24)", "got 24"]),
    ({"loss_fun": "l2"}, ["'loss_fun'", "mse, cross_entropy", "'l2'"]),
    ({"loss_fun": "rmse"}, ["'loss_fun'", 'write "mse"']),
    ({"num_features": 0}, ["'num_features'", ">= 1"]),
])
def test_out_of_range_values_name_the_key_and_the_value(hparams, fragments):
    for check in (lambda: registry.check_hparam_values("convLSTM", hparams, source="h.json"),
                  lambda: registry.resolve_hparams("convLSTM", hparams, source="h.json")):
        with pytest.raises(UserError) as error:
            check()
        message = str(error.value)
        assert "h.json" in message and all(fragment in message for fragment in fragments), message


def test_list_elements_and_values_of_other_models_are_checked():
    with pytest.raises(UserError, match=r"'decay_steps\[1\]'.*finite"):
        registry.check_hparam_values("savp", {"decay_steps": [3000, math.inf]})
    registry.check_hparam_values("savp", {"end_lr": 0.0, "kl_anneal_k": -1.0, "lr": 2e-4})  # valid values pass
    assert registry.resolve_hparams("vae", {"lr": 1e-4, "batch_size": 1})["lr"] == 1e-4
