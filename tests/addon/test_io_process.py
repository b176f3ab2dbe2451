"""The job manager, driving tests/addon/fake_engine.py as its child process, without bpy."""

import os
import subprocess
import sys
import time

import pytest

from .helpers import FAKE_ENGINE, io_package


def argv(job, command="train", *extra):
    args = [sys.executable, str(FAKE_ENGINE), command, "--job", str(job)]
    if command == "train" and "--resume" not in extra:
        args += ["--a", "/a", "--b", "/b", "--preset", "tiny"]
    return args + list(extra)


def env(mode="finish", **extra):
    return io_package().process.engine_environment(base={**os.environ, "JOKR_FAKE_MODE": mode, **extra})


@pytest.fixture
def manager(jio):
    manager = jio.process.JobManager()
    yield manager
    manager.stop_all(grace_s=1.0)


def test_runs_to_the_end_in_the_background(jio, manager, tmp_path):
    finished = []
    run = manager.start(str(tmp_path), argv(tmp_path), "train", env(), finished.append)
    assert manager.is_running(str(tmp_path))
    assert manager.state(str(tmp_path)).state == "starting"  # start() returns at once
    assert manager.pump(timeout=30)
    state = manager.state(str(tmp_path))
    assert (state.state, state.progress.step, state.progress.iteration) == ("finished", 2, 5)
    assert state.preview_path.endswith("latest.png") and state.overall_fraction() == 1.0
    assert finished == [run] and (run.status, run.returncode) == ("finished", 0)
    assert run.outputs["checkpoint"].endswith("latest.json")
    assert "--- " in (tmp_path / "engine.log").read_text()  # each run is logged


def test_poll_applies_events_on_the_callers_thread_in_order(jio, manager, tmp_path):
    manager.start(str(tmp_path), argv(tmp_path), "train", env(JOKR_FAKE_SLEEP="0.01"))
    seen = []
    deadline = time.monotonic() + 30
    while manager.is_running() and time.monotonic() < deadline:
        seen += [event.name for _job, event in manager.poll()]
        time.sleep(0.01)
    assert seen[0] == "started" and seen[-1] == "done" and seen.count("progress") == 10


def test_lines_that_are_not_events_go_to_the_log(jio, manager, tmp_path):
    manager.start(str(tmp_path), argv(tmp_path), "train", env("noise"))
    assert manager.pump(timeout=30)
    assert manager.state(str(tmp_path)).state == "finished"
    assert "some library printing to stdout" in (tmp_path / "engine.log").read_text()


def test_crash_fails_with_the_last_log_line_and_is_persisted(jio, manager, tmp_path):
    run = manager.start(str(tmp_path), argv(tmp_path), "train", env("crash"))
    assert manager.pump(timeout=30)
    state = manager.state(str(tmp_path))
    assert state.state == "failed" and run.status == "failed" and run.returncode == 1
    assert "RuntimeError: CUDA went away" in state.error.message
    assert "Traceback" in (tmp_path / "engine.log").read_text()
    assert jio.job_state.recover(str(tmp_path)).state == "failed"  # what a reopened .blend shows


def test_engine_error_event(jio, manager, tmp_path):
    run = manager.start(str(tmp_path), argv(tmp_path), "train", env("bad-input"))
    assert manager.pump(timeout=30)
    assert run.returncode == 2 and run.error.code == "bad_input"
    assert manager.state(str(tmp_path)).error.message.startswith("clip /a has no frames")
    assert jio.job_state.recover(str(tmp_path)).error.code == "bad_input"


def test_cancel_checkpoints_and_resume_continues(jio, manager, tmp_path):
    slow = env(JOKR_FAKE_SLEEP="0.2", JOKR_FAKE_ITERATIONS="50")
    manager.start(str(tmp_path), argv(tmp_path), "train", slow)
    while not manager.state(str(tmp_path)).progress:
        manager.poll()
        time.sleep(0.02)
    assert manager.cancel(str(tmp_path), grace_s=20)
    assert (tmp_path / "CANCEL").exists()
    assert manager.state(str(tmp_path)).state == "cancelling"
    assert manager.pump(timeout=10)
    state = manager.state(str(tmp_path))
    assert state.state == "cancelled" and state.checkpoint_path
    assert jio.job_state.can_resume(state, str(tmp_path))
    manager.start(str(tmp_path), argv(tmp_path, "train", "--resume"), "train", env(JOKR_FAKE_ITERATIONS="50",
                                                                                  JOKR_FAKE_SLEEP="0"))
    assert not (tmp_path / "CANCEL").exists()
    assert manager.pump(timeout=30)
    assert manager.state(str(tmp_path)).state == "finished"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent (the fake engine) died before reaping it.
    status = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(status.strip()) and not status.strip().startswith("Z")


def test_stubborn_engine_is_terminated_then_its_group_killed(jio, manager, tmp_path):
    run = manager.start(str(tmp_path), argv(tmp_path), "train", env("stubborn"))
    while not (tmp_path / "grandchild.pid").exists() or not manager.state(str(tmp_path)).progress:
        manager.poll()
        time.sleep(0.02)
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    started = time.monotonic()
    manager.cancel(str(tmp_path), grace_s=1.0)
    assert manager.pump(timeout=10)
    assert 1.0 <= time.monotonic() - started < 5
    assert run.terminated and run.returncode == -9
    assert manager.state(str(tmp_path)).state == "cancelled"
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the engine's own child survived the group kill"


def test_stop_all_stops_everything_and_drops_callbacks(jio, manager, tmp_path):
    called = []
    manager.start(str(tmp_path / "one"), argv(tmp_path / "one"), "train", env("stubborn"), called.append)
    manager.start(str(tmp_path / "two"), argv(tmp_path / "two"), "train",
                  env(JOKR_FAKE_ITERATIONS="1000", JOKR_FAKE_SLEEP="0.05"), called.append)
    with pytest.raises(jio.process.EngineStartError, match="already running"):
        manager.start(str(tmp_path / "two"), argv(tmp_path / "two"), "train", env())
    time.sleep(0.5)
    manager.stop_all(grace_s=1.0)
    assert not manager.is_running() and called == []
    assert manager.state(str(tmp_path / "two")).state == "cancelled"


def test_missing_interpreter(jio, manager, tmp_path):
    with pytest.raises(jio.process.EngineStartError, match="not found"):
        manager.start(str(tmp_path), ["/no/such/python", "-m", "jokr_engine"], "train", env())
    assert manager.state(str(tmp_path)).state == "idle"


def test_check_engine(jio, tmp_path):
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{FAKE_ENGINE}' \"$@\"\n")
    fake.chmod(0o755)
    info = jio.process.check_engine(str(fake), env())
    assert (info.version, info.device) == ("0.0-fake", "Fake CPU")
    with pytest.raises(jio.process.EngineStartError, match="No module named 'torch'"):
        jio.process.check_engine(str(fake), env("missing-torch"))
    with pytest.raises(jio.process.EngineStartError, match="not found"):
        jio.process.check_engine(str(tmp_path / "nope"), env())


def test_environment(jio):
    result = jio.process.engine_environment("/engine", base={"PYTHONHOME": "/blender", "PYTHONPATH": "/x"})
    assert result == {"PYTHONPATH": os.pathsep.join(["/engine", "/x"]), "PYTHONUNBUFFERED": "1"}
