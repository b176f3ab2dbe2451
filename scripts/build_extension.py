"""Build the add-on's extension package: dist/jokr-<version>.zip.

The zip holds blender_manifest.toml and the files of the jokr_blender package at its root, as
`blender --command extension build` lays it out, and the engine for Install Engine in engine/: a wheel of
jokr_engine (built by pip from a copy of its sources) and requirements.lock. Tests, data and caches stay out.

    python scripts/build_extension.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "blender_manifest.toml"
PACKAGE = REPO / "jokr_blender"
EXCLUDED_DIRS = {"__pycache__"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}
ENGINE_SOURCES = ("pyproject.toml", "README.md", "jokr_engine")  # what building the engine's wheel reads
LOCK = REPO / "requirements.lock"
ENGINE_FOLDER = "engine"  # in the zip: what jokr_blender/io/engine_install.py installs


def package_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*")):
        parts = path.relative_to(PACKAGE).parts
        if not path.is_file() or any(part in EXCLUDED_DIRS or part.startswith(".") for part in parts):
            continue
        if path.suffix not in EXCLUDED_SUFFIXES:
            files.append(path)
    return files


def build_engine_wheel(out_dir: Path) -> Path:
    """The engine as a pure-Python wheel. pip builds it from a copy of the sources: a build in place would
    leave build/ and egg-info folders in the repository."""
    with tempfile.TemporaryDirectory(prefix="jokr-engine-src-") as scratch:
        source = Path(scratch)
        for name in ENGINE_SOURCES:
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
            else:
                shutil.copy2(REPO / name, source / name)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir),
                        str(source)], check=True)
    (wheel,) = out_dir.glob("jokr_engine-*.whl")
    return wheel


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory(prefix="jokr-engine-wheel-") as wheel_dir, \
            zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(MANIFEST, MANIFEST.name)
        for path in package_files():
            archive.write(path, path.relative_to(PACKAGE).as_posix())
        wheel = build_engine_wheel(Path(wheel_dir))
        archive.write(wheel, f"{ENGINE_FOLDER}/{wheel.name}")
        archive.write(LOCK, f"{ENGINE_FOLDER}/{LOCK.name}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist", help="default: dist/")
    args = parser.parse_args(argv)
    print(build(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
