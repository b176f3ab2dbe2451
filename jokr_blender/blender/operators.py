"""Operators of the JOKR panel. Each checks its inputs, starts the engine through the job manager and
returns at once; the timer applies the engine's events and finishes the work (import the keypoints,
add the result strip) when the engine is done. `wait=True` (scripts, tests) blocks until then.

Problems the artist can fix are reported with self.report, never as a traceback, and leave the
.blend and its keyframes as they were."""

import os
import traceback

import bpy
from bpy.props import BoolProperty, EnumProperty

from ..io import job_state, keypoint_file, protocol
from ..io.process import EngineStartError
from ..io.results import DIRECTIONS
from . import (
    compat,
    keypoints,
    mask_sources,
    preferences,
    properties,
    render,
    result_strips,
    session,
    strips,
    timers,
    tracks,
)
from .session import UserError, manager

CANCEL_GRACE_S = 20.0
# Panel fields passed to the engine as `--set KEY=VALUE` when not 0 (0: the preset's value).
SETTING_OVERRIDES = ("num_keypoints", "step1_iterations", "step2_iterations")
WAIT_TIMEOUT_S = 24 * 3600.0

_awaited: set[str] = set()  # jobs whose run an operator is blocking on (wait=True)

WAIT = BoolProperty(name="Wait", description="Block until the engine is done (for scripts)",
                    options={'HIDDEN', 'SKIP_SAVE'})


def _settings(context):
    scene = compat.sequencer_scene(context)
    return scene, scene.jokr


def _job_busy(settings) -> bool:
    return bool(settings.job_dir) and manager.is_running(bpy.path.abspath(settings.job_dir))


def _busy_why(scene, why: str) -> str:
    """A poll message for a busy job: `why`, or whose engine it is when this Blender did not start it."""
    if scene is not None and scene.jokr.followed_engine:
        return (f"An engine this Blender did not start is training this job ({scene.jokr.followed_engine}): "
                "the panel follows it")
    return why


def _poll(cls, checks) -> bool:
    """The first failed check's reason becomes the greyed-out button's tooltip; checks are (ok, why)."""
    for ok, why in checks:
        if not ok:
            cls.poll_message_set(why)
            return False
    return True


def _has_idle_job(cls, context) -> bool:
    """The sequencer scene has a job and no engine runs for it (Import and Render poll)."""
    scene = compat.sequencer_scene(context)
    return _poll(cls, [(scene is not None, "Open a scene with a Video Sequencer"),
                       (scene is not None and bool(scene.jokr.job_dir), "No job yet: press Train first"),
                       (scene is not None and not _job_busy(scene.jokr),
                        _busy_why(scene, "The engine is working on this job: wait for it, or Cancel"))])


def _standard_view(scene) -> bool:
    """Footage shows and renders untinted with the Standard view transform (not AgX/Filmic)."""
    if scene.view_settings.view_transform == 'Standard':
        return False
    scene.view_settings.view_transform = 'Standard'
    return True


def _start_run(context, scene, job_dir: str, argv: list[str], command: str, follow_up=None):
    """Start an engine run for the scene's job. `follow_up(scene)` runs on the main thread once the
    engine finished; it returns a note for the panel or raises UserError."""
    scene_name = scene.name

    def finished(run):
        if follow_up is None or run.status != "finished":
            return
        state = manager.state(run.job_dir)
        target = bpy.data.scenes.get(scene_name)
        if target is None or manager.key(bpy.path.abspath(target.jokr.job_dir)) != run.job_dir:
            gone = job_state.ErrorInfo(f"Scene '{scene_name}' no longer holds this job", "", "bad_input")
            state.note_task("", gone)
            return
        try:
            note = follow_up(target)
        except UserError as error:
            state.note_task("", job_state.ErrorInfo(str(error), "", "bad_input"))
            return
        except Exception as error:  # noqa: BLE001 - runs in the timer, which must survive: show it instead
            traceback.print_exc()
            state.note_task("", job_state.ErrorInfo(f"{type(error).__name__}: {error}",
                                                    "Blender's console has the details", "internal"))
            return
        state.note_task(note)
        if run.job_dir not in _awaited:  # an operator waiting on the run pushes the undo step itself
            _push_undo(f"JOKR {run.command.title()}")

    try:
        run = manager.start(job_dir, argv, command, session.engine_env(context), finished)
    except EngineStartError as error:
        raise UserError(str(error)) from None
    session.run_owners[manager.key(job_dir)] = (scene_name, os.path.abspath(job_dir))
    preferences.remember_quit_policy(preferences.get(context))
    properties.sync(scene.jokr, manager.state(job_dir), manager.key(job_dir))
    timers.ensure_polling()
    return run


def _record_task(settings, command: str, note: str = "", error: str = "") -> None:
    """What Import or Render did without the engine, or why it stopped before it: the panel shows this
    instead of the previous run's outcome (a failed Render must not still say the strip was updated)."""
    if not settings.job_dir:
        return
    job_dir = bpy.path.abspath(settings.job_dir)
    if manager.is_running(job_dir):  # the running task keeps the panel
        return
    state = manager.state(job_dir)
    state.record_task(command, note, job_state.ErrorInfo(error, "", "bad_input") if error else None)
    properties.sync(settings, state, manager.key(job_dir))


def _push_undo(message: str) -> None:
    """What the timer adds when the engine is done (the rig, the result strip) happens outside any
    operator: it gets an undo step of its own, or undoing the artist's next edit would take it away."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)


def _finish_waiting(operator, run) -> set[str]:
    """For wait=True: block until the run closed, then report its outcome as the panel shows it."""
    _awaited.add(run.job_dir)
    try:
        manager.wait(run.job_dir, WAIT_TIMEOUT_S)
    finally:
        _awaited.discard(run.job_dir)
    timers.sync_changed()
    if run.status == "failed":
        message = run.error.message + (f" — {run.error.hint}" if run.error.hint else "")
        operator.report({'ERROR'}, message)
        return {'CANCELLED'}
    task = manager.state(run.job_dir).task if run.command != "train" else None
    if task is not None and task.status == "failed":  # the engine succeeded, the follow-up did not
        operator.report({'ERROR'}, task.error.message)
        return {'CANCELLED'}
    operator.report({'INFO'}, (task.note if task else "") or f"{run.command.title()}: {run.status}")
    return {'FINISHED'}


class JOKR_OT_train(bpy.types.Operator):
    bl_idname = "jokr.train"
    bl_label = "Train"
    bl_description = ("Train the JOKR model on clip A (motion) and clip B (look) in the background; "
                      "Blender stays usable while it runs")
    bl_options = {'REGISTER', 'UNDO'}  # an undo step that holds the job: undoing later edits keeps it
    wait: WAIT

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return _poll(cls, [(scene is not None and scene.sequence_editor is not None,
                            "Open a scene with a Video Sequencer holding the two strips"),
                           (scene is not None and not _job_busy(scene.jokr),
                            _busy_why(scene, "A job is running in this scene: wait for it, or Cancel"))])

    def execute(self, context):
        scene, settings = _settings(context)
        try:
            python = session.engine_python(context)
            root, note = session.job_root(context)
            job_dir = os.path.join(root, session.job_name(settings))
            clip_a = strips.clip_from_settings(scene, settings.clip_a, "A", job_dir)
            clip_b = strips.clip_from_settings(scene, settings.clip_b, "B", job_dir)
            if clip_a.strip_name == clip_b.strip_name:
                raise UserError("Clip A and clip B are the same strip: choose two different clips")
            # A folder whose job never reached a checkpoint (failed at start-up) takes a new training.
            if job_state.has_checkpoint(job_dir):
                raise UserError(f"{job_dir} already holds a trained job: set another Job Name for a new one")
            for line in mask_sources.render_mask_sources(scene, settings, job_dir, (clip_a, clip_b)):
                self.report({'INFO'}, line)
            overrides = {key: getattr(settings, key) for key in SETTING_OVERRIDES if getattr(settings, key)}
            if settings.perceptual != 'PRESET':
                overrides["perceptual"] = settings.perceptual
            argv = protocol.train_command(python, job_dir, clip_a.args, clip_b.args, settings.preset,
                                          session.device(context), overrides)
            manager.forget(job_dir)  # a new job in a folder used before: forget what it showed then
            run = _start_run(context, scene, job_dir, argv, "train")
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        settings.job_dir = session.stored_path(job_dir)
        settings.result_strip = ""
        if note:
            self.report({'INFO'}, note)
        if abs(clip_a.fps - clip_b.fps) > 1e-3:
            self.report({'WARNING'}, f"Clip A runs at {clip_a.fps:g} fps and clip B at {clip_b.fps:g} fps: "
                                     "motion is transferred frame by frame, at clip A's frames")
        if _standard_view(scene):
            self.report({'INFO'}, "View transform set to Standard so the footage shows untinted")
        if self.wait:
            return _finish_waiting(self, run)
        self.report({'INFO'}, f"Training started in {job_dir}")
        return {'FINISHED'}


class JOKR_OT_cancel(bpy.types.Operator):
    bl_idname = "jokr.cancel"
    bl_label = "Cancel"
    bl_description = "Stop the engine: it saves a checkpoint first, so Resume continues from there"

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return _poll(cls, [(scene is not None and _job_busy(scene.jokr), "No training is running")])

    def invoke(self, context, event):
        _scene, settings = _settings(context)
        run = manager.run(bpy.path.abspath(settings.job_dir))
        if run is not None and not run.owned:  # someone else's run (another Blender, the command line): ask
            return context.window_manager.invoke_confirm(
                self, event, title="Stop Someone Else's Training?",
                message=f"This Blender did not start this training ({settings.followed_engine}). It will save "
                        "a checkpoint and stop; Resume continues it.",
                confirm_text="Stop Training", icon='WARNING')
        return self.execute(context)

    def execute(self, context):
        scene, settings = _settings(context)
        job_dir = bpy.path.abspath(settings.job_dir)
        try:
            manager.cancel(job_dir, CANCEL_GRACE_S)
        except OSError as error:
            self.report({'ERROR'}, f"Cannot ask the engine to stop: {error}")
            return {'CANCELLED'}
        properties.sync(settings, manager.state(job_dir), manager.key(job_dir))
        self.report({'INFO'}, "Cancelling: the engine saves a checkpoint and stops")
        return {'FINISHED'}


class JOKR_OT_resume(bpy.types.Operator):
    bl_idname = "jokr.resume"
    bl_label = "Resume"
    bl_description = "Continue the cancelled or failed training from its last checkpoint"
    bl_options = {'REGISTER', 'UNDO'}
    wait: WAIT

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return _poll(cls, [(scene is not None and not _job_busy(scene.jokr),
                            _busy_why(scene, "The job is running")),
                           (scene is not None and scene.jokr.can_resume,
                            "Nothing to resume: only a cancelled or failed job with a checkpoint can continue")])

    def execute(self, context):
        scene, settings = _settings(context)
        try:
            job_dir = session.current_job_dir(settings)
            if not job_state.can_resume(manager.state(job_dir), job_dir):
                raise UserError("This job has no checkpoint to resume from, or it is finished")
            argv = protocol.resume_command(session.engine_python(context), job_dir, session.device(context))
            run = _start_run(context, scene, job_dir, argv, "train")
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        if self.wait:
            return _finish_waiting(self, run)
        self.report({'INFO'}, "Training resumed")
        return {'FINISHED'}


class JOKR_OT_open_log(bpy.types.Operator):
    bl_idname = "jokr.open_log"
    bl_label = "Open Log"
    bl_description = "Open the engine's log of this job (warnings, and the traceback when it crashed)"

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return _poll(cls, [(scene is not None and bool(scene.jokr.job_dir), "No job yet: press Train first")])

    def execute(self, context):
        _scene, settings = _settings(context)
        log = os.path.join(bpy.path.abspath(settings.job_dir), job_state.LOG_FILE)
        if not os.path.isfile(log):
            self.report({'WARNING'}, f"No log yet: {log}")
            return {'CANCELLED'}
        if bpy.app.background:
            self.report({'INFO'}, f"Engine log: {log}")
            return {'FINISHED'}
        return bpy.ops.wm.path_open(filepath=log)


def _keypoints_stale(job_dir: str, path: str) -> bool:
    """Missing, or older than the checkpoint (training went on since it was written)."""
    checkpoint = os.path.join(job_dir, job_state.CHECKPOINT_FILE)
    return not os.path.isfile(path) or os.path.getmtime(path) < os.path.getmtime(checkpoint)


class JOKR_OT_import_keypoints(bpy.types.Operator):
    bl_idname = "jokr.import_keypoints"
    bl_label = "Import Keypoints"
    bl_description = ("Create or update the keypoints of both clips (as empties keyed on every frame over "
                      "cameras that show the footage, or as Movie Clip tracks): the engine's keys are "
                      "replaced, the keys you set are kept")
    bl_options = {'REGISTER', 'UNDO'}
    # Hidden: ticked in the redo panel it would discard the artist's keys without the confirmation of invoke().
    reset: BoolProperty(name="Reset to Engine Keypoints", options={'SKIP_SAVE', 'HIDDEN'},
                        description="Replace the empties' animation (your edits too) with the engine's")
    wait: WAIT

    @classmethod
    def poll(cls, context):
        return _has_idle_job(cls, context)

    def invoke(self, context, event):
        if not self.reset:
            return self.execute(context)
        settings = compat.sequencer_scene(context).jokr
        job_name = os.path.basename(os.path.normpath(bpy.path.abspath(settings.job_dir)))
        if settings.keypoint_source == 'TRACKS':
            lost, what = tracks.count_artist_markers(job_name), "markers"
        else:
            lost, what = keypoints.count_artist_keys(job_name)[0], "keys"
        if not lost:  # nothing of the artist's to lose: no question to ask
            return self.execute(context)
        return context.window_manager.invoke_confirm(
            self, event, title="Reset to Engine Keypoints",
            message=f"Discard the {lost} {what} you set and use the engine's keypoints everywhere?",
            confirm_text="Discard My Edits", icon='WARNING')

    def execute(self, context):
        scene, settings = _settings(context)
        rig_scene_name, reset = context.scene.name, self.reset
        try:
            job_dir = session.current_job_dir(settings)
            job_name = os.path.basename(job_dir)
            if not job_state.has_checkpoint(job_dir):
                raise UserError("The job has no trained model yet: train it (or resume it) first")
            for label, clip in (("A", settings.clip_a), ("B", settings.clip_b)):
                strips.get_strip(scene, clip.strip, f"clip {label}")  # fail before the engine runs
            path = os.path.join(job_dir, "keypoints.json")

            def build(target_scene):
                rig_scene = bpy.data.scenes.get(rig_scene_name) or target_scene
                try:
                    keypoints_data = keypoint_file.load(path)
                except keypoint_file.KeypointFileError as error:
                    raise UserError(str(error)) from None
                if target_scene.jokr.keypoint_source == 'TRACKS':
                    return tracks.import_tracks(target_scene, target_scene.jokr, job_name, keypoints_data, reset)
                result = keypoints.import_rig(rig_scene, target_scene, target_scene.jokr, job_name,
                                              keypoints_data, reset)
                for footage_scene in {rig_scene, target_scene}:
                    _standard_view(footage_scene)
                return result

            if _keypoints_stale(job_dir, path):
                argv = protocol.keypoints_command(session.engine_python(context), job_dir,
                                                  device=session.device(context))
                run = _start_run(context, scene, job_dir, argv, "keypoints",
                                 lambda target_scene: build(target_scene).message())
                if self.wait:
                    return _finish_waiting(self, run)
                self.report({'INFO'}, "Extracting keypoints: the empties appear when the engine is done")
                return {'FINISHED'}
            result = build(scene)
        except UserError as error:
            _record_task(settings, "keypoints", error=str(error))
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        _record_task(settings, "keypoints", note=result.message())
        self.report({'WARNING'} if result.worth_a_warning else {'INFO'}, result.message())
        return {'FINISHED'}


DIRECTION_ITEMS = (('AB', "AB", "Clip A's motion with clip B's look, over clip A's strip"),
                   ('BA', "BA", "Clip B's motion with clip A's look, over clip B's strip"))


class _RenderBase:
    bl_options = {'REGISTER', 'UNDO'}
    direction: EnumProperty(name="Direction", items=DIRECTION_ITEMS, default='AB',
                            description="Whose motion drives the result: only that clip's keypoints count")
    wait: WAIT

    @classmethod
    def poll(cls, context):
        return _has_idle_job(cls, context)

    def frames(self, scene, job_name: str, keypoints_data, source: str) -> tuple[int, int] | None:
        return None

    def execute(self, context):
        scene, settings = _settings(context)
        direction, source = DIRECTIONS[self.direction], settings.keypoint_source
        try:
            job_dir = session.current_job_dir(settings)
            job_name = os.path.basename(job_dir)
            driver_clip = settings.clip_a if direction.driver == "A" else settings.clip_b
            driving = strips.get_strip(scene, driver_clip.strip, f"clip {direction.driver}")
            try:
                engine_keypoints = keypoint_file.load(os.path.join(job_dir, "keypoints.json"))
            except keypoint_file.KeypointFileError:
                raise UserError("Import the keypoints first: rendering reads the keypoints you edited") from None
            edited, missing = render.edited_keypoint_file(job_name, engine_keypoints, scene, direction, source)
            if missing:
                self.report({'INFO'}, f"Clip {direction.driver}'s keypoint{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(map(str, missing))} "
                                      f"{'have' if len(missing) > 1 else 'has'} no "
                                      f"{'track' if source == 'TRACKS' else 'empty'}: the engine's are used")
            if source == 'EMPTIES' and render.views_changed(job_name, scene):
                self.report({'WARNING'}, "The scene's resolution changed since the keypoints were imported: "
                                         "the camera views no longer line up with the footage, but the render "
                                         "uses the keypoints where they were keyed")
            if render.rig_first_frame(job_name, direction.driver, source) != driving.frame_final_start:
                self.report({'WARNING'}, f"Strip '{driving.name}' moved since the keypoints were imported: "
                                         "the result follows the strip, the keys stay where they were keyed")
            frames = self.frames(scene, job_name, edited, source)
            edited_path = render.edited_keypoints_path(job_dir)
            try:
                keypoint_file.save(edited_path, edited)
            except OSError as error:
                raise UserError(f"Cannot write {edited_path}: {error.strerror}") from None
            argv = protocol.render_command(session.engine_python(context), job_dir, direction.look,
                                           render.render_folder(job_dir, direction), edited_path, frames,
                                           session.device(context))

            def show(target_scene):
                strip = result_strips.update_result_strip(target_scene, target_scene.jokr, job_dir, direction,
                                                          frames[0] if frames else None)
                _standard_view(target_scene)
                return f"result strip '{strip.name}' updated"

            run = _start_run(context, scene, job_dir, argv, "render", show)
        except UserError as error:
            _record_task(settings, "render", error=str(error))
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        if self.wait:
            return _finish_waiting(self, run)
        self.report({'INFO'}, "Rendering: the result strip updates when the engine is done")
        return {'FINISHED'}


class JOKR_OT_render_strip(_RenderBase, bpy.types.Operator):
    bl_idname = "jokr.render_strip"
    bl_label = "Render Strip"
    bl_description = ("Render one clip's motion, as its keypoints now move, with the other clip's look, into a "
                      "strip directly above the driving clip (AB: A's motion over A; BA: B's motion over B)")


class JOKR_OT_render_frame(_RenderBase, bpy.types.Operator):
    bl_idname = "jokr.render_frame"
    bl_label = "Render Current Frame"
    bl_description = "Render only the current frame, for quick feedback on a keypoint edit"

    def frames(self, scene, job_name, keypoints_data, source):
        # The clip frame whose keys sit under the playhead: the one the artist just edited.
        driver = DIRECTIONS[self.direction].driver
        index = scene.frame_current - render.rig_first_frame(job_name, driver, source)
        if not 0 <= index < keypoints_data.frame_count(driver):
            raise UserError(f"Frame {scene.frame_current} is outside the keyed frames of clip {driver}")
        return index, index + 1


class JOKR_OT_check_engine(bpy.types.Operator):
    bl_idname = "jokr.check_engine"
    bl_label = "Check Engine"
    bl_description = "Run the engine once to show its version and the device it would use"
    wait: WAIT

    @classmethod
    def poll(cls, context):
        prefs = preferences.get(context)
        if prefs is None or not prefs.engine_python.strip():
            cls.poll_message_set("Set Engine Python first: the interpreter that has the JOKR engine")
            return False
        return True

    def execute(self, context):
        prefs = preferences.get(context)
        try:
            thread, outcome = timers.start_engine_check(session.engine_python(context),
                                                        session.engine_env(context))
        except UserError as error:
            if prefs:
                prefs.engine_status = str(error)
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        if not self.wait:  # the engine's first PyTorch import takes seconds: Blender stays usable
            if prefs:
                prefs.engine_status = "Checking the engine…"
            timers.watch_engine_check(thread, outcome)
            self.report({'INFO'}, "Checking the engine: its answer appears in the preferences")
            return {'FINISHED'}
        thread.join()
        if prefs:
            prefs.engine_status = outcome["status"]
        self.report({'INFO'} if outcome["ok"] else {'ERROR'}, outcome["status"])
        return {'FINISHED'} if outcome["ok"] else {'CANCELLED'}


classes = (JOKR_OT_train, JOKR_OT_cancel, JOKR_OT_resume, JOKR_OT_open_log, JOKR_OT_import_keypoints,
           JOKR_OT_render_strip, JOKR_OT_render_frame, JOKR_OT_check_engine)
