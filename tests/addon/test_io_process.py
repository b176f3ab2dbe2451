"""The job manager, driving tests/addon/fake_engine.py as its child process, without bpy."""

import json
import os
import signal
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


def stop_everything(manager):
    """Test cleanup: every run still open is cancelled and, if it does not stop, killed."""
    for job_dir, _state in manager.known_jobs():
        manager.cancel(job_dir, grace_s=1.0)
    manager.pump(timeout=10)


@pytest.fixture
def manager(jio):
    manager = jio.process.JobManager()
    yield manager
    stop_everything(manager)


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
    manager.start(str(tmp_path), argv(tmp_path), "train", env("noise"))  # noise on stdout and in events.jsonl
    assert manager.pump(timeout=30)
    assert manager.state(str(tmp_path)).state == "finished"
    assert "[events.jsonl, not an event] a line that is not an event" in (tmp_path / "engine.log").read_text()


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


def wait_for(condition, manager=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        if manager is not None:
            manager.poll()
        time.sleep(0.02)


def train_events(job):
    with open(job / "events.jsonl") as stream:
        events = [json.loads(line) for line in stream if line.startswith("{")]
    return [e for e in events if e.get("command") == "train"]


def test_engines_outlive_their_manager_and_a_new_one_follows_them(jio, manager, tmp_path):
    """Blender quits (release_all) or is killed: the engine trains on; a new Blender follows it to the end."""
    called = []
    slow = env(JOKR_FAKE_ITERATIONS="30", JOKR_FAKE_SLEEP="0.05")
    run = manager.start(str(tmp_path), argv(tmp_path), "train", slow, called.append)
    with pytest.raises(jio.process.EngineStartError, match="already running"):
        manager.start(str(tmp_path), argv(tmp_path), "train", env())
    wait_for(lambda: manager.state(str(tmp_path)).progress, manager)
    manager.release_all(stop=False)
    assert not manager.is_running() and run.process.poll() is None  # still training
    later = jio.process.JobManager()
    state = later.state(str(tmp_path))
    followed = later.run(str(tmp_path))
    assert followed is not None and not followed.owned and state.state == "training"
    assert state.followed_engine.startswith(f"process {run.process.pid} on ")
    assert state.progress.iteration >= 1  # replayed from events.jsonl
    assert later.pump(timeout=30)
    assert state.state == "finished" and state.followed_engine == "" and followed.status == "finished"
    assert run.process.wait(timeout=10) == 0 and called == []  # callbacks were dropped with the manager
    assert [e["event"] for e in train_events(tmp_path)].count("started") == 1
    assert not (tmp_path / "engine.lock").exists()


def test_release_all_with_stop_checkpoints_and_stops_the_engines_it_started(jio, manager, tmp_path):
    run = manager.start(str(tmp_path), argv(tmp_path), "train", env(JOKR_FAKE_ITERATIONS="1000"))
    wait_for(lambda: manager.state(str(tmp_path)).progress, manager)
    manager.release_all(stop=True)
    assert run.process.wait(timeout=10) == 0
    last = train_events(tmp_path)[-1]
    assert (last["event"], last["status"]) == ("done", "cancelled")
    assert jio.job_state.recover(str(tmp_path)).state == "cancelled"


def test_a_second_manager_follows_and_never_starts_a_second_engine(jio, manager, tmp_path):
    manager.start(str(tmp_path), argv(tmp_path), "train", env(JOKR_FAKE_ITERATIONS="400"))
    wait_for(lambda: (tmp_path / "engine.lock").exists(), manager)
    other = jio.process.JobManager()
    try:
        with pytest.raises(jio.process.EngineStartError, match="Another engine is training this job"):
            other.start(str(tmp_path), argv(tmp_path, "train", "--resume"), "train", env())
        followed = other.run(str(tmp_path))
        assert followed is not None and not followed.owned  # and the panel follows it
        wait_for(lambda: other.state(str(tmp_path)).progress, other)
        assert other.cancel(str(tmp_path), grace_s=20)  # Cancel from there (the add-on asks first)
        assert other.pump(timeout=20) and manager.pump(timeout=20)
        assert other.state(str(tmp_path)).state == manager.state(str(tmp_path)).state == "cancelled"
        assert [e["event"] for e in train_events(tmp_path)].count("started") == 1
    finally:
        stop_everything(other)


def test_two_managers_starting_at_once_end_with_one_engine(jio, manager, tmp_path):
    """Both spawn an engine before either holds the lock: the engine that loses the lock writes nothing to
    the job, and its manager follows the one that won."""
    other = jio.process.JobManager()
    try:
        slow = env(JOKR_FAKE_ITERATIONS="20", JOKR_FAKE_SLEEP="0.05")
        runs = [m.start(str(tmp_path), argv(tmp_path), "train", slow) for m in (manager, other)]
        assert manager.pump(timeout=30) and other.pump(timeout=30)
        assert sorted(run.process.returncode for run in runs) == [0, 1]  # the loser refused the busy job
        assert manager.state(str(tmp_path)).state == other.state(str(tmp_path)).state == "finished"
        assert [e["event"] for e in train_events(tmp_path)].count("started") == 1
        assert not [e for e in train_events(tmp_path) if e["event"] == "error"]
    finally:
        stop_everything(other)


def test_followed_engine_killed_fails_resumably_and_its_stale_lock_is_taken_over(jio, manager, tmp_path):
    run = manager.start(str(tmp_path), argv(tmp_path), "train", env(JOKR_FAKE_ITERATIONS="1000"))
    wait_for(lambda: manager.state(str(tmp_path)).progress, manager)
    manager.cancel(str(tmp_path), grace_s=20)  # a checkpoint to resume from …
    assert manager.pump(timeout=20)
    manager.start(str(tmp_path), argv(tmp_path, "train", "--resume"), "train", env(JOKR_FAKE_ITERATIONS="1000"))
    wait_for(lambda: (tmp_path / "engine.lock").exists(), manager)
    run = manager.run(str(tmp_path))
    manager.release_all()
    follower = jio.process.JobManager()
    assert follower.state(str(tmp_path)).state in ("starting", "training")
    assert follower.run(str(tmp_path)) is not None and not follower.run(str(tmp_path)).owned
    os.kill(run.process.pid, signal.SIGKILL)  # … then the engine is killed: its lock stays, stale
    run.process.wait(timeout=10)
    assert follower.pump(timeout=10)
    state = follower.state(str(tmp_path))
    assert state.state == "failed" and "process is gone" in state.error.message
    assert jio.job_state.can_resume(state, str(tmp_path)) and (tmp_path / "engine.lock").exists()
    follower.start(str(tmp_path), argv(tmp_path, "train", "--resume"), "train", env(JOKR_FAKE_SLEEP="0"))
    assert follower.pump(timeout=30) and follower.state(str(tmp_path)).state == "finished"
    assert not (tmp_path / "engine.lock").exists()


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
