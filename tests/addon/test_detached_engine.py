"""Training outlives Blender, with the REAL engine (`--preset tiny`, shortened) and real Blender processes
(bpy subprocesses): a Blender starts a training and is killed with SIGKILL; the engine finishes the job;
a second Blender opened meanwhile follows it read-only and cannot start another engine on it; a new
Blender opened after the kill follows it to the end.

The engine is held (SIGSTOP) while the other Blenders open the file, so that they meet it training however
fast or slow this machine is; held for far less than the lock's STALE_S, it still counts as live."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import ENGINE_PYTHON, REPO, USER_RESOURCES_ENV, clip_folder

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not os.path.isfile(ENGINE_PYTHON),
                       reason=f"engine interpreter {ENGINE_PYTHON} not found (set JOKR_TEST_ENGINE_PYTHON)"),
    pytest.mark.skipif(clip_folder("cat") is None or clip_folder("fox") is None,
                       reason="sample clips cat and fox not found (demo/data or /work/shared/data)"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL/SIGSTOP"),
]

STEP1, STEP2 = 30, 10

BLENDER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bpy
from tests.addon.helpers import ADDON, ENGINE_PYTHON, REPO, clip_folder, enable_addon, new_image_strip
role, blend = sys.argv[2], Path(sys.argv[3])
bpy.ops.wm.read_factory_settings(use_empty=True)
enable_addon()
prefs = bpy.context.preferences.addons[ADDON].preferences
prefs.engine_python, prefs.engine_path, prefs.device = ENGINE_PYTHON, str(REPO), 'cpu'
from jokr_blender.blender import compat, session, timers

def report(tag, **fields):
    print(tag, json.dumps(fields), flush=True)

def step():
    session.manager.pump(timeout=0.2)
    timers.poll_jobs()

if role == "start":
    scene = compat.sequencer_scene(bpy.context)
    a = new_image_strip(scene, "cat", clip_folder("cat") / "frames", 0, 12, 1, 1)
    b = new_image_strip(scene, "fox", clip_folder("fox") / "frames", 0, 12, 2, 1)
    settings = scene.jokr
    settings.clip_a.strip, settings.clip_b.strip, settings.job_name = a.name, b.name, "job"
    settings.preset = 'tiny'
    settings.step1_iterations, settings.step2_iterations = int(sys.argv[4]), int(sys.argv[5])
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    assert bpy.ops.jokr.train() == {'FINISHED'}
    bpy.ops.wm.save_mainfile()
    run = session.manager.run(bpy.path.abspath(settings.job_dir))
    while settings.iteration < 1:
        step()
        assert run.process.poll() is None, open(run.log_path).read()[-3000:]
    report("TRAINING", engine=run.process.pid, job=bpy.path.abspath(settings.job_dir))
    while True:  # this Blender goes on until it is killed
        step()

bpy.ops.wm.open_mainfile(filepath=str(blend))  # load_post: the add-on looks for the job's engine
settings = bpy.context.scene.jokr
run = session.manager.run(bpy.path.abspath(settings.job_dir))
try:
    bpy.ops.jokr.train()
    train = "started"
except RuntimeError as error:
    train = str(error)
report("FOLLOWING", state=settings.state, iteration=settings.iteration, followed=settings.followed_engine,
       owned=run.owned if run else None, train=train, resume=bpy.ops.jokr.resume.poll(),
       cancel=bpy.ops.jokr.cancel.poll())
if role == "follow":
    while session.manager.is_running():
        step()
    report("FINAL", state=settings.state, step=settings.step, iteration=settings.iteration,
           followed=settings.followed_engine, can_resume=settings.can_resume)
"""


def blender(script, role, blend, *extra):
    env = {**os.environ, USER_RESOURCES_ENV: str(blend.parent / f"blender-user-{role}"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(REPO), role, str(blend), *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def read_report(process, tag):
    for line in process.stdout:
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    process.wait(timeout=30)
    raise AssertionError(f"no {tag} line; exit {process.returncode}:\n{process.stderr.read()[-3000:]}")


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\nState:\tZ" not in status.read()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_killed_blender_leaves_the_engine_training_and_a_new_blender_follows_it_to_the_end(tmp_path):
    script = tmp_path / "blender.py"
    script.write_text(BLENDER)
    blend = tmp_path / "shot.blend"
    first = blender(script, "start", blend, STEP1, STEP2)
    engine = None
    try:
        training = read_report(first, "TRAINING")
        engine = training["engine"]
        job = Path(training["job"])
        os.kill(engine, signal.SIGSTOP)  # hold it while the other Blenders open the file
        # A second Blender on the same .blend, while the first one lives: it follows, read-only.
        second = blender(script, "look", blend)
        looked = read_report(second, "FOLLOWING")
        assert second.wait(timeout=120) == 0, second.stderr.read()[-3000:]
        assert looked["state"] == "training" and looked["owned"] is False and looked["cancel"]
        assert looked["followed"].startswith(f"process {engine} on ")
        assert "An engine this Blender did not start is training this job" in looked["train"]
        assert not looked["resume"]

        first.kill()  # SIGKILL: no atexit, no add-on code runs
        first.wait(timeout=30)
        assert alive(engine), "the engine died with the Blender that started it"
        third = blender(script, "follow", blend)
        following = read_report(third, "FOLLOWING")
        os.kill(engine, signal.SIGCONT)
        assert following["state"] == "training" and following["followed"].startswith(f"process {engine} on ")
        final = read_report(third, "FINAL")
        assert third.wait(timeout=60) == 0, third.stderr.read()[-3000:]
    finally:
        for process in (first, locals().get("second"), locals().get("third")):
            if process is not None and process.poll() is None:
                process.kill()
        if engine is not None and alive(engine):
            os.kill(engine, signal.SIGCONT)
    assert (final["state"], final["step"], final["iteration"]) == ("finished", 2, STEP2)
    assert final["followed"] == "" and not final["can_resume"]
    events = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["command"] == "train"].count("started") == 1  # one engine
    assert (events[-1]["event"], events[-1]["status"]) == ("done", "finished")
    assert not (job / "engine.lock").exists()
    deadline = time.monotonic() + 30  # it released the lock after its last event, and exits
    while alive(engine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(engine)
