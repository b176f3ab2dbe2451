"""One engine per job: the lock file (jokr_engine/job_lock.py), and the real engine training on with its
stdout closed and refusing a job that another engine trains."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from jokr_engine import job_lock
from jokr_engine.errors import JokrError
from jokr_engine.job_lock import LOCK_FILE, JobLock, is_live, read_lock

from .engine_cli import REPO


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(folder, **fields):
    record = {"format": "jokr.lock", "version": 1, "pid": os.getpid(), "host": socket.gethostname(),
              "command": "train", "started": time.time(), "heartbeat": time.time(), **fields}
    (folder / LOCK_FILE).write_text(json.dumps(record))
    return record


def test_lock_is_exclusive_and_released(tmp_path):
    job = tmp_path / "job"
    with JobLock(job, "train") as lock:
        record = read_lock(job)
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and is_live(record)
        with pytest.raises(JokrError, match="already being trained by another engine") as refused:
            JobLock(job, "train").acquire()
        assert refused.value.code == "job_busy" and f"process {os.getpid()}" in refused.value.message
        assert lock.renew() and read_lock(job)["heartbeat"] >= record["heartbeat"]
    assert not (job / LOCK_FILE).exists()


@pytest.mark.parametrize("stale", ["dead process", "old heartbeat", "torn and old"])
def test_a_stale_lock_is_taken_over(tmp_path, stale):
    if stale == "dead process":
        write_lock(tmp_path, pid=dead_pid())
    elif stale == "old heartbeat":  # another host, or a reused pid: only the heartbeat tells
        write_lock(tmp_path, host="elsewhere", heartbeat=time.time() - job_lock.STALE_S - 1)
    else:
        (tmp_path / LOCK_FILE).write_text('{"pid": 12')
        old = time.time() - job_lock.STALE_S - 1
        os.utime(tmp_path / LOCK_FILE, (old, old))
    assert not is_live(read_lock(tmp_path))
    with JobLock(tmp_path, "train"):
        assert read_lock(tmp_path)["pid"] == os.getpid()
    assert sorted(os.listdir(tmp_path)) == []  # no lock, nothing moved aside left behind


def test_live_locks(tmp_path):
    write_lock(tmp_path, host="elsewhere")  # another machine, fresh heartbeat
    assert is_live(read_lock(tmp_path))
    (tmp_path / LOCK_FILE).write_text("")  # being created this very instant
    assert is_live(read_lock(tmp_path))
    with pytest.raises(JokrError, match="already being trained"):
        JobLock(tmp_path, "train").acquire()


def test_an_engine_whose_lock_was_taken_over_stops_writing(tmp_path):
    lock = JobLock(tmp_path, "train")
    lock.acquire()
    try:
        write_lock(tmp_path, pid=12345, host="elsewhere")  # taken over while this one stalled
        assert not lock.renew() and lock.lost.is_set()
    finally:
        lock.release()
    assert read_lock(tmp_path)["host"] == "elsewhere"  # the new holder's lock is left alone


def test_the_engine_trains_on_with_stdout_closed_and_refuses_a_busy_job(tmp_path, shared_data):
    """The Blender that started it is killed: its end of the stdout pipe closes. The engine keeps training
    and logging to events.jsonl; a second engine on the same job is refused and writes nothing there."""
    job = tmp_path / "job"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "jokr_engine", "train", "--a", str(shared_data / "cat"), "--a-count", "12",
            "--b", str(shared_data / "fox"), "--b-count", "12", "--job", str(job), "--preset", "tiny",
            "--set", "step1_iterations=60", "--set", "step2_iterations=10", "--set", "preview_every=1000"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        engine = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, cwd=REPO, env=env, text=True,
                                  start_new_session=True)
    try:
        first = engine.stdout.readline()  # one event read, then nobody listens any more
        engine.stdout.close()
        assert json.loads(first)["event"] == "started"
        assert is_live(read_lock(job))
        second = subprocess.run([sys.executable, "-m", "jokr_engine", "train", "--job", str(job), "--resume"],
                                capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        refusal = json.loads(second.stdout.splitlines()[-1])
        assert second.returncode == 1 and (refusal["event"], refusal["code"]) == ("error", "job_busy")
        assert engine.wait(timeout=300) == 0, log.read_text()[-2000:]
    finally:
        if engine.poll() is None:
            engine.kill()
    assert "BrokenPipeError" not in log.read_text()
    events = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("started") == 1 and not [e for e in events if e["event"] == "error"]
    assert events[-1]["event"] == "done" and events[-1]["status"] == "finished"
    assert {e["command"] for e in events} == {"train"}
    progress = [e for e in events if e["event"] == "progress"]
    assert (progress[-1]["step"], progress[-1]["iteration"]) == (2, 10)
    assert not (job / LOCK_FILE).exists()
