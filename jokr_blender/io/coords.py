"""The map between the engine's frame coordinates and a keypoint camera's view.

Frame coordinates (docs/FORMATS.md): x to the right, y *down*, normalised edge to edge, so (0, 0) is
the top-left corner of the top-left pixel and (1, 1) the bottom-right corner of the bottom-right pixel.

Camera-view coordinates: a point (X, Y) in the keypoint camera's local space (X right, Y up, the
camera looking down its −Z axis). The camera's frame is the rectangle `CameraFrame` spanning
left..right and bottom..top, as `Camera.view_frame()` reports it. The footage is stretched onto that
frame (background image, frame method "Stretch"), so the frame's corners are the footage's corners:

    X = left + x · (right − left)          x = (X − left) / (right − left)
    Y = top  − y · (top − bottom)          y = (top − Y) / (top − bottom)

The functions work on floats and equally on numpy arrays (only arithmetic is used).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CameraFrame:
    left: float
    right: float
    bottom: float
    top: float

    @classmethod
    def from_corners(cls, corners) -> CameraFrame:
        """From the four (x, y[, z]) corners that `Camera.view_frame()` returns, in any order."""
        xs = [c[0] for c in corners]
        ys = [c[1] for c in corners]
        return cls(min(xs), max(xs), min(ys), max(ys))

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.top - self.bottom


def frame_to_camera(x, y, frame: CameraFrame):
    """Frame coordinates (x right, y down, 0..1) → camera-view coordinates (X right, Y up)."""
    return frame.left + x * frame.width, frame.top - y * frame.height


def camera_to_frame(cx, cy, frame: CameraFrame):
    """Camera-view coordinates (X right, Y up) → frame coordinates (x right, y down, 0..1)."""
    return (cx - frame.left) / frame.width, (frame.top - cy) / frame.height
