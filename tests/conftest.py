"""Test set-up shared by the engine and add-on tests."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_DATA = REPO / "demo" / "data"


@pytest.fixture(scope="session", autouse=True)
def no_user_weights(tmp_path_factory):
    """Tests never see the user's LPIPS weights cache (`jokr-engine setup`): an empty folder instead, which
    engine subprocesses inherit. Tests that need weights write their own and point JOKR_WEIGHTS_DIR there."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOKR_WEIGHTS_DIR", str(tmp_path_factory.mktemp("no-weights")))
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample clips not found at {SHARED_DATA}")
    return SHARED_DATA
