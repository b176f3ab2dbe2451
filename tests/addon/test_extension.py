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


def test_installs_enables_and_runs_as_an_extension(bpy_module, built_zip, tmp_path, monkeypatch):
    result = bpy.ops.extensions.package_install_files(filepath=str(built_zip), repo="user_default",
                                                      enable_on_install=True)
    try:
        assert result == {'FINISHED'}
        assert EXTENSION in bpy.context.preferences.addons
        assert sys.modules[EXTENSION].__file__.startswith(os.environ["BLENDER_USER_RESOURCES"])
        prefs = bpy.context.preferences.addons[EXTENSION].preferences
        prefs.engine_python = write_fake_python(tmp_path)
        assert bpy.ops.jokr.check_engine(wait=True) == {'FINISHED'}
        # An unsaved file's job goes to the extension's own user folder.
        clips = {name: write_png_sequence(tmp_path / name / "frames", 6).parent for name in ("cat", "fox")}
        for clip in clips.values():
            write_png_sequence(clip / "masks", 6)
        scene = set_up_scene(bpy, clips)
        assert bpy.ops.jokr.train() == {'FINISHED'}
        assert Path(scene.jokr.job_dir).parent == Path(bpy.utils.extension_path_user(EXTENSION, path="jobs"))
        extension_session = sys.modules[f"{EXTENSION}.blender.session"]
        assert extension_session.manager.pump(timeout=30)
        sys.modules[f"{EXTENSION}.blender.timers"].poll_jobs()
        assert scene.jokr.state == 'finished'
    finally:
        import addon_utils

        addon_utils.disable(EXTENSION, default_set=True)
        repo_index = [r.module for r in bpy.context.preferences.extensions.repos].index("user_default")
        bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id="jokr")
    assert EXTENSION not in bpy.context.preferences.addons and not hasattr(bpy.types.Scene, "jokr")

