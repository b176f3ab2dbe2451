"""The io package really is bpy-free: it imports in a Python where bpy cannot be imported."""

import subprocess
import sys

from .helpers import REPO


def test_io_imports_without_bpy():
    code = (
        "import sys; sys.modules['bpy'] = None\n"  # any `import bpy` now raises ImportError
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "from addon.helpers import io_package, IO_MODULES\n"
        "package = io_package()\n"
        "assert all(hasattr(package, name) for name in IO_MODULES)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "ok", result.stderr
