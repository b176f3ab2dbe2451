"""The clean plate: the driving clip's footage without its animal (`jokr_engine clean-plate`), as a strip
of its own between the driving strip and the result, so the old animal no longer shows around the new
one, and an artist can swap in a clean plate of their own (any strip in that place does the same).

AB's plate is clip A's (`<job>/clean_plate_A`), BA's is clip B's. The strip starts on the driving strip's
first shown frame (file i on its frame i) with its transform, crop and flips, and remembers its job and
clip (`jokr_job`, `jokr_plate`), so making it again updates it in place. It goes directly above the
driving strip; the strips in the way (the result among them) move up, so the result stays on top.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty

from ..io import protocol, results
from ..io.results import DIRECTIONS
from . import compat, operators, render, result_strips, session, strips
from .session import UserError


def plate_folder(job_dir: str, label: str) -> str:
    return os.path.join(job_dir, f"clean_plate_{label}")


def update_plate_strip(scene, settings, job_dir: str, label: str):
    """Add the clip's clean plate strip, or point the existing one at the current frames. Returns it."""
    clip = result_strips.clip_settings(settings, label)
    driver = strips.get_strip(scene, clip.strip, f"clip {label}")
    folder = plate_folder(job_dir, label)
    names = render.rendered_run(folder, None)
    if not names:
        raise UserError(f"The engine wrote no clean plate into {folder}")
    plate = result_strips.find_plate_strip(scene, job_dir, label)
    if plate is None:
        start = driver.frame_final_start
        channel = result_strips.channel_above(scene, driver.channel, start, start + len(names))
        name = f"JOKR clean plate {label} ({driver.name})".encode()[:results.NAME_BYTES].decode(errors="ignore")
        plate = compat.new_image_strip(scene, name, os.path.join(folder, names[0]), channel, start)
        plate[result_strips.JOB], plate[result_strips.PLATE] = session.stored_path(job_dir), label
    result_strips.show_frames(plate, folder, names, driver, int(names[0][:-4]))
    return plate


class JOKR_OT_clean_plate(bpy.types.Operator):
    bl_idname = "jokr.clean_plate"
    bl_label = "Clean Plate"
    bl_description = ("Make the driving clip's footage without its animal (the engine fills it in from other "
                      "frames) and put it under the result, so the old animal no longer shows")
    bl_options = {'REGISTER', 'UNDO'}
    clip: EnumProperty(name="Clip", default='A', description="The clip whose animal is removed",
                       items=[('A', "Clip A", "Under the AB result"), ('B', "Clip B", "Under the BA result")])
    wait: operators.WAIT

    @classmethod
    def poll(cls, context):
        return operators._has_idle_job(cls, context)

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        settings, label = scene.jokr, self.clip
        try:
            job_dir = session.current_job_dir(settings)
            strips.get_strip(scene, result_strips.clip_settings(settings, label).strip, f"clip {label}")
            argv = protocol.engine_command(session.engine_python(context), "clean-plate", "--job", job_dir,
                                           "--clip", label, "--out", plate_folder(job_dir, label))

            def show(target_scene):
                plate = update_plate_strip(target_scene, target_scene.jokr, job_dir, label)
                return f"clean plate strip '{plate.name}' updated"

            run = operators._start_run(context, scene, job_dir, argv, "clean-plate", show)
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        if self.wait:
            return operators._finish_waiting(self, run)
        direction = next(d for d in DIRECTIONS.values() if d.driver == label)
        self.report({'INFO'}, f"Making clip {label}'s clean plate: it goes under {direction.code} when done")
        return {'FINISHED'}


classes = (JOKR_OT_clean_plate,)
