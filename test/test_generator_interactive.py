"""Runscript generator, interactive mode: questionary prompts driven through a prompt_toolkit pipe for every step;
invalid answers are re-asked, 'help' shows guidance, $EDITOR sessions are validated, Ctrl-C / EOF write nothing."""
from __future__ import annotations

import io
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from fixtures.common import PYTHON
from fixtures.generator import (CTRL_B, CTRL_C, DATASPLIT, DOWN, ENTER, EXPNAME, RUN, RUN2, SPACE, UP, VARMAPPING,
                                assert_clean_shell, make_base, make_venv, only_runscript, run_wizard, typed,
                                variable_line)
from video_prediction_tools.runscript_generator import wizard
from video_prediction_tools.utils.errors import UserError
from video_prediction_tools.utils.settings import create_base_tree

@pytest.fixture
def data(tmp_path):
    return make_base(tmp_path)


@pytest.fixture
def venv(tmp_path, data):
    return make_venv(tmp_path, data["base"])


@pytest.fixture
def editor(tmp_path, monkeypatch):
    """$EDITOR replaced by a script that writes the next planned content into the file it is given."""
    plan = tmp_path / "editor_plan.json"
    script = tmp_path / "fake_editor.py"
    script.write_text(f"#!{PYTHON}\nimport json, sys\nfrom pathlib import Path\n"
                      f"plan = Path({str(plan)!r})\ncontents = json.loads(plan.read_text())\n"
                      "Path(sys.argv[1]).write_text(contents.pop(0))\nplan.write_text(json.dumps(contents))\n")
    script.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(script))
    monkeypatch.delenv("VISUAL", raising=False)

    def set_plan(*contents: str):
        plan.write_text(json.dumps(list(contents)))
        return plan

    return set_plan


def test_step_chosen_from_list_and_extract(tmp_path, venv, data, editor):
    editor(json.dumps(VARMAPPING))
    keys = (ENTER                        # dataset: era5 (the default)
            + UP * 5 + ENTER             # step: offered meta_postprocess (every other step is done); up to extract
            + str(data["grib"]) + ENTER  # GRIB directory
            + ENTER                      # years: default = years found (2017)
            + ENTER                      # months: default = months found (1,2)
            + DOWN + ENTER               # variable mapping: edit (not "use as is")
            + typed("1"))                # MPI processes
    assert run_wizard(tmp_path, venv, keys) == 0
    script = only_runscript(tmp_path)
    assert script.name == "data_extraction_era5.sh"
    assert variable_line(script, "MONTHS") == "(1 2)" and variable_line(script, "YEARS") == "(2017)"
    assert "mpiexec -n 1 python" in script.read_text()
    assert json.loads(Path(variable_line(script, "VARMAP_FILE")).read_text()) == VARMAPPING
    assert_clean_shell(script)


def test_preprocess1_reasks_until_the_domain_fits(tmp_path, venv, data):
    keys = (ENTER                 # extracted-data directory: default ExtractedData
            + ENTER               # years: 2017
            + ENTER               # months: the default is the months found: 1,2
            + typed("2t,msl")     # msl is not in the data → asked again
            + typed("2t,2t")      # a channel twice → asked again
            + typed("t_850,2t")   # channel order as typed
            + typed("38.4, 0.0")  # the GMD corner lies south of the grid → asked again
            + typed("43.5, 0.3")
            + typed("8, 30")      # 30 columns do not fit (the default, 16, 23, would)
            + typed("8, 12")
            + ENTER)              # MPI processes: 2
    assert run_wizard(tmp_path, venv, keys, "--step", "preprocess1") == 0
    script = only_runscript(tmp_path)
    assert variable_line(script, "VARIABLES") == "(t_850 2t)"
    assert variable_line(script, "SW_CORNER") == "(43.5 0.3)" and variable_line(script, "NYX") == "(8 12)"


def test_preprocess2_and_help_guidance(tmp_path, venv, data):
    """Typing 'help' shows the guidance (rendered to a real VT100 output) and does not end the question."""
    screen = io.StringIO()
    output = Vt100_Output(screen, lambda: Size(rows=40, columns=200), term="xterm")
    with create_pipe_input() as pipe:
        def feed():  # keys in chunks so that the prompt redraws between them
            for chunk in (ENTER, typed("help"), typed("1"), typed("12"), ENTER):
                time.sleep(0.5)
                pipe.send_text(chunk)
            pipe.close()

        thread = threading.Thread(target=feed)
        thread.start()
        status = wizard.main(["--venv_path", str(venv), "--runscript_dir", str(tmp_path / "runscripts"),
                              "--step", "preprocess2"], input=pipe, output=output)
        thread.join()
    assert status == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "12 context + 12 forecast hours" in shown      # the guidance, saying what the value does
    assert "only checks that windows this long fit into the data" in shown
    # the rejection of "1" (the screen is redrawn by differences, so only a fragment is compared)
    assert "2..744" in shown
    script = only_runscript(tmp_path)
    assert variable_line(script, "SOURCE_DIR") == str(data["experiment"])
    assert variable_line(script, "SEQUENCE_LENGTH") == "12"


def test_train_with_editor_reopened_after_invalid_edit(tmp_path, venv, data, editor):
    editor('{"train": {"2017": [1]},}',                 # invalid JSON ...
           json.dumps({"train": {"2017": [3]}}),      # ... then a month without TFRecords ...
           json.dumps(DATASPLIT),                     # ... then valid
           json.dumps({}))                            # hparams
    keys = (ENTER              # experiment (the only one with TFRecords)
            + ENTER            # model: default convLSTM
            + typed("inter")  # experiment id
            + DOWN + ENTER     # data split: edit the offered one
            + "y" + ENTER      # re-open the editor after the JSON error
            + "y" + ENTER      # re-open after the missing month
            + ENTER            # hyper-parameters: use the template as is
            + typed("7"))      # seed
    assert run_wizard(tmp_path, venv, keys, "--step", "train") == 0
    script = only_runscript(tmp_path)
    run_dir = Path(variable_line(script, "OUTPUT_DIR"))
    assert run_dir.parent == data["base"] / "Models" / EXPNAME / "convLSTM" and run_dir.name.endswith("_inter")
    assert not run_dir.exists()       # made by the training
    assert json.loads(Path(variable_line(script, "DATASPLIT_DICT")).read_text()) == DATASPLIT
    assert variable_line(script, "SEED") == "7"


def test_train_invalid_edit_then_abort_leaves_nothing(tmp_path, venv, data, editor):
    editor(json.dumps(DATASPLIT), json.dumps({"no_such_hparam": 1}))
    models_before = sorted((data["base"] / "Models").rglob("*"))
    with pytest.raises(UserError, match="nothing was written"):
        run_wizard(tmp_path, venv, ENTER + ENTER + typed("abort") + DOWN + ENTER + DOWN + ENTER + "n" + ENTER,
                   "--step", "train")
    assert sorted((data["base"] / "Models").rglob("*")) == models_before
    assert not (tmp_path / "runscripts").exists()


def test_postprocess_choices_from_runs_and_checkpoints(tmp_path, venv, data):
    keys = (ENTER                         # experiment
            + ENTER                       # model convLSTM
            + UP + ENTER                  # run: default is the newest (RUN2); go up to RUN
            + DOWN + DOWN + ENTER         # checkpoint: [auto, checkpoint_5, checkpoint_10] → checkpoint_10
            + ENTER                       # mode: test (the run's split has no val months)
            + typed("2")                  # batch size
            + ENTER                       # stochastic samples 1
            + typed("mse,acc")            # metrics
            + str(data["climatology"]) + ENTER
            + typed("24")                 # block length: 50 test forecasts hold 10 blocks of at most 5 ...
            + typed("4")                  # ... so 24 is asked again
            + "y" + ENTER)                # quick evaluation
    assert run_wizard(tmp_path, venv, keys, "--step", "postprocess") == 0
    script = only_runscript(tmp_path)
    assert script.name == f"visualize_postprocess_era5_{RUN}.sh"
    assert variable_line(script, "CHECKPOINT") == str(data["run_dir"] / "checkpoint_10")
    assert variable_line(script, "MODE") == "test" and variable_line(script, "BATCH_SIZE") == "2"
    assert variable_line(script, "METRICS") == "(mse acc)" and variable_line(script, "BLOCK_LENGTH") == "4"
    assert "EXTRA_OPTIONS+=(--lquick_evaluation)" in script.read_text()


def test_meta_postprocess_checkbox(tmp_path, venv, data):
    keys = (SPACE + SPACE + ENTER         # both runs (ticked already; untick and tick the first again)
            + DOWN + ENTER                # metric: rmse
            + typed("cmp")               # id
            + "n" + ENTER + "y" + ENTER)  # skill scores no, persistence plot yes
    assert run_wizard(tmp_path, venv, keys, "--step", "meta_postprocess") == 0
    script = only_runscript(tmp_path)
    config = json.loads(Path(variable_line(script, "ANALYSIS_CONFIG")).read_text())
    assert [Path(p).name for p in config["results"].values()] == [RUN, RUN2]
    assert variable_line(script, "METRIC") == "rmse"
    text = script.read_text()
    assert "--enable_skill_scores)" not in text and "EXTRA_OPTIONS+=(--enable_persit_plot)" in text


def test_hpc_settings_customised(tmp_path, data):
    venv = make_venv(tmp_path, data["base"], hpc=True)
    keys = (ENTER + ENTER                  # experiment, sequence length 24
            + ENTER                        # profile: generic
            + "y" + ENTER                  # change the SLURM settings
            + typed("proj")                # account
            + ENTER + ENTER                # partition, nodes
            + typed("2")                   # ntasks
            + ENTER                        # cpus per task
            + typed("soon") + typed("00:10:00")   # time: rejected, then accepted
            + ENTER + typed("me@example.org") + ENTER + ENTER + typed("--exclusive")
            + typed("module load Stages/2024; module load CUDA"))   # job set-up lines
    assert run_wizard(tmp_path, venv, keys, "--step", "preprocess2") == 0
    text = only_runscript(tmp_path).read_text()
    assert text.index("\nmodule load Stages/2024\nmodule load CUDA\n") < text.index("RUN_PYTHON=(srun")
    for line in ("#SBATCH --account=proj", "#SBATCH --ntasks=2", "#SBATCH --time=00:10:00",
                 "#SBATCH --mail-user=me@example.org", "#SBATCH --exclusive"):
        assert line in text


def test_an_existing_runscript_is_kept_beside_replaced_or_the_previous_question_asked(tmp_path, venv, data):
    """A runscript that exists is kept and this one named otherwise (offered), replaced, or the previous question is
    asked again: no choice ends the session."""
    assert run_wizard(tmp_path, venv, ENTER + typed("12") + ENTER, "--step", "preprocess2") == 0
    script = only_runscript(tmp_path)
    # experiment, window 6, MPI processes; then Enter keeps the runscript and Enter takes the offered name
    assert run_wizard(tmp_path, venv, ENTER + typed("6") + ENTER + ENTER + ENTER, "--step", "preprocess2") == 0
    beside = script.with_name("preprocess_data_era5_step2_2.sh")
    assert variable_line(script, "SEQUENCE_LENGTH") == "12" and variable_line(beside, "SEQUENCE_LENGTH") == "6"
    assert beside.with_name(beside.name + ".answers.yaml").is_file()
    keys = (ENTER + typed("7") + ENTER
            + DOWN + DOWN + ENTER      # [keep it, replace it, « back]: back to the MPI processes ...
            + typed("3")               # ... changed
            + DOWN + ENTER)            # replace it
    assert run_wizard(tmp_path, venv, keys, "--step", "preprocess2") == 0
    assert variable_line(script, "SEQUENCE_LENGTH") == "7" and "mpiexec -n 3 python" in script.read_text()
    assert variable_line(beside, "SEQUENCE_LENGTH") == "6"


def test_an_error_found_after_an_answer_asks_the_previous_question_again(tmp_path, data):
    """Choosing postprocessing where no run can be evaluated says so and offers the step menu again, instead of
    ending the session."""
    base = tmp_path / "fresh"
    create_base_tree(base)
    venv = make_venv(tmp_path, base)
    screen = io.StringIO()
    output = Vt100_Output(screen, lambda: Size(rows=40, columns=200), term="xterm")
    keys = (ENTER                      # dataset: era5
            + DOWN * 4 + ENTER         # step: extract offered; down to postprocess
            + UP * 4 + ENTER           # the step menu again: extract
            + typed(str(data["grib"])) + ENTER + ENTER + ENTER + ENTER)
    assert run_wizard(tmp_path, venv, keys, output=output) == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "no trained models in" in shown and "The previous question again" in shown
    assert only_runscript(tmp_path).name == "data_extraction_era5.sh"


@pytest.mark.parametrize("ending", [CTRL_C, ""], ids=["ctrl-c", "eof"])
def test_interrupt_or_eof_writes_nothing(tmp_path, venv, data, editor, capsys, ending):
    editor(json.dumps(DATASPLIT), json.dumps({}))
    models_before = sorted((data["base"] / "Models").rglob("*"))
    # train: experiment, model, id, then interrupted (or input ends) at the data-split choice
    assert run_wizard(tmp_path, venv, ENTER + ENTER + typed("stop") + ending, "--step", "train") == 130
    assert "nothing was written" in capsys.readouterr().err
    assert sorted((data["base"] / "Models").rglob("*")) == models_before
    assert not (tmp_path / "runscripts").exists()


def test_rejected_years_and_months_are_asked_again(tmp_path, venv, data, editor):
    """Years are checked at the year question (not one question later), months against the years chosen."""
    editor(json.dumps(VARMAPPING))
    keys = (str(data["grib"]) + ENTER
            + typed("2018") + typed("2017")     # 2018 has no GRIB files
            + typed("1-3") + typed("2")         # March has none either
            + ENTER + ENTER)                    # variable mapping as offered, MPI processes 2
    assert run_wizard(tmp_path, venv, keys, "--step", "extract") == 0
    script = only_runscript(tmp_path)
    assert variable_line(script, "YEARS") == "(2017)" and variable_line(script, "MONTHS") == "(2)"


# ------------------------------------------------------------------------------------------------ a real terminal
class Terminal:
    """The generator CLI on a pseudo-terminal (what a user's shell gives it): keys are written to the terminal,
    its screen output is read back with the escape sequences removed. Like a script driving a terminal (and
    unlike most terminal emulators) it does not answer cursor-position requests."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 50, columns: int = 160):
        import fcntl
        import os
        import pty
        import struct
        import subprocess
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        start_new_session=True)
        os.close(slave)
        self.screen = ""
        #: the output as written, escape sequences included (see :func:`displayed`)
        self.raw = ""
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        import os
        import select

        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the program ended and closed the terminal
            return False
        self.raw += chunk.decode(errors="replace")
        self.screen += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r", "", chunk.decode(errors="replace"))
        return bool(chunk)

    def expect(self, text: str, timeout: float = 120.0) -> None:
        """Wait until ``text`` appears after what earlier calls matched."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[self._seen:]:
            if time.monotonic() > deadline or (not self._read(0.5) and self.process.poll() is not None):
                raise AssertionError(f"{text!r} not shown; the screen ends with:\n{self.screen[-3000:]}")
        self._seen = self.screen.index(text, self._seen) + len(text)

    def answer(self, question: str, keys: str = ENTER) -> None:
        self.expect(question)
        time.sleep(0.3)  # let the prompt finish drawing before the keys arrive
        self.type(keys)

    def type(self, keys: str) -> None:
        import os
        os.write(self.master, keys.encode())

    def shown_for(self, seconds: float) -> str:
        """What the screen shows in the next ``seconds`` (after what earlier calls matched)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(0.1)
        shown, self._seen = self.screen[self._seen:], len(self.screen)
        return shown

    def finish(self, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.5)
        while self._read(0.1):
            pass
        return self.process.wait(timeout=5)


def displayed(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``, as far as prompt_toolkit draws: text, carriage returns and line
    feeds, cursor moves (CSI A/B/C/D) and erasing (CSI J: to the end of the screen, CSI K: of the line); other
    sequences (colours, modes) change no text."""
    lines, row, column = [[]], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\s\S]", raw):
        if token.startswith("\x1b["):
            count, code = int(token[2:-1]) if token[2:-1].isdigit() else 1, token[-1]
            row = max(0, row - count) if code == "A" else row + count if code == "B" else row
            column = column + count if code == "C" else max(0, column - count) if code == "D" else column
            if code in "JK":
                del lines[row][column:]
                if code == "J":
                    del lines[row + 1:]
        elif token == "\r":
            column = 0
        elif token == "\n":
            row += 1
        elif not token.startswith("\x1b"):
            lines[row].extend(" " * (column - len(lines[row])))
            lines[row][column:column + 1] = [token]
            column += 1
        lines += [[] for _ in range(row + 1 - len(lines))]
    return ["".join(line).rstrip() for line in lines]


#: the questions of each step, in order; a newcomer presses Enter at each (the archive path is typed)
NEWCOMER_QUESTIONS = {
    "extract": ["Directory of the ERA5 GRIB files", "Years to extract", "Months to extract",
                "Use this variable mapping", "Number of MPI processes"],
    "preprocess1": ["Directory of the extracted netCDF files", "Years to preprocess", "Months to preprocess",
                    "Variables (channels", "SW corner of the domain", "Grid points of the domain",
                    "Number of MPI processes"],
    "preprocess2": ["Experiment (PreprocessedData", "Window length in hours", "Number of MPI processes"],
    "train": ["Experiment whose TFRecords", "Model to train", "Experiment id", "Use this data split",
              "Use these hyper-parameters", "Random seed"],
    "postprocess": ["Experiment the model was trained on", "Trained model", "Training run", "Checkpoint to evaluate",
                    "Data split to evaluate", "Batch size", "Stochastic samples", "Evaluation metrics",
                    "Climatology netCDF", "Bootstrap block length", "Quick evaluation"],
    "meta_postprocess": ["Runs to compare", "Metric to compare", "Id of this comparison", "Plot skill scores",
                         "Also plot the persistence curves"],
}


@pytest.mark.slow
def test_newcomer_accepts_every_default_and_every_runscript_runs(tmp_path):
    """All six steps on a terminal, on a fresh base directory and a synthetic archive (3 months of 3 days, 8 x 12
    points): the step menu offers the next step, every other question is answered by Enter (only the archive path
    is typed), and each generated runscript runs to the end before the next step is generated."""
    import os
    import subprocess
    import sys

    from video_prediction_tools.data_extraction.synthetic import Grid, generate_archive
    from video_prediction_tools.utils.settings import create_base_tree, write_settings

    grib = tmp_path / "era5_grib"
    generate_archive(grib, [2017], [1, 2, 3], Grid(lat_south=45.0, lat_north=47.1, lon_west=6.0, lon_east=9.3,
                                                     resolution=0.3), seed=0, days=3)
    base = tmp_path / "ambs_data"
    create_base_tree(base)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    write_settings(venv, base, False, None)
    env = dict(os.environ, TERM="xterm", COLUMNS="160", LINES="50")
    runscripts = tmp_path / "runscripts"
    for step, questions in NEWCOMER_QUESTIONS.items():
        terminal = Terminal([PYTHON, str(Path(wizard.__file__).parents[2] / "env_setup" / "generate_runscript.py"),
                             "--venv_path", str(venv), "--runscript_dir", str(runscripts)], env)
        terminal.answer("Dataset")                   # ERA5, the default
        terminal.answer("Workflow step")             # the first step not done yet is offered ...
        terminal.expect(f"Workflow step for which a runscript should be created (the first not done yet is "
                        f"offered): {step}")       # ... and it is this one
        for question in questions:
            terminal.answer(question, str(grib) + ENTER if question.startswith("Directory of the ERA5") else ENTER)
        assert terminal.finish() == 0, terminal.screen[-3000:]
        assert "Traceback" not in terminal.screen and "oneDNN" not in terminal.screen
        written = re.search(r"Runscript written: (\S+)", terminal.screen)
        assert written, terminal.screen[-3000:]
        result = subprocess.run(["bash", written.group(1)], capture_output=True, text=True, timeout=1200, env=env)
        assert result.returncode == 0, (step, result.stdout[-3000:], result.stderr[-3000:])
        assert "oneDNN" not in result.stderr and "absl::InitializeLog" not in result.stderr, result.stderr[-3000:]
    # what the defaults chose: the whole 8 x 12 grid, the three months split val/train/test, and a block length
    # the 49 test windows (3 days of 24 h windows) support: 49 // 10 = 4
    (experiment,) = (base / "PreprocessedData").iterdir()
    assert experiment.name == "era5-Y2017-2017M01to03-12x8-4500N0600E-2t_tcc_t_850"
    (post,) = runscripts.glob("visualize_postprocess_*.sh")
    assert "BLOCK_LENGTH='4'" in post.read_text()
    (split_file,) = runscripts.glob("train_model_*_data_split.json")
    assert json.loads(split_file.read_text()) == {"train": {"2017": [2]}, "val": {"2017": [1]},
                                                  "test": {"2017": [3]}}
    assert list((base / "meta_postprocess").glob("*_comparison/*"))


def test_failing_editor_aborts(tmp_path, venv, data, monkeypatch):
    """An editor that exits with an error (vim's :cq) aborts instead of keeping the offered content."""
    failing = tmp_path / "failing_editor.sh"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(failing))
    with pytest.raises(UserError, match="exit status 1 while editing the data split.*nothing was written"):
        run_wizard(tmp_path, venv, ENTER + ENTER + typed("x") + DOWN + ENTER, "--step", "train")
    assert not (tmp_path / "runscripts").exists()


def test_back_asks_the_previous_question_again(tmp_path, venv, data):
    keys = (typed("back")          # first question: nothing to go back to, asked again
            + ENTER                # extracted-data directory
            + ENTER                # years 2017
            + typed("back")        # at the months: back to the years (their answer is the default) ...
            + ENTER                # ... kept
            + ENTER                # months 1,2
            + typed("back")        # at the variables: back to the months ...
            + typed("1")           # ... changed
            + typed("t_850")       # variables
            + ENTER + ENTER        # SW corner, grid size (defaults)
            + typed("back")        # at the MPI processes: back to the grid size ...
            + typed("4, 5")        # ... changed
            + ENTER)               # MPI processes
    assert run_wizard(tmp_path, venv, keys, "--step", "preprocess1") == 0
    script = only_runscript(tmp_path)
    assert variable_line(script, "MONTHS") == "(1)" and variable_line(script, "VARIABLES") == "(t_850)"
    assert variable_line(script, "YEARS") == "(2017)" and variable_line(script, "NYX") == "(4 5)"
    saved = yaml.safe_load(script.with_name(script.name + ".answers.yaml").read_text())
    # one month: one MPI process offered (a second would have no month)
    assert saved["months"] == "1" and saved["nyx"] == "4, 5" and saved["mpi_processes"] == "1"


def generator_on_terminal(venv, runscripts: Path, *options: str, rows: int = 50, columns: int = 160) -> Terminal:
    import os

    return Terminal([PYTHON, str(Path(wizard.__file__).parents[2] / "env_setup" / "generate_runscript.py"),
                     "--venv_path", str(venv), "--runscript_dir", str(runscripts), *options],
                    dict(os.environ, TERM="xterm", COLUMNS=str(columns), LINES=str(rows)), rows, columns)


def test_back_at_every_kind_of_question(tmp_path, venv, data):
    """On a terminal, going back works at a tick list, a yes/no and a text question (Ctrl-B) and a menu (its « back
    choice): the previous question comes again with the earlier answer offered, the one left erased."""
    terminal = generator_on_terminal(venv, tmp_path / "runscripts")
    terminal.answer("Dataset")                                    # ERA5
    terminal.answer("Workflow step", ENTER)                       # offered: meta_postprocess
    terminal.answer("Runs to compare", CTRL_B)                    # tick list: back to the step menu ...
    terminal.expect("Workflow step")
    terminal.answer("» meta_postprocess", ENTER)                  # ... which offers the earlier choice
    terminal.answer("Runs to compare", ENTER)
    terminal.answer(wizard.BACK_CHOICE, DOWN + DOWN + ENTER)      # menu [mse, rmse, « back]: back to the runs ...
    terminal.answer("Runs to compare", SPACE + ENTER)             # ... where the first run is unticked
    terminal.answer("Metric to compare", DOWN + ENTER)            # rmse
    terminal.answer("Id of this comparison", CTRL_B)              # text: back to the metric menu ...
    terminal.expect("Metric to compare")
    terminal.shown_for(1.0)
    assert not [line for line in displayed(terminal.raw) if "Id of this comparison" in line]   # ... erasing it
    terminal.type(ENTER)                                          # ... which offers rmse, chosen before
    terminal.answer("Id of this comparison", typed("cmp"))
    terminal.answer("Plot skill scores", CTRL_B)                  # yes/no: back to the id ...
    terminal.answer("Id of this comparison", ENTER)               # ... offered as typed before: cmp
    terminal.answer("Plot skill scores", "n" + ENTER)
    terminal.answer("Also plot the persistence curves", CTRL_B)   # back to the skill scores ...
    terminal.answer("Plot skill scores", "y" + ENTER)             # ... changed to yes
    terminal.answer("Also plot the persistence curves", "y" + ENTER)
    assert terminal.finish() == 0, terminal.screen[-3000:]
    script = only_runscript(tmp_path)
    assert script.name.startswith("meta_postprocess_era5_") and script.name.endswith("_cmp.sh")
    config = json.loads(Path(variable_line(script, "ANALYSIS_CONFIG")).read_text())
    assert [Path(p).name for p in config["results"].values()] == [RUN2]
    assert variable_line(script, "METRIC") == "rmse"
    text = script.read_text()
    assert "EXTRA_OPTIONS+=(--enable_skill_scores)" in text and "EXTRA_OPTIONS+=(--enable_persit_plot)" in text


def test_rejected_answer_keeps_its_question_once_and_shows_the_whole_reason(tmp_path, venv, data):
    """At 80 columns a long question whose answer is rejected stays on the screen once (prompt_toolkit drew it again
    after waiting for a cursor-position answer the terminal did not give), and the reason, longer than a line, is
    shown in full below it."""
    terminal = generator_on_terminal(venv, tmp_path / "runscripts", "--step", "preprocess1", rows=24, columns=80)
    for question in ("Directory of the extracted netCDF files", "Years to preprocess", "Months to preprocess",
                     "Variables (channels", "SW corner of the domain"):
        terminal.answer(question)
    terminal.answer("Grid points of the domain", typed("800, 3000"))
    shown = terminal.shown_for(4.0)  # longer than prompt_toolkit waits for a cursor-position answer (2 s)
    assert "Grid points of the domain" not in shown and "CPR" not in shown, shown
    assert "".join(("a domain of 800 rows with SW corner latitude 43.5 reaches beyond the northern edge of the grid "
                    "(48 degrees_north); at most 16 rows fit").split()) in "".join(shown.split()), shown
    terminal.type(typed("8, 12"))
    terminal.answer("Number of MPI processes")
    assert terminal.finish() == 0, terminal.screen[-3000:]
    assert variable_line(only_runscript(tmp_path), "NYX") == "(8 12)"


def test_help_at_menus_tick_lists_and_yes_no_and_yes_waits_for_enter(tmp_path, venv, data):
    """On a terminal, 'help' and Enter at a menu, a tick list or a yes/no question shows its guidance and asks it
    again (Enter alone would have taken the default); 'y' at a yes/no is taken only with Enter, so that no Enter
    typed after it reaches the next question or the shell."""
    terminal = generator_on_terminal(venv, tmp_path / "runscripts")
    terminal.answer("Dataset", "help" + ENTER)
    terminal.expect("Choices: era5, moving_mnist (offered: era5)")
    terminal.answer("Dataset")
    terminal.answer("Workflow step", "help" + ENTER)            # the menu offers meta_postprocess ...
    terminal.expect("train: training: one model on one preprocessed experiment")
    terminal.expect("Workflow step")                             # ... asked again, not chosen
    terminal.answer("» meta_postprocess", ENTER)
    terminal.answer("Runs to compare", "?" + ENTER)
    terminal.expect("space ticks or unticks")
    terminal.answer("Runs to compare", ENTER)
    terminal.answer("Metric to compare")
    terminal.answer("Id of this comparison")
    terminal.answer("Plot skill scores", "help" + ENTER)
    terminal.expect("Type y or n and press Enter; Enter alone answers yes.")
    terminal.answer("Plot skill scores", "n")
    assert "Also plot the persistence curves" not in terminal.shown_for(1.5)  # 'n' alone answers nothing yet
    terminal.type(ENTER)
    terminal.answer("Also plot the persistence curves", "y")
    assert "Runscript written" not in terminal.shown_for(1.5)
    terminal.type(ENTER)
    assert terminal.finish() == 0, terminal.screen[-3000:]
    text = only_runscript(tmp_path).read_text()
    assert "--enable_skill_scores)" not in text and "EXTRA_OPTIONS+=(--enable_persit_plot)" in text


def system_like_python(root: Path) -> Path:
    """A python as a system may have one: PyYAML and Jinja2 installed, questionary and the AMBS dependencies
    not (a venv of the base interpreter whose site-packages link to those two packages only)."""
    import subprocess
    import jinja2
    import markupsafe

    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(root)], check=True)
    (site,) = root.glob("lib/python*/site-packages")
    for module in (yaml, jinja2, markupsafe):
        source = Path(module.__file__).parent
        (site / source.name).symlink_to(source)
    return root / "bin" / "python"


def venv_of_this_python(root: Path, base: Path, container: Path | None = None) -> Path:
    """A venv as create_env.sh leaves it, with its own python: a directory of its own (pyvenv.cfg, the settings)
    linking to the packages and interpreter of the venv running the tests."""
    import sys

    venv = make_venv(root, base, container=container)
    shutil.copy(Path(sys.prefix) / "pyvenv.cfg", venv)
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")
    (venv / "bin" / "python").symlink_to(Path(sys.prefix) / "bin" / "python")
    return venv


def test_the_documented_launch_runs_with_the_venv_python_whatever_the_system_python_has(tmp_path, data):
    """``python env_setup/generate_runscript.py --venv_path <venv>`` with the venv not active and a python that has
    PyYAML and Jinja2 but not questionary: the launcher re-runs itself with the venv's python."""
    import os
    import subprocess

    system_python = system_like_python(tmp_path / "system")
    probe = subprocess.run([str(system_python), "-c", "import yaml, jinja2\nimport questionary"],
                           capture_output=True, text=True)
    assert "No module named 'questionary'" in probe.stderr
    venv = venv_of_this_python(tmp_path / "ambs", data["base"])
    launcher = Path(wizard.__file__).parents[2] / "env_setup" / "generate_runscript.py"
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    terminal = Terminal([str(system_python), str(launcher), "--venv_path", str(venv), "--runscript_dir",
                         str(tmp_path / "runscripts"), "--step", "preprocess2"], dict(env, TERM="xterm"))
    for question in ("Experiment (PreprocessedData", "Window length in hours", "Number of MPI processes"):
        terminal.answer(question)
    assert terminal.finish() == 0, terminal.screen[-3000:]
    assert "Traceback" not in terminal.screen
    assert only_runscript(tmp_path).name == "preprocess_data_era5_step2.sh"


def test_a_container_venv_is_launched_inside_its_container(tmp_path, data):
    """A venv whose settings record a container image runs the generator through the container runtime with the
    venv's python (a runtime on PATH that records its arguments and runs the command)."""
    import os
    import subprocess

    image = tmp_path / "tf.sif"
    image.write_text("an image")
    venv = venv_of_this_python(tmp_path / "ambs", data["base"], container=image)
    runtime_dir = tmp_path / "runtime"
    runtime_dir.mkdir()
    (runtime_dir / "apptainer").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "runtime_args"}\nshift 2\n'
                                           f'exec "$@"\n')
    (runtime_dir / "apptainer").chmod(0o755)
    launcher = Path(wizard.__file__).parents[2] / "env_setup" / "generate_runscript.py"
    result = subprocess.run([str(system_like_python(tmp_path / "system")), str(launcher), "--venv_path", str(venv),
                             "--help"], capture_output=True, text=True,
                            env=dict(os.environ, PATH=f"{runtime_dir}:{os.environ['PATH']}"))
    assert result.returncode == 0 and "--venv_path" in result.stdout, result.stderr
    args = (tmp_path / "runtime_args").read_text().split()
    assert args[:4] == ["exec", str(image), str(venv / "bin" / "python"), str(launcher)]


def test_enter_with_no_run_ticked_says_so_and_asks_again(tmp_path, venv, data):
    """Enter with every run unticked at the meta-postprocessing's tick list says that one is needed and asks again
    (it did nothing, silently)."""
    terminal = generator_on_terminal(venv, tmp_path / "runscripts", "--step", "meta_postprocess")
    terminal.answer("Runs to compare", "i")        # every run unticked
    time.sleep(0.3)
    terminal.type(ENTER)
    terminal.expect("Nothing ticked: choose at least one (space ticks one, a ticks all), then Enter.")
    terminal.answer("Runs to compare", SPACE + ENTER)   # asked again, as offered: the first run unticked
    terminal.answer("Metric to compare")
    terminal.answer("Id of this comparison")
    terminal.answer("Plot skill scores")
    terminal.answer("Also plot the persistence curves")
    assert terminal.finish() == 0, terminal.screen[-3000:]
    config = json.loads(Path(variable_line(only_runscript(tmp_path), "ANALYSIS_CONFIG")).read_text())
    assert [Path(p).name for p in config["results"].values()] == [RUN2]


@pytest.mark.parametrize("columns", [80, 160])
def test_long_lines_break_between_words(tmp_path, venv, data, columns):
    """At 80 and 160 columns no line of the dialogue (questions, notes, guidance, reasons for a rejection) is cut
    inside a word by the terminal: every screen line is at most the width and ends at a word's end."""
    terminal = generator_on_terminal(venv, tmp_path / "runscripts", "--step", "preprocess1", rows=40,
                                     columns=columns)
    for question in ("Directory of the extracted netCDF files", "Years to preprocess", "Months to preprocess",
                     "Variables (channels"):
        terminal.answer(question)
    terminal.answer("SW corner of the domain", typed("help"))
    terminal.answer("SW corner of the domain", typed("43.5, 0.3"))
    terminal.answer("Grid points of the domain", typed("800, 3000"))
    terminal.shown_for(2.0)
    terminal.type(typed("8, 12"))
    terminal.answer("Number of MPI processes")
    assert terminal.finish() == 0, terminal.screen[-3000:]
    # a typed answer (a long path) may run on as typed; the dialogue's own words may not
    lines = [line for line in displayed(terminal.raw) if "/tmp" not in line]
    cut = [(line, following) for line, following in zip(lines, lines[1:])
           if len(line) >= columns - 1 and re.search(r"[A-Za-z]$", line) and re.match(r"[A-Za-z]", following)]
    assert not cut, "\n".join(f"{a!r} / {b!r}" for a, b in cut)
    assert not [line for line in lines if len(line) > columns]
    assert "The extracted grid: lat 43.5 to 48" in "".join(lines)  # the guidance was shown
