"""Tests for jokr_engine.report: the contact sheet and the eval.json / eval.md pair."""

import json

import cv2
import numpy as np
import pytest

from jokr_engine import __version__, report

BACKGROUND = np.array([32, 32, 32], np.uint8)


def solid_frames(count, h, w, rgb):
    frames = np.zeros((count, h, w, 3), np.uint8)
    frames[:] = rgb
    return frames


def mask_of(sheet, rgb):
    return np.all(sheet == np.array(rgb, np.uint8), axis=-1)


# --- keypoint colours ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 14, 30])
def test_keypoint_colors_are_distinct(k):
    colors = report.keypoint_colors(k)
    assert colors.shape == (k, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == k


# --- contact sheet ------------------------------------------------------------------------------------


def test_contact_sheet_picks_first_to_last_evenly():
    # Frame i is filled with red = 10·(i + 1); 5 frames on 3 columns must show frames 0, 2 and 4.
    frames = np.stack([solid_frames(1, 12, 16, (10 * (i + 1), 7, 7))[0] for i in range(5)])
    sheet = report.contact_sheet([("clip A", frames)], None, columns=3)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    shown = [i for i in range(5) if mask_of(sheet, (10 * (i + 1), 7, 7)).sum() == 12 * 16]
    absent = [i for i in range(5) if mask_of(sheet, (10 * (i + 1), 7, 7)).sum() == 0]
    assert shown == [0, 2, 4] and absent == [1, 3]


def test_contact_sheet_layout_and_labels():
    rows = [
        ("A", solid_frames(4, 20, 30, (200, 10, 10))),
        ("AB (generated)", solid_frames(2, 24, 18, (10, 200, 10))),
    ]
    sheet = report.contact_sheet(rows, None, columns=4)
    assert sheet.shape[0] >= 20 + 24 and sheet.shape[1] >= 4 * 30
    # All of row A's 4 frames and row AB's 2 frames (fewer than the columns) appear whole.
    assert mask_of(sheet, (200, 10, 10)).sum() == 4 * 20 * 30
    assert mask_of(sheet, (10, 200, 10)).sum() == 2 * 24 * 18
    # Something (the labels) is drawn left of the first frame.
    first_col = np.nonzero(mask_of(sheet, (200, 10, 10)).any(axis=0))[0].min()
    label_area = sheet[:, :first_col]
    assert (~mask_of(label_area, BACKGROUND)).sum() > 20


def test_contact_sheet_draws_keypoints_in_their_colour():
    h, w = 33, 41
    grey = (100, 100, 100)
    frames = solid_frames(1, h, w, grey)
    kp = np.array([[[0.0, 0.5], [-0.5, -0.5], [0.5, 0.0]]], np.float32)  # (F=1, K=3, 2)
    sheet = report.contact_sheet([("A", frames)], {"A": kp}, columns=1)
    # Locate the frame by its grey pixels, then read each keypoint's pixel: px = (u + 1) / 2 · (w - 1).
    rows, cols = np.nonzero(mask_of(sheet, grey))
    top, left = rows.min(), cols.min()
    assert rows.max() - top == h - 1 and cols.max() - left == w - 1
    colors = report.keypoint_colors(3)
    for k, (u, v) in enumerate(kp[0]):
        px, py = round((u + 1) / 2 * (w - 1)), round((v + 1) / 2 * (h - 1))
        assert tuple(sheet[top + py, left + px]) == tuple(colors[k])
        # The dot is centred there: its pixels (a symmetric disc) average to the keypoint's pixel.
        dot_rows, dot_cols = np.nonzero(mask_of(sheet, colors[k]))
        assert (dot_rows.mean(), dot_cols.mean()) == pytest.approx((top + py, left + px))
    assert frames[0, 0, 0].tolist() == list(grey) and mask_of(frames[0], grey).all()  # input untouched


def test_contact_sheet_skips_rows_without_keypoints():
    a = solid_frames(2, 16, 16, (90, 90, 90))
    b = solid_frames(2, 16, 16, (91, 91, 91))
    kp = np.zeros((2, 1, 2), np.float32)
    sheet = report.contact_sheet([("A", a), ("B", b)], {"A": kp}, columns=2)
    assert mask_of(sheet, report.keypoint_colors(1)[0]).sum() > 0
    assert mask_of(sheet, (91, 91, 91)).sum() == 2 * 16 * 16  # B: no dots
    assert mask_of(sheet, (90, 90, 90)).sum() < 2 * 16 * 16  # A: dots cover some pixels


def test_contact_sheet_rejects_bad_input():
    frames = solid_frames(3, 8, 8, (1, 2, 3))
    with pytest.raises(ValueError):
        report.contact_sheet([], None, columns=2)
    with pytest.raises(ValueError):
        report.contact_sheet([("A", frames)], None, columns=0)
    with pytest.raises(ValueError):
        report.contact_sheet([("A", frames)], {"A": np.zeros((2, 4, 2))}, columns=2)  # 2 != 3 frames
    with pytest.raises(ValueError):
        report.contact_sheet([("A", frames.astype(np.float32))], None, columns=2)


def test_write_png_round_trips_rgb(tmp_path):
    image = np.zeros((5, 7, 3), np.uint8)
    image[..., 0] = 255  # red in RGB
    path = report.write_png(tmp_path / "sub" / "sheet.png", image)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, image)


# --- eval.json / eval.md -------------------------------------------------------------------------------


METRICS = {
    "l1_recon_A": 0.0421,
    "psnr_recon_A": 24.5,
    "silhouette_iou_recon_A": 0.91,
    "nearest_silhouette_iou_AB": 0.87,
    "keypoint_jitter_A": 0.0023,
    "keypoint_cycle_error_AB": 0.012,
    "keypoint_spread_B": 0.21,
    "keypoint_mask_hit_rate_B": 0.95,
}
CONDITIONS = {
    "job": "/jobs/cat",
    "clips": {"A": "/clips/a.mp4", "B": "/clips/b"},
    "preset": "fast",
    "iterations": {"step1": 1000, "step2": 500},
    "device": "cpu",
}


def test_report_files_and_json_round_trip(tmp_path):
    json_path, md_path = report.write_report(tmp_path / "eval", METRICS, CONDITIONS)
    assert json_path == tmp_path / "eval" / "eval.json" and json_path.is_file()
    assert md_path == tmp_path / "eval" / "eval.md" and md_path.is_file()
    doc = json.loads(json_path.read_text())
    assert doc["format"] == "jokr.eval" and doc["version"] == 1
    assert doc["metrics"] == METRICS
    for key, value in CONDITIONS.items():
        assert doc["conditions"][key] == value
    assert doc["conditions"]["engine_version"] == __version__
    assert doc["conditions"]["date"][:2] == "20"
    assert set(doc["definitions"]) == set(METRICS) and all(doc["definitions"].values())


def test_report_markdown_lists_every_metric_with_value_and_definition(tmp_path):
    _, md_path = report.write_report(tmp_path, METRICS, CONDITIONS)
    md = md_path.read_text()
    for name in METRICS:
        line = next(line for line in md.splitlines() if f"`{name}`" in line)
        assert report.definition_for(name) in line
    assert "| 0.0023 |" in md and "| 24.5 |" in md
    for key in ["job", "clips", "preset", "iterations", "device", "date", "engine_version"]:
        assert f"| {key} |" in md
    assert "/jobs/cat" in md and "fast" in md


def test_definitions_pick_the_longest_whole_name():
    assert report.definition_for("nearest_silhouette_iou_AB") == report.METRIC_DEFINITIONS["nearest_silhouette_iou"]
    assert report.definition_for("AB/silhouette_iou") == report.METRIC_DEFINITIONS["silhouette_iou"]
    assert report.definition_for("psnr") == report.METRIC_DEFINITIONS["psnr"]
    assert report.definition_for("l1x") == "" and report.definition_for("something_else") == ""


def test_report_writes_non_finite_as_null(tmp_path):
    json_path, md_path = report.write_report(
        tmp_path, {"psnr": float("nan"), "l1": None, "keypoint_jitter": 0.5}, {"job": "j"}
    )
    doc = json.loads(json_path.read_text())
    assert doc["metrics"] == {"psnr": None, "l1": None, "keypoint_jitter": 0.5}
    md = md_path.read_text()
    assert "| `psnr` | n/a |" in md and "| `l1` | n/a |" in md


def test_report_refuses_non_numeric_metric(tmp_path):
    with pytest.raises(TypeError):
        report.write_report(tmp_path, {"l1": "small"}, {})
