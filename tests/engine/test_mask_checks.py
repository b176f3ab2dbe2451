"""The suspect-frame check: silent on the true masks of every sample clip, and it flags exactly the frames
of a doctored sequence, each for the reason it was doctored."""

import cv2
import numpy as np
import pytest

from jokr_engine.mask_checks import check_masks

CLIPS = ["cat", "fox", "horse", "deer", "cow", "cows", "bear", "dog"]


def true_masks(shared_data, clip):
    files = sorted((shared_data / clip / "masks").glob("*.png"))
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) > 127 for f in files]), [f.stem for f in files]


@pytest.mark.parametrize("clip", CLIPS)
def test_the_true_masks_have_no_suspect_frame(shared_data, clip):
    masks, names = true_masks(shared_data, clip)
    report = check_masks(masks, names)
    assert report["frames"] == len(names) and report["suspect"] == []
    assert all(0 < area < 1 for area in report["area"])


def test_a_doctored_sequence_is_flagged_where_it_was_doctored(shared_data):
    masks, names = true_masks(shared_data, "dog")
    doctored = masks.copy()
    doctored[10] = False  # lost the animal
    rows = np.nonzero(doctored[20].any(axis=1))[0]
    doctored[20, : (rows[0] + rows[-1]) // 2] = False  # lost the upper half of the body
    doctored[30] = np.roll(doctored[30], 200, axis=1)  # a blob somewhere else
    doctored[40] = ~doctored[40]  # the background taken for the animal
    doctored[50] = True  # everything
    flagged = {entry["index"]: set(entry["reasons"]) for entry in check_masks(doctored, names)["suspect"]}
    assert set(flagged) == {10, 20, 30, 40, 50}, flagged
    assert flagged[10] == {"empty"}
    assert "area_jump" in flagged[20]  # (its centroid moved down too)
    assert flagged[30] == {"centroid_jump"}
    assert {"touches_all_sides", "area_jump"} <= flagged[40]
    assert {"full", "touches_all_sides"} <= flagged[50]
    assert names[10] == check_masks(doctored, names)["suspect"][0]["frame"]


def test_report_holds_area_and_centroid_in_frame_coordinates():
    masks = np.zeros((2, 10, 20), bool)
    masks[:, 0:2, 0:4] = True  # top-left 4×2 block: centre at pixel (1.5, 0.5) → (2/20, 1/10)
    report = check_masks(masks, ["a", "b"])
    assert report["area"] == [0.04, 0.04] and report["centroid"][0] == [0.1, 0.1]
