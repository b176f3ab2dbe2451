"""The frame ↔ camera-view map, both ways, without bpy (tests/addon/test_keypoints.py checks it against
Blender's own camera projection)."""

import numpy as np
import pytest


@pytest.fixture
def frame(jio):
    # A 1.9 × 1 camera frame, shifted as a camera with shift/offset would be.
    corners = [(1.2, 0.6, -1), (1.2, -0.4, -1), (-0.7, -0.4, -1), (-0.7, 0.6, -1)]
    return jio.coords.CameraFrame.from_corners(corners)


def test_corners_and_centre(jio, frame):
    to_camera = jio.coords.frame_to_camera
    assert to_camera(0.0, 0.0, frame) == pytest.approx((-0.7, 0.6))  # top-left
    assert to_camera(1.0, 1.0, frame) == pytest.approx((1.2, -0.4))  # bottom-right
    assert to_camera(0.5, 0.5, frame) == pytest.approx((0.25, 0.1))
    assert to_camera(1.0, 0.0, frame) == pytest.approx((1.2, 0.6))  # y down in frame → up in camera


def test_pixel_centre(jio):
    frame = jio.coords.CameraFrame(-0.95, 0.95, -0.5, 0.5)
    width = 608
    x, _ = jio.coords.frame_to_camera((0 + 0.5) / width, 0.5, frame)  # centre of pixel column 0
    assert x == pytest.approx(-0.95 + 1.9 * 0.5 / width)


def test_round_trip_both_ways(jio, frame):
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.5, 1.5, size=(100, 2))
    cx, cy = jio.coords.frame_to_camera(points[:, 0], points[:, 1], frame)
    x, y = jio.coords.camera_to_frame(cx, cy, frame)
    assert np.allclose(np.stack([x, y], 1), points)
    camera_points = rng.uniform(-2, 2, size=(100, 2))
    x, y = jio.coords.camera_to_frame(camera_points[:, 0], camera_points[:, 1], frame)
    cx, cy = jio.coords.frame_to_camera(x, y, frame)
    assert np.allclose(np.stack([cx, cy], 1), camera_points)
