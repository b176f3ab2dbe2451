"""Install Engine in real bpy: the engine inside the extension zip, the operators and their drawing, a step
that fails (a bogus package index), Cancel, and (`-m install`, JOKR_TEST_INSTALL=1) a real install from the
package registries followed by a repair.

The runs here use real pip in a real virtual environment made with the test's Python (as Blender's own
Python makes it in Blender), driven by the installer's blocking pump: bpy as a module runs no timers."""

import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import bpy
import pytest

from .helpers import ADDON, REPO
from .test_panels import RecordingLayout, operators_drawn

sys.path.insert(0, str(REPO / "scripts"))
import build_extension  # noqa: E402

EXTENSION = "bl_ext.user_default.jokr"
BOGUS_INDEX = "https://jokr-no-such-index.invalid/simple"
INSTALL_TIMEOUT_S = 3600.0


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    return build_extension.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def engine_folder(built_zip, tmp_path_factory):
    """The zip's engine/ folder, unpacked: what the add-on finds next to its files once installed."""
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(built_zip) as archive:
        archive.extractall(folder, [n for n in archive.namelist() if n.startswith("engine/")])
    return folder / "engine"


@pytest.fixture
def installing(addon, engine_folder, monkeypatch, tmp_path):
    """The working-tree add-on with the zip's engine, online access allowed, installing into tmp_path/env."""
    from jokr_blender.blender import engine_install

    monkeypatch.setattr(engine_install, "ENGINE_FOLDER", str(engine_folder))
    bpy.context.preferences.system.use_online_access = True
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_install_dir = str(tmp_path / "env")
    yield engine_install, prefs
    if engine_install.is_installing():
        engine_install.installer.stop(grace_s=1.0)


@pytest.fixture
def offline_pip(monkeypatch):
    """pip that knows only the index it is given: no configuration file, no local wheels, no retries."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")


def _draw_preferences(prefs) -> list:
    calls = []
    holder = type("Prefs", (), {"layout": RecordingLayout(calls),
                                "__getattr__": lambda _self, name: getattr(prefs, name)})()
    type(prefs).draw(holder, bpy.context)
    return calls


def _labels(calls) -> list[str]:
    return [kwargs["text"] for name, _args, kwargs in calls if name == "label"]


def _lock_pins() -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in (REPO / "requirements.lock").read_text().splitlines())
    return {line for line in lines if line}


def test_the_zip_carries_the_engine_and_its_pins(built_zip, engine_folder):
    names = zipfile.ZipFile(built_zip).namelist()
    assert "engine/jokr_engine-0.1.0-py3-none-any.whl" in names and "engine/requirements.lock" in names
    assert "blender/engine_install.py" in names and "io/engine_install.py" in names
    wheel = zipfile.ZipFile(engine_folder / "jokr_engine-0.1.0-py3-none-any.whl")
    assert "jokr_engine/cli.py" in wheel.namelist() and "jokr_engine/train.py" in wheel.namelist()
    assert not [n for n in wheel.namelist() if "__pycache__" in n or n.startswith("tests/")]
    metadata = wheel.read("jokr_engine-0.1.0.dist-info/METADATA").decode()
    requires = {line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    assert requires == _lock_pins()  # the wheel asks for exactly what the shipped lock pins
    assert "Requires-Python: <3.12,>=3.11" in metadata
    assert "jokr-engine = jokr_engine.cli:main" in wheel.read("jokr_engine-0.1.0.dist-info/entry_points.txt").decode()
    assert (engine_folder / "requirements.lock").read_text() == (REPO / "requirements.lock").read_text()


def test_the_installed_extension_finds_its_engine_and_uninstall_leaves_the_install(bpy_module, built_zip, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    result = bpy.ops.extensions.package_install_files(filepath=str(built_zip), repo="user_default",
                                                      enable_on_install=True)
    try:
        assert result == {'FINISHED'}
        module = sys.modules[f"{EXTENSION}.blender.engine_install"]
        assert module.ENGINE_FOLDER.startswith(os.environ["BLENDER_USER_RESOURCES"])
        wheel, lock = sys.modules[f"{EXTENSION}.io.engine_install"].bundled_engine(module.ENGINE_FOLDER)
        assert os.path.isfile(wheel) and os.path.isfile(lock)
        prefs = bpy.context.preferences.addons[EXTENSION].preferences
        assert module.install_dir(prefs) == str(tmp_path / "data" / "jokr" / "engine")
        os.makedirs(os.path.join(module.install_dir(prefs), "venv"))
        (Path(module.install_dir(prefs)) / "install.log").write_text("=== finished\n")
    finally:
        import addon_utils

        addon_utils.disable(EXTENSION, default_set=True)
        repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
        bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="jokr")
    assert not os.path.exists(os.path.dirname(module.ENGINE_FOLDER))  # the extension is gone …
    assert (tmp_path / "data" / "jokr" / "engine" / "install.log").is_file()  # … the engine's install is not


def test_preferences_offer_install_engine(installing):
    engine_install, prefs = installing
    prefs.engine_install_dir = ""
    calls = _draw_preferences(prefs)
    drawn = {args[0] for name, args, _kw in calls if name == "prop"}
    assert {"engine_install_dir", "engine_torch_build", "engine_torch_index"} <= drawn
    operators = operators_drawn(calls)
    assert "jokr.install_engine" in operators and "jokr.cancel_engine_install" not in operators
    assert f"Empty: {engine_install.default_install_dir()}" in _labels(calls)
    assert bpy.ops.jokr.install_engine.poll() and not bpy.ops.jokr.cancel_engine_install.poll()


def test_success_fills_engine_python(installing, monkeypatch, tmp_path):
    """The outcome of a finished install, on a plan of quick stand-in steps (the real one: `-m install`)."""
    engine_install, prefs = installing
    from jokr_blender.io.engine_install import Plan, Step, TorchChoice

    version = '{"engine": "0.1.0", "device": "cpu", "device_name": "CPU"}'
    steps = tuple(Step(title, (sys.executable, "-c", code), "hint", 1.0)
                  for title, code in (("Create the Python environment", "print('made')"),
                                      ("Check the engine", f"print({version!r})")))
    python = str(tmp_path / "env" / "venv" / "bin" / "python")
    monkeypatch.setattr(engine_install, "install_plan",
                        lambda _prefs: Plan(str(tmp_path / "env"), python, TorchChoice("cpu", "", "test"), steps))
    prefs.engine_path = str(tmp_path / "checkout")
    assert bpy.ops.jokr.install_engine() == {'FINISHED'}
    assert engine_install.installer.pump(timeout=60)
    assert engine_install.poll_install() is None
    assert prefs.engine_python == python and prefs.engine_path == ""
    assert prefs.engine_status == "JOKR engine 0.1.0 on CPU"
    assert prefs.engine_install_status == f"Engine installed: JOKR engine 0.1.0 on CPU\nEngine Python is now {python}"
    assert engine_install.draw_status_bar not in bpy.types.STATUSBAR_HT_header._dyn_ui_initialize()
    shown = " ".join(_labels(_draw_preferences(prefs)))  # long lines are wrapped over several labels
    assert f"Engine installed: JOKR engine 0.1.0 on CPU Engine Python is now {python}" in shown


def test_install_needs_online_access(installing):
    bpy.context.preferences.system.use_online_access = False
    assert not bpy.ops.jokr.install_engine.poll()
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.jokr.install_engine()


def test_install_waits_for_running_engines(installing, monkeypatch):
    from jokr_blender.blender import session

    monkeypatch.setattr(session.manager, "is_running", lambda job_dir=None: True)
    with pytest.raises(RuntimeError, match="The engine is working on a job"):
        bpy.ops.jokr.install_engine()


def test_a_python_other_than_311_is_refused(installing, monkeypatch, tmp_path):
    engine_install, prefs = installing
    monkeypatch.setattr(engine_install, "blender_python", lambda: ("/opt/blender/python3.13", (3, 13, 2)))
    with pytest.raises(RuntimeError, match=r"Python is 3\.13\.2; the JOKR engine needs Python 3\.11"):
        bpy.ops.jokr.install_engine()
    assert "3.13.2" in prefs.engine_install_status and not (tmp_path / "env").exists()


def test_a_failing_step_is_named_with_what_to_do(installing, offline_pip, tmp_path):
    engine_install, prefs = installing
    engine_python = prefs.engine_python
    prefs.engine_torch_build = 'cpu'
    prefs.engine_torch_index = BOGUS_INDEX
    assert bpy.ops.jokr.install_engine() == {'FINISHED'}
    assert bpy.app.timers.is_registered(engine_install.poll_install)
    assert "Interrupted at step 1 of 6" in prefs.engine_install_status  # what stays should Blender quit now
    assert engine_install.installer.pump(timeout=600)
    assert engine_install.poll_install() is None
    run = engine_install.installer
    assert run.status == "failed" and run.index == 1
    assert prefs.engine_install_status.startswith("Install Engine failed at step 2 of 6: Install PyTorch ")
    assert "(CPU build)" in prefs.engine_install_status and "torch==" in prefs.engine_install_status
    assert f"PyTorch comes from the package index {BOGUS_INDEX}" in prefs.engine_install_status
    assert str(tmp_path / "env" / "install.log") in prefs.engine_install_status
    assert prefs.engine_python == engine_python  # untouched
    assert (tmp_path / "env" / "venv" / "bin" / "python").exists()  # step 1 did its work: the next run reuses it
    calls = _draw_preferences(prefs)
    assert any(text.startswith("Install Engine failed at step 2 of 6") for text in _labels(calls))
    assert "wm.path_open" in operators_drawn(calls) and "jokr.install_engine" in operators_drawn(calls)


def test_cancel_stops_the_running_step(installing, offline_pip, monkeypatch, tmp_path):
    engine_install, prefs = installing
    monkeypatch.setenv("PIP_RETRIES", "1000")  # pip keeps trying the bogus index until it is stopped
    prefs.engine_torch_build = 'cpu'
    prefs.engine_torch_index = BOGUS_INDEX
    assert bpy.ops.jokr.install_engine() == {'FINISHED'}
    run = engine_install.installer
    assert not bpy.ops.jokr.install_engine.poll()
    while engine_install.poll_install() and run.index < 1:
        time.sleep(0.05)
    assert run.running and run.index == 1 and run.process.poll() is None
    assert "Interrupted at step 2 of 6: Install PyTorch" in prefs.engine_install_status
    calls = _draw_preferences(prefs)
    progress = [(args, kw) for name, args, kw in calls if name == "progress"]
    assert progress == [((run.progress,), {"text": "Step 2 of 6: " + run.plan.steps[1].title})]
    assert 0.0 < run.progress < 0.1 and "jokr.cancel_engine_install" in operators_drawn(calls)
    status_calls = []
    engine_install.draw_status_bar(type("Header", (), {"layout": RecordingLayout(status_calls)})(), bpy.context)
    assert [kw["text"] for name, _a, kw in status_calls if name == "progress"] == [f"JOKR engine: {run.step_line()}"]
    assert engine_install.draw_status_bar in bpy.types.STATUSBAR_HT_header._dyn_ui_initialize()

    process = run.process
    assert bpy.ops.jokr.cancel_engine_install() == {'FINISHED'}
    assert run.pump(timeout=30)
    assert engine_install.poll_install() is None
    assert process.poll() is not None and run.status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # the whole group is gone
    assert prefs.engine_install_status.startswith("Install Engine was cancelled at step 2 of 6: Install PyTorch")
    assert engine_install.draw_status_bar not in bpy.types.STATUSBAR_HT_header._dyn_ui_initialize()
    assert bpy.ops.jokr.install_engine.poll()  # ready to run again (and repair)


@pytest.mark.install
@pytest.mark.skipif(os.environ.get("JOKR_TEST_INSTALL") != "1",
                    reason="a real install downloads PyTorch: set JOKR_TEST_INSTALL=1")
def test_real_install_from_the_registries_then_repair(bpy_module, built_zip, tmp_path, monkeypatch):
    """The extension as an artist installs it; Install Engine with the CPU build of PyTorch (its index from
    JOKR_TEST_TORCH_INDEX when set, e.g. a registry this machine reaches). Then the engine package is
    removed from the environment and Install Engine repairs it."""
    import addon_utils

    # Its `jokr-engine setup` writes weights: into a folder of its own, never the shared empty one that the
    # engine tests rely on to see "no weights".
    monkeypatch.setenv("JOKR_WEIGHTS_DIR", str(tmp_path / "weights"))

    bpy.context.preferences.system.use_online_access = True
    assert bpy.ops.extensions.package_install_files(filepath=str(built_zip), repo="user_default",
                                                    enable_on_install=True) == {'FINISHED'}
    try:
        module = sys.modules[f"{EXTENSION}.blender.engine_install"]
        prefs = bpy.context.preferences.addons[EXTENSION].preferences
        prefs.engine_install_dir = str(tmp_path / "engine env")  # a space in the path, as on many machines
        prefs.engine_torch_build = 'cpu'
        prefs.engine_torch_index = os.environ.get("JOKR_TEST_TORCH_INDEX", "")
        assert bpy.ops.jokr.install_engine() == {'FINISHED'}
        assert module.installer.pump(timeout=INSTALL_TIMEOUT_S)
        module.poll_install()
        run = module.installer
        assert run.status == "finished", f"{run.message}\n{run.hint}\n{Path(run.plan.log_path).read_text()[-4000:]}"
        python = str(tmp_path / "engine env" / "venv" / "bin" / "python")
        assert prefs.engine_python == python and prefs.engine_path == ""
        assert prefs.engine_status.startswith("JOKR engine 0.1.0 on ")
        assert bpy.ops.jokr.check_engine(wait=True) == {'FINISHED'}

        # Damage the install: the engine package is gone. Install Engine again repairs it.
        (package,) = (tmp_path / "engine env" / "venv" / "lib").glob("python3.11/site-packages/jokr_engine")
        shutil.rmtree(package)
        with pytest.raises(RuntimeError, match="No module named jokr_engine"):
            bpy.ops.jokr.check_engine(wait=True)
        log_size = Path(run.plan.log_path).stat().st_size
        assert bpy.ops.jokr.install_engine(wait=True) == {'FINISHED'}
        assert module.installer.status == "finished" and package.is_dir()
        assert bpy.ops.jokr.check_engine(wait=True) == {'FINISHED'}
        second_run = Path(run.plan.log_path).read_text()[log_size:]
        assert "Requirement already satisfied: torch==" in second_run  # kept, not downloaded again
    finally:
        addon_utils.disable(EXTENSION, default_set=True)
        repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
        bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="jokr")
