"""Test set-up shared by the engine and add-on tests."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_DATA = REPO / "demo" / "data"


def define_torchvision_op_schemas() -> None:
    """The PyPI torchvision 0.28 wheel is a CUDA build; with the CPU torch wheel its import fails with
    "operator torchvision::nms does not exist". Declaring the two schemas first lets it import (LPIPS
    only uses the VGG model, never these ops). Dev/test environments only: see README."""
    try:
        import torch
    except ImportError:
        return
    if torch.version.cuda is not None:
        return
    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 kept alive by torch's registry
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _keep.append(lib)


_keep: list = []
if os.environ.get("JOKR_SKIP_TV_SHIM") is None:
    try:
        define_torchvision_op_schemas()
    except Exception:  # noqa: BLE001 - without torch (bpy 4.2 venv) there is nothing to shim
        pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample clips not found at {SHARED_DATA}")
    return SHARED_DATA
