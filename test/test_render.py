"""Runscript rendering: shell quoting of hostile values (checked by running bash on the result), comment lines,
strict templates, and the all-or-nothing writing of a generation's files."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from video_prediction_tools.runscript_generator import render
from video_prediction_tools.utils.errors import UserError

#: values that would run a command, split a word or end a line if they reached bash unquoted
HOSTILE = [
    "/data/it's here",
    '/data/"quoted" dir',
    "/data/$(touch {marker})",
    "/data/`touch {marker}`",
    "/data/${{HOME}}/$USER",
    "/data/line one\nline two; touch {marker}",
    "/data/a b\tc*?[x]",
    "'",
    "",
    "-n",
]


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("template", HOSTILE)
def test_q_keeps_every_value_inert_and_exact(tmp_path, template):
    marker = tmp_path / "marker"
    value = template.format(marker=marker)
    script = render.environment().from_string('VALUE={{ value | q }}\nprintf "%s" "$VALUE"\n').render(value=value)
    assert bash(f"set -n\n{script}", tmp_path).returncode == 0          # bash -n: the script parses
    result = bash(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == value                                       # the exact value, nothing expanded
    assert not marker.exists()                                          # nothing ran


def test_qlist_gives_one_array_element_per_value(tmp_path):
    marker = tmp_path / "marker"
    values = [v.format(marker=marker) for v in HOSTILE]
    script = render.environment().from_string(
        'VALUES=({{ values | qlist }})\nprintf "%s\\0" "${VALUES[@]}"\n').render(values=values)
    result = bash(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\0")[:-1] == values
    assert not marker.exists()


def test_qwords_splits_options_like_the_shell_and_quotes_each_word(tmp_path):
    script = render.environment().from_string(
        'WORDS=({{ text | qwords }})\nprintf "%s\\0" "${WORDS[@]}"\n').render(
        text="--mpi=pmi2 --cpu-bind=none --comment='two words' --x=$(touch marker)")
    result = bash(script, tmp_path)
    assert result.stdout.split("\0")[:-1] == ["--mpi=pmi2", "--cpu-bind=none", "--comment=two words",
                                              "--x=$(touch", "marker)"]
    assert not (tmp_path / "marker").exists()


def test_oneline_keeps_a_value_inside_its_comment(tmp_path):
    marker = tmp_path / "marker"
    script = render.environment().from_string("# runscript: {{ path | oneline }}\necho done\n").render(
        path=f"/a\ntouch {marker}\n/b")
    assert script.splitlines()[0] == f"# runscript: /a touch {marker} /b"
    assert bash(script, tmp_path).stdout == "done\n" and not marker.exists()


def test_undefined_template_variables_are_programming_errors():
    with pytest.raises(RuntimeError, match="preprocess_data_era5_step2.sh.j2"):
        render.render_runscript("preprocess_data_era5_step2.sh.j2", {})


def plan(tmp_path: Path, **changes) -> render.Plan:
    fields = dict(runscript=tmp_path / "scripts" / "train.sh", text="#!/bin/bash\necho hi\n",
                  answers={"step": "train", "exp_id": "it's"},
                  json_files={tmp_path / "scripts" / "train_model_hparams.json": {"batch_size": 4}})
    fields.update(changes)
    (tmp_path / "scripts").mkdir(exist_ok=True)
    return render.Plan(**fields)


def test_write_plan_writes_everything_and_never_replaces_silently(tmp_path):
    written = plan(tmp_path)
    render.write_plan(written)
    assert written.runscript.read_text() == "#!/bin/bash\necho hi\n" and written.runscript.stat().st_mode & 0o100
    assert written.answers_file == tmp_path / "scripts" / "train.sh.answers.yaml"
    assert yaml.safe_load(written.answers_file.read_text()) == {"step": "train", "exp_id": "it's"}
    assert json.loads((tmp_path / "scripts" / "train_model_hparams.json").read_text()) == {"batch_size": 4}
    with pytest.raises(UserError, match="exists already; pass --overwrite"):
        render.write_plan(plan(tmp_path, json_files={}))
    render.write_plan(plan(tmp_path, text="#!/bin/bash\necho again\n"), overwrite=True)
    assert written.runscript.read_text() == "#!/bin/bash\necho again\n"


def test_write_plan_leaves_nothing_behind_when_a_file_fails(tmp_path):
    failing = plan(tmp_path, json_files={tmp_path / "scripts" / "train_model_hparams.json": {"ok": 1},
                                         tmp_path / "scripts" / "train_data_split.json": {"bad": object()}})
    with pytest.raises(TypeError):
        render.write_plan(failing)
    assert list((tmp_path / "scripts").iterdir()) == []


def test_paths_in_comments_are_quoted_for_copying(tmp_path):
    """A header line such as '# Run it with: bash <path>' copied into a shell runs no $(...) of the path."""
    marker = tmp_path / "marker"
    path = f"/runs/a $(touch {marker}) 'b'\nc"
    line = render.environment().from_string("# Run it with: echo {{ path | qline }}\n").render(path=path)
    copied = line.splitlines()[0][len("# Run it with: "):]
    assert len(line.splitlines()) == 1
    assert bash(copied + "\n", tmp_path).stdout == path.replace("\n", " ") + "\n" and not marker.exists()
