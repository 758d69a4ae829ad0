"""Tests of the shared helpers: atomic writes, JSON errors, MPI distribution, settings, the source scan of registries."""
import json
import textwrap

import pytest

from fixtures.common import REPO_ROOT, assert_user_error, run_module
from video_prediction_tools.utils import io, parallel, settings
from video_prediction_tools.utils.errors import UserError


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_path_keeps_old_version_until_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("new")
            raise RuntimeError
    assert target.read_text() == "old"
    io.write_text(target, "new")
    assert target.read_text() == "new"


def test_atomic_outputs_get_usual_permissions(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        io.write_text(tmp_path / "f.txt", "x")
        with io.atomic_directory(tmp_path / "d"):
            pass
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_atomic_directory_replaces_whole_directory(tmp_path):
    target = tmp_path / "checkpoint_5"
    with io.atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with io.atomic_directory(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_5"]


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "split.json"
    bad.write_text('{"train": [1, 2,,]}')
    with pytest.raises(UserError, match=r"split.json is not valid JSON: .* line 1"):
        io.read_json(bad, what="data split")
    with pytest.raises(UserError, match="data split not found"):
        io.read_json(tmp_path / "missing.json", what="data split")
    io.write_json(tmp_path / "ok.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"b": 1, "a": [1, 2]}


def test_run_units_serial_returns_in_order_and_reports_all_failures():
    assert parallel.run_units([3, 1, 2], lambda x: x * 10) == [30, 10, 20]

    def work(x):
        if x == 2:
            raise UserError("bad month")
        if x == 3:
            raise ZeroDivisionError("boom")
        return x

    with pytest.raises(UserError, match=r"2 of 3 unit\(s\) failed: 2: bad month; 3: ZeroDivisionError: boom"):
        parallel.run_units([1, 2, 3], work)


def test_file_system_errors_of_units_and_root_work_become_one_line(tmp_path):
    def unwritable(unit):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out" / f"{unit}.nc"))

    with pytest.raises(UserError, match=rf"1 of 1 unit\(s\) failed: 7: cannot create or write {tmp_path}/out/7.nc: "
                                        rf"Permission denied \(check that the directory {tmp_path}/out exists"):
        parallel.run_units([7], unwritable)
    with pytest.raises(UserError, match=rf"cannot create or write {tmp_path}/out/0.nc: Permission denied"):
        parallel.on_root(lambda: unwritable(0))
    with pytest.raises(FileNotFoundError):  # not a file-system error the user fixes in the output directory
        parallel.on_root(lambda: open(tmp_path / "missing"))


def test_check_writable_directory(tmp_path):
    io.check_writable_directory(tmp_path / "new" / "deeper", "--out")  # created later: its parent is writable
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=rf"--out {tmp_path}/file/sub: {tmp_path}/file is not a directory"):
        io.check_writable_directory(tmp_path / "file" / "sub", "--out")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("outcome", ["success", "user error"])
def test_run_cli_freezes_the_objects_before_the_exit(outcome, capsys):
    # frozen objects are skipped by the interpreter's last garbage collection (about a second after TensorFlow)
    import gc
    from video_prediction_tools.utils.errors import USER_ERROR_EXIT_CODE, run_cli

    def main(argv):
        if outcome == "user error":
            raise UserError("--year 1800: no data")
        return 0

    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(main)
        assert exit_info.value.code == (0 if outcome == "success" else USER_ERROR_EXIT_CODE)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process goes on collecting as usual


SCRIPT = textwrap.dedent("""
    import json, sys
    from video_prediction_tools.utils import parallel
    from video_prediction_tools.utils.errors import UserError, run_cli

    def main(argv):
        fail = sys.argv[1] == "fail"
        def work(unit):
            if fail and unit == 4:
                raise UserError("unit four is corrupt")
            return {"unit": unit, "rank": parallel.rank()}
        results = parallel.run_units(list(range(5)), work, label=lambda u: f"unit {u}")
        if parallel.rank() == 0:
            print(json.dumps({"size": parallel.size(), "units": [r["unit"] for r in results],
                              "ranks": sorted({r["rank"] for r in results})}))

    run_cli(main)
""")


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2, 7])
def test_run_units_under_mpiexec(tmp_path, ranks):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    import subprocess, sys
    from fixtures.common import BIN_DIR
    ok = subprocess.run([str(BIN_DIR / "mpiexec"), "-n", str(ranks), sys.executable, str(script), "ok"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["size"] == ranks and out["units"] == [0, 1, 2, 3, 4]
    assert out["ranks"] == list(range(min(ranks, 5)))
    bad = subprocess.run([str(BIN_DIR / "mpiexec"), "-n", str(ranks), sys.executable, str(script), "fail"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert bad.stderr.count("ERROR: 1 of 5 unit(s) failed: unit 4: unit four is corrupt") == 1, bad.stderr
    assert "Traceback" not in bad.stderr


def test_settings_round_trip_and_base_tree(tmp_path, monkeypatch):
    venv = tmp_path / "venvs" / "myenv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    base = tmp_path / "base"
    result = run_module("video_prediction_tools.utils.settings", "write", venv, "--base_dir", base, "--hpc", "1")
    assert result.returncode == 0, result.stderr
    for sub in settings.BASE_SUBDIRS:
        assert (base / sub).is_dir()
    read = settings.read_settings(venv)
    assert (read.venv_name, read.base_dir, read.hpc, read.container) == ("myenv", str(base.resolve()), True, None)
    assert read.runscript_dir == REPO_ROOT / "HPC_scripts"
    missing_parent = run_module("video_prediction_tools.utils.settings", "write", venv, "--base_dir",
                                tmp_path / "no" / "such", "--hpc", "0")
    assert_user_error(missing_parent, "parent directory", "does not exist")
    with pytest.raises(UserError, match="virtual environment nope not found"):
        settings.resolve_venv("nope")


def test_source_scan_finds_registered_classes_without_importing_their_modules(tmp_path):
    from video_prediction_tools.utils.source_scan import look_up, registered_modules

    package = tmp_path / "scanned"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text('@register_thing("a")\nclass A:\n    pass\n\n\n@other("b")\nclass B:\n    pass\n\n\n'
                                    'register_thing("not a decorator")\n')
    (package / "two.py").write_text('raise RuntimeError("imported")\n\n\n@register_thing("d", extra=1)\nclass D:\n'
                                    '    pass\n')
    found = registered_modules([str(package)], "scanned", "register_thing")
    assert found == {"a": "scanned.one", "d": "scanned.two"}
    assert look_up({"a": "the class A"}, "a", lambda: found, "thing") == "the class A"
    with pytest.raises(UserError, match="unknown thing 'z'; known things: a, d"):
        look_up({}, "z", lambda: found, "thing")
