"""Build the add-on's extension package: dist/jokr-<version>.zip.

The zip holds blender_manifest.toml and the files of the jokr_blender package at its root, as
`blender --command extension build` lays it out; tests, the engine, data and caches stay out.

    python scripts/build_extension.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "blender_manifest.toml"
PACKAGE = REPO / "jokr_blender"
EXCLUDED_DIRS = {"__pycache__"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}


def package_files() -> list[Path]:
    files = []
    for path in sorted(PACKAGE.rglob("*")):
        parts = path.relative_to(PACKAGE).parts
        if not path.is_file() or any(part in EXCLUDED_DIRS or part.startswith(".") for part in parts):
            continue
        if path.suffix not in EXCLUDED_SUFFIXES:
            files.append(path)
    return files


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(MANIFEST, MANIFEST.name)
        for path in package_files():
            archive.write(path, path.relative_to(PACKAGE).as_posix())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist", help="default: dist/")
    args = parser.parse_args(argv)
    print(build(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
