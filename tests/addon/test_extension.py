"""The built extension zip: Blender's own validator accepts it, and bpy installs and enables it."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bpy
import pytest

from .helpers import REPO, set_up_scene, write_fake_python, write_png_sequence

sys.path.insert(0, str(REPO / "scripts"))
import build_extension  # noqa: E402

EXTENSION = "bl_ext.user_default.jokr"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    return build_extension.build(tmp_path_factory.mktemp("dist"))


def test_zip_layout(built_zip):
    assert built_zip.name == "jokr-0.1.0.zip"
    names = zipfile.ZipFile(built_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "io/process.py" in names
    unwanted = [n for n in names if "__pycache__" in n or n.endswith(".pyc")
                or n.startswith(("tests", "jokr_"))]
    assert not unwanted


def test_blenders_validator_accepts_it(built_zip):
    scripts = bpy.utils.system_resource('SCRIPTS')
    validator = os.path.join(scripts, "addons_core", "bl_pkg", "cli", "blender_ext.py")
    result = subprocess.run([sys.executable, validator, "validate", str(built_zip)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def _uninstall():
    import addon_utils

    addon_utils.disable(EXTENSION, default_set=True)
    repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
    bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="jokr")


def _install(built_zip):
    return bpy.ops.extensions.package_install_files(filepath=str(built_zip), repo="user_default",
                                                    enable_on_install=True)


def test_installs_runs_and_an_uninstall_leaves_every_job(bpy_module, built_zip, tmp_path):
    result = _install(built_zip)
    try:
        assert result == {'FINISHED'}
        assert EXTENSION in bpy.context.preferences.addons
        assert sys.modules[EXTENSION].__file__.startswith(os.environ["BLENDER_USER_RESOURCES"])
        prefs = bpy.context.preferences.addons[EXTENSION].preferences
        prefs.engine_python = write_fake_python(tmp_path)
        assert bpy.ops.jokr.check_engine(wait=True) == {'FINISHED'}
        # An unsaved file's job goes to the platform's user data folder (conftest points it at a temporary
        # one), not to the extension's own user folder, which Blender deletes with the extension.
        own_folder = Path(bpy.utils.extension_path_user(EXTENSION, create=True))
        (own_folder / "marker").write_text("the extension's own user data")
        clips = {name: write_png_sequence(tmp_path / name / "frames", 6).parent for name in ("cat", "fox")}
        for clip in clips.values():
            write_png_sequence(clip / "masks", 6)
        scene = set_up_scene(bpy, clips)
        scene.jokr.job_name = "before_uninstall"
        assert bpy.ops.jokr.train(wait=True) == {'FINISHED'}
        job = Path(scene.jokr.job_dir)
        assert job.parent == Path(os.environ["XDG_DATA_HOME"]) / "jokr" / "jobs"
        assert scene.jokr.state == 'finished'
        files_before = sorted(p.relative_to(job) for p in job.rglob("*"))
        assert Path("checkpoints/latest.json") in files_before
    finally:
        _uninstall()
    assert EXTENSION not in bpy.context.preferences.addons and not hasattr(bpy.types.Scene, "jokr")
    assert not own_folder.exists()  # what an uninstall does to the extension's own folder …
    assert sorted(p.relative_to(job) for p in job.rglob("*")) == files_before  # … and not to the jobs

    # Installed again (an update), the open file's scene finds its job as it was.
    assert _install(built_zip) == {'FINISHED'}
    try:
        timers = sys.modules[f"{EXTENSION}.blender.timers"]
        timers.follow_running_jobs()  # what its one-shot timer does once Blender's event loop runs
        assert Path(scene.jokr.job_dir) == job and scene.jokr.state == 'finished' and not scene.jokr.can_resume
    finally:
        _uninstall()
    assert job.is_dir()
