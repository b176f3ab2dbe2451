"""The job state machine and its recovery from events.jsonl, without bpy."""

import json


def event(jio, name, **fields):
    return jio.protocol.make_event(name, 1.0, **fields)


def write_events(path, records, torn_tail=""):
    with open(path / "events.jsonl", "w") as stream:
        for record in records:
            stream.write(json.dumps({"schema": "jokr.events/1", "time": 1.0, **record}) + "\n")
        stream.write(torn_tail)


PLAN = [{"step": 1, "iterations": 100}, {"step": 2, "iterations": 50}]


def test_training_lifecycle(jio):
    state = jio.job_state.JobState()
    assert state.state == "idle"
    state.mark_starting("train")
    assert state.state == "starting" and state.run_is_open()
    state.apply(event(jio, "started", command="train", plan=PLAN, device_name="CPU"))
    state.apply(event(jio, "progress", step=1, iteration=50, of=100, losses={"kp": 1.0}, eta_s=30.0))
    assert (state.state, state.device) == ("training", "CPU")
    assert state.overall_fraction() == 50 / 150
    state.apply(event(jio, "progress", step=2, iteration=25, of=50))
    assert state.overall_fraction() == 125 / 150
    state.apply(event(jio, "preview", path="/p.png"))
    state.mark_cancelling()
    assert state.state == "cancelling"
    state.apply(event(jio, "checkpoint", step=2, iteration=25, path="/c", reason="cancel"))
    state.apply(event(jio, "done", command="train", status="cancelled", outputs={}))
    assert (state.state, state.preview_path, state.checkpoint_path) == ("cancelled", "/p.png", "/c")
    assert not state.run_is_open()


def test_error_then_successful_resume_clears_it(jio):
    state = jio.job_state.JobState()
    state.apply(event(jio, "started", command="train", plan=PLAN))
    state.apply(event(jio, "error", message="loss is NaN", hint="lower the learning rate",
                      code="non_finite_loss"))
    assert state.state == "failed" and state.error.code == "non_finite_loss"
    state.apply(event(jio, "started", command="train", plan=PLAN, resumed_from={"step": 1, "iteration": 10}))
    assert state.state == "training" and state.error is None
    state.apply(event(jio, "done", command="train", status="finished", outputs={}))
    assert state.state == "finished" and state.overall_fraction() == 1.0


def test_tasks_do_not_change_the_training_state(jio):
    state = jio.job_state.JobState()
    state.apply(event(jio, "started", command="train", plan=PLAN))
    state.apply(event(jio, "done", command="train", status="finished", outputs={}))
    state.mark_starting("render")
    state.apply(event(jio, "started", command="render"))
    state.apply(event(jio, "error", message="bad keypoints", code="bad_keypoints"))
    assert state.state == "finished"
    task = state.task
    assert (task.command, task.status, task.error.message) == ("render", "failed", "bad keypoints")
    state.mark_starting("keypoints")
    state.apply(event(jio, "done", command="keypoints", status="finished", outputs={"keypoints": "/k.json"}))
    assert (state.task.status, state.task.outputs) == ("finished", {"keypoints": "/k.json"})
    state.note_task("8 empties keyed")
    assert state.task.note == "8 empties keyed"


def test_exit_without_outcome(jio):
    state = jio.job_state.JobState()
    state.mark_starting("train")
    closing = state.outcome_for_exit(1, False, "ModuleNotFoundError: No module named 'torch'", 5.0)
    assert closing.name == "error" and "No module named 'torch'" in closing.get("message")
    state.apply(closing)
    assert state.state == "failed" and "exit code 1" in state.error.message
    assert state.outcome_for_exit(1, False, "", 6.0) is None  # already closed
    state.mark_starting("train")
    forced = state.outcome_for_exit(-9, True, "", 7.0)
    state.apply(forced)
    assert state.state == "cancelled"


def test_recovery_from_events_file(jio, tmp_path):
    write_events(tmp_path, [
        {"event": "started", "command": "train", "plan": PLAN, "preset": "tiny"},
        {"event": "progress", "step": 1, "iteration": 100, "of": 100},
        {"event": "preview", "path": "/p.png"},
        {"event": "checkpoint", "step": 1, "iteration": 100, "path": "/c", "reason": "step_end"},
        {"event": "progress", "step": 2, "iteration": 10, "of": 50},
        {"event": "done", "command": "train", "status": "cancelled", "outputs": {}},
        {"event": "done", "command": "render", "status": "finished", "outputs": {"frames": 12}},
    ], torn_tail='{"schema": "jokr.events/1", "event": "progr')
    with open(tmp_path / "events.jsonl", "a") as stream:
        stream.write("\nnot json at all\n")
    state = jio.job_state.recover(str(tmp_path))
    assert (state.state, state.preset, state.preview_path) == ("cancelled", "tiny", "/p.png")
    assert (state.progress.step, state.progress.iteration) == (2, 10)
    assert (state.task.command, state.task.status) == ("render", "finished")
    assert not jio.job_state.can_resume(state, str(tmp_path))  # no checkpoint file
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text("{}")
    assert jio.job_state.can_resume(state, str(tmp_path))


def test_recovery_of_an_interrupted_run(jio, tmp_path):
    write_events(tmp_path, [{"event": "started", "command": "train", "plan": PLAN},
                            {"event": "progress", "step": 1, "iteration": 5, "of": 100}])
    state = jio.job_state.recover(str(tmp_path))
    assert state.state == "failed" and "interrupted" in state.error.message
    assert jio.job_state.recover(str(tmp_path / "nothing")).state == "idle"


def test_appended_outcome_is_recovered(jio, tmp_path):
    job_state = jio.job_state
    write_events(tmp_path, [{"event": "started", "command": "train", "plan": PLAN}])
    crash = jio.protocol.make_event("error", 2.0, message="engine died", hint="see log", code="internal",
                                    command="train")
    assert job_state.append_event(str(tmp_path), crash)
    render_error = jio.protocol.make_event("error", 3.0, message="no frames", code="bad_input", command="render")
    assert job_state.append_event(str(tmp_path), render_error)
    assert not job_state.append_event(str(tmp_path / "gone"), crash)
    state = job_state.recover(str(tmp_path))
    assert state.state == "failed" and state.error.message == "engine died"
    assert (state.task.command, state.task.status) == ("render", "failed")


def test_event_tail_reads_complete_lines_once(jio, tmp_path):
    tail = jio.job_state.EventTail(str(tmp_path))
    assert tail.read() == ([], [])  # no file yet
    line = json.dumps({"schema": "jokr.events/1", "event": "progress", "time": 1.0, "step": 1, "iteration": 3,
                       "of": 9})
    with open(tmp_path / "events.jsonl", "w") as stream:
        stream.write(line + "\nnot an event\n" + line[:20])  # the engine is still writing the last line
    events, malformed = tail.read()
    assert [e.get("iteration") for e in events] == [3] and malformed == ["not an event"]
    with open(tmp_path / "events.jsonl", "a") as stream:
        stream.write(line[20:] + "\n")
    events, malformed = tail.read()
    assert [e.get("iteration") for e in events] == [3] and malformed == []  # the finished line, once
    assert tail.read() == ([], [])
    assert jio.job_state.EventTail.at_end(str(tmp_path)).read() == ([], [])  # skips what is there


def test_interleaved_commands_stay_apart(jio):
    """A render run from the command line while a training goes on: both log into one events.jsonl."""
    state = jio.job_state.JobState()
    state.apply(event(jio, "started", command="train", plan=PLAN))
    state.apply(event(jio, "started", command="render", plan=[]))
    state.apply(event(jio, "progress", command="train", step=1, iteration=7, of=100))
    state.apply(event(jio, "progress", command="render", step=1, iteration=2, of=4))
    assert state.progress.iteration == 7 and state.task.progress.iteration == 2
    state.apply(event(jio, "error", command="render", message="bad keypoints"))
    assert state.state == "training" and state.task.status == "failed"


def test_task_messages_are_replaced_and_undo_drops_notes(jio):
    state = jio.job_state.JobState()
    state.mark_starting("render")
    state.apply(event(jio, "done", command="render", status="finished", outputs={"frames": 4}))
    state.note_task("result strip 'JOKR.job.AB' updated")
    state.record_task("render", error=jio.job_state.ErrorInfo("Keypoint 3 is far outside the frame"))
    assert state.task.status == "failed" and state.task.note == ""  # the old note is gone
    state.record_task("keypoints", note="8 keypoint empties keyed")
    before = state.version
    state.forget_notes()
    assert state.task is None and state.version > before  # nothing left but the note: nothing to say
    state.mark_starting("keypoints")
    state.apply(event(jio, "done", command="keypoints", status="finished", outputs={"keypoints": "/k.json"}))
    state.note_task("8 keypoint empties keyed")
    state.forget_notes()
    assert state.task.note == "" and state.task.outputs == {"keypoints": "/k.json"}
