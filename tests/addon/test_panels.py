"""The panels' draw code, run against a recording layout that checks every property, operator and icon
name against Blender's RNA (bpy as a module draws no UI, so this is how the draw code gets exercised)."""

import bpy
import pytest

from .helpers import ADDON, pump, set_up_scene, write_fake_python

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class OperatorProperties:
    def __init__(self, idname):
        module, name = idname.split(".")
        self.__dict__["_rna"] = getattr(getattr(bpy.ops, module), name).get_rna_type()

    def __setattr__(self, name, value):
        assert name in self._rna.properties, f"operator has no property {name}"


class RecordingLayout:
    def __init__(self, calls):
        self.__dict__["calls"] = calls

    def __setattr__(self, name, value):
        assert name in {"use_property_split", "alert", "enabled", "active"}, name

    def _check_icon(self, kwargs):
        assert kwargs.get("icon", "NONE") in ICONS, kwargs["icon"]

    def _record(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        self._check_icon(kwargs)
        return RecordingLayout(self.calls)

    def row(self, **kwargs):
        return self._record("row", **kwargs)

    column = box = row

    def label(self, **kwargs):
        assert "text" in kwargs
        return self._record("label", **kwargs)

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, f"{data} has no property {name}"
        return self._record("prop", name, **kwargs)

    def prop_search(self, data, name, search_data, search_name, **kwargs):
        assert name in data.bl_rna.properties and search_name in search_data.bl_rna.properties
        return self._record("prop_search", name, search_name, **kwargs)

    def operator(self, idname, **kwargs):
        self._record("operator", idname, **kwargs)
        return OperatorProperties(idname)

    def progress(self, *, factor, type, text):
        assert 0.0 <= factor <= 1.0 and type in {"BAR", "RING"}
        return self._record("progress", factor, text=text)

    def template_icon(self, *, icon_value, scale):
        return self._record("template_icon", icon_value, scale=scale)


def draw_all(context):
    from jokr_blender.blender import panels

    calls = []
    for panel in panels.classes:
        assert panel.poll(context)
        panel.draw(type("Panel", (), {"layout": RecordingLayout(calls)})(), context)
    return calls


def operators_drawn(calls):
    return [args[0] for name, args, _kw in calls if name == "operator"]


@pytest.mark.usefixtures("addon")
def test_panels_draw_in_every_state(tiny_clips, tmp_path):
    context = bpy.context
    context.scene.sequence_editor_clear()
    calls = draw_all(context)
    assert ("label", (), {"text": "Add the two clips as strips first", "icon": "INFO"}) in calls
    scene = set_up_scene(bpy, tiny_clips)
    for source in ('AUTO', 'ALPHA', 'MATTE_STRIP', 'KEY', 'LUMA', 'FOLDER'):
        scene.jokr.clip_a.mask_source = source
        draw_all(context)
    scene.jokr.clip_a.mask_source = 'AUTO'
    bpy.ops.jokr.train()
    assert "jokr.cancel" in operators_drawn(draw_all(context))
    pump()
    calls = draw_all(context)
    assert [c for c in calls if c[0] == "progress"][0][2]["text"].startswith("Finished on Fake CPU")
    assert "jokr.open_log" in operators_drawn(calls)
    context.preferences.addons[ADDON].preferences.engine_python = write_fake_python(tmp_path, "crash")
    scene.jokr.job_name = "crashing"
    bpy.ops.jokr.train()
    pump()
    calls = draw_all(context)
    labels = [kw["text"] for name, _a, kw in calls if name == "label"]
    assert any("CUDA went away" in text for text in labels) and "jokr.resume" not in operators_drawn(calls)


@pytest.mark.usefixtures("addon")
def test_preferences_draw():
    prefs = bpy.context.preferences.addons[ADDON].preferences
    calls = []
    holder = type("Prefs", (), {"layout": RecordingLayout(calls),
                                "__getattr__": lambda _self, name: getattr(prefs, name)})()
    type(prefs).draw(holder, bpy.context)
    assert "jokr.check_engine" in operators_drawn(calls)


@pytest.mark.usefixtures("addon")
def test_preview_is_reloaded_when_the_engine_rewrites_it(tmp_path):
    import os

    from jokr_blender.blender import panels

    from .fake_engine import write_png

    path = str(tmp_path / "latest.png")
    assert panels.preview_icon(path) == 0  # not there yet
    write_png(path, 4, 4, b"\xff\x00\x00\xff" * 16)
    first = panels.preview_icon(path)
    assert panels.preview_icon(path) == first  # unchanged: the loaded preview is reused
    write_png(path, 4, 4, b"\x00\xff\x00\xff" * 16)
    os.utime(path, (1, 1))
    panels.preview_icon(path)
    assert panels._preview_stamps[path] == 1


@pytest.mark.usefixtures("addon")
def test_greyed_out_buttons_say_why(tiny_clips):
    """Blender shows an operator's poll message as the disabled button's tooltip, and in the error of a
    script that calls it: every JOKR button that can be greyed out has one."""
    set_up_scene(bpy, tiny_clips)
    expected = {
        "cancel": "No training is running",
        "resume": "Nothing to resume",
        "open_log": "No job yet",
        "import_keypoints": "No job yet",
        "render_strip": "No job yet",
        "render_frame": "No job yet",
        "clean_plate": "No job yet",
        "keypoint_paths": "No keypoint empties yet",
    }
    for name, why in expected.items():
        operator = getattr(bpy.ops.jokr, name)
        assert not operator.poll()
        with pytest.raises(RuntimeError, match=why):
            operator()
