"""Event parsing (schema jokr.events/1) and engine command lines, without bpy."""

import json

import pytest


def line(**fields):
    return json.dumps({"schema": "jokr.events/1", "time": 1700000000.5, **fields})


def test_parses_every_documented_event(jio):
    parse = jio.protocol.parse_event_line
    started = parse(line(event="started", command="train", job="/j", device="cpu", device_name="CPU",
                         preset="tiny", plan=[{"step": 1, "iterations": 150}], resumed_from=None))
    assert (started.name, started.get("command"), started.time) == ("started", "train", 1700000000.5)
    progress = parse(line(event="progress", step=1, iteration=3, of=150, losses={"kp": 0.5, "bad": None},
                          its_per_s=2.5, eta_s=None))
    assert progress.get("losses") == {"kp": 0.5, "bad": None}
    assert parse(line(event="preview", step=1, iteration=3, path="/p.png")).get("path") == "/p.png"
    checkpoint = parse(line(event="checkpoint", step=2, iteration=9, path="/c", reason="cancel"))
    assert checkpoint.get("reason") == "cancel"
    done = parse(line(event="done", command="render", status="finished", outputs={"frames": 3}).encode())
    assert done.get("outputs") == {"frames": 3}
    error = parse(line(event="error", message="clip x", hint="fix it", code="bad_input"))
    assert error.get("code") == "bad_input"


def test_unknown_fields_are_kept(jio):
    event = jio.protocol.parse_event_line(line(event="preview", path="/p.png", future_field=[1, 2]))
    assert event.get("future_field") == [1, 2]


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("Loading weights… 50%", "not JSON"),
    ('{"schema": "jokr.events/1", "event": "progress", "time": 1, "step": 1', "not JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"schema": "jokr.events/2", "event": "done", "time": 1}), "unsupported event schema"),
    (line(event="exploded"), "unknown event"),
    (json.dumps({"schema": "jokr.events/1", "event": "preview", "path": "/p"}), "'time'"),
    (line(event="progress", step=1, iteration=2), "'of' is missing"),
    (line(event="progress", step="1", iteration=2, of=3), "'step' must be an integer"),
    (line(event="progress", step=True, iteration=2, of=3), "'step' must be an integer"),
    (line(event="progress", step=1, iteration=2, of=3, losses={"a": "high"}), "'losses'"),
    (line(event="done", command="train", status="exploded"), "unknown status"),
    (line(event="error", hint="no message"), "'message' is missing"),
])
def test_malformed_lines_are_rejected_with_a_reason(jio, text, why):
    with pytest.raises(jio.protocol.ProtocolError, match=why):
        jio.protocol.parse_event_line(text)


def test_train_command(jio):
    protocol = jio.protocol
    a = protocol.ClipArgs("/clips/cat", start=3, count=40, mask=protocol.mask_luma(0.25))
    b = protocol.ClipArgs("/clips/fox.mp4", mask=protocol.mask_key((0.0, 1.0, 0.5), 0.3))
    argv = protocol.train_command("/py", "/jobs/j", a, b, "tiny", "cpu", {"num_keypoints": 8})
    assert argv == ["/py", "-m", "jokr_engine", "train",
                    "--a", "/clips/cat", "--a-start", "3", "--a-count", "40", "--a-mask", "luma:0.25",
                    "--b", "/clips/fox.mp4", "--b-start", "0", "--b-mask", "key:00FF80:0.3",
                    "--job", "/jobs/j", "--preset", "tiny", "--device", "cpu", "--set", "num_keypoints=8"]
    with pytest.raises(ValueError):
        protocol.train_command("/py", "/j", a, b, "huge")


def test_other_commands(jio):
    protocol = jio.protocol
    assert protocol.resume_command("/py", "/j") == ["/py", "-m", "jokr_engine", "train", "--job", "/j",
                                                    "--resume", "--device", "auto"]
    assert protocol.keypoints_command("/py", "/j")[3:] == ["keypoints", "--job", "/j", "--device", "auto"]
    argv = protocol.render_command("/py", "/j", "B", "/out", keypoints="/k.json", frames=(12, 13))
    assert argv[3:] == ["render", "--job", "/j", "--look", "B", "--out", "/out", "--device", "auto",
                        "--keypoints", "/k.json", "--frames", "12:13"]
    assert protocol.version_command("/py") == ["/py", "-m", "jokr_engine", "--version", "--json"]
    assert protocol.mask_alpha() == "alpha"


def test_version_output(jio):
    text = 'warning: something\n{"engine": "0.1.0", "device": "cpu", "device_name": "CPU"}\n'
    assert jio.protocol.parse_version_output(text)["engine"] == "0.1.0"
    with pytest.raises(jio.protocol.ProtocolError):
        jio.protocol.parse_version_output("nothing useful")
