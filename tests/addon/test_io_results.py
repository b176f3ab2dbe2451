"""Where result strips go and what they are called, and whose keys are whose: the bpy-free rules."""

import numpy as np
import pytest


def spans(jio, *rows):
    return [jio.results.Span(key, channel, start, end) for key, channel, start, end in rows]


def test_result_goes_right_above_the_driver_when_free(jio):
    layout = spans(jio, ("A", 1, 1, 13), ("B", 2, 40, 50))  # B plays later: channel 2 is free meanwhile
    assert jio.results.place_above(layout, 1, 1, 13, 128) == (2, [])


def test_strips_in_the_way_move_up_in_a_safe_order(jio):
    layout = spans(jio, ("A", 1, 1, 13), ("B", 2, 1, 11), ("title", 3, 5, 20), ("music", 4, 15, 30),
                   ("later", 2, 30, 40), ("elsewhere", 3, 100, 110))
    channel, moves = jio.results.place_above(layout, 1, 1, 13, 128)
    assert channel == 2
    # B is in the way; B moving up meets the title; the title moving up meets the music. 'later' and
    # 'elsewhere' play at other times and stay. The highest moves first, so no two strips ever meet.
    assert moves == [("music", 5), ("title", 4), ("B", 3)]


def test_full_channels_fall_back_to_the_first_free_one(jio):
    # B (long) in the way pushes C, which pushes D past the last channel (4): the result, short, takes
    # channel 3, free while it plays.
    layout = spans(jio, ("A", 1, 1, 5), ("B", 2, 1, 20), ("C", 3, 15, 20), ("D", 4, 15, 30))
    assert jio.results.place_above(layout, 1, 1, 5, 4) == (3, [])
    assert jio.results.place_above(spans(jio, ("A", 1, 1, 9), ("B", 2, 1, 9)), 1, 1, 9, 2) is None


@pytest.mark.parametrize("driver, look", [("cat", "fox"), ("a" * 80, "b" * 80), ("чёрная_кошка" * 4, "fox"),
                                          ("cat", "🦊" * 30)])
def test_result_names_say_what_drives_them_and_fit_blender(jio, driver, look):
    name = jio.results.result_name(jio.results.DIRECTIONS["BA"], driver, look)
    assert len(name.encode()) <= 62
    assert name.startswith("JOKR BA: motion B (") and " · look A (" in name
    name.encode().decode()  # never cut inside a character
    if len(driver) + len(look) < 20:
        assert name == f"JOKR BA: motion B ({driver}) · look A ({look})"


def test_a_key_is_the_engines_only_while_untouched(jio):
    ko = jio.key_ownership
    record = ko.EngineRecord(first=10, values=np.array([0.1, 0.2, 0.3, 0.4]))
    frames = [10, 11, 12, 13, 14, 12.5]
    values = [0.1, 0.25, 0.3, 0.4, 0.5, 0.3]
    generated = [True, True, True, False, True, True]
    assert ko.artist_keys(frames, values, generated, record).tolist() == [
        False,  # as the engine keyed it
        True,  # GENERATED, but the value changed (a key inserted over the engine's)
        False,
        True,  # an ordinary keyframe
        True,  # a frame the engine never keyed
        True,  # a subframe
    ]
    assert ko.artist_keys([1, 2], [0, 0], [True, False], None).tolist() == [False, True]  # no record yet


def test_merge_keeps_artist_keys_and_fills_the_rest(jio):
    source, index = jio.key_ownership.merge_order([12.0, 15.2], np.arange(10, 17, dtype=float))
    layout = list(zip(source.tolist(), index.tolist()))
    # engine frames 10, 11, 13, 14, 16 and the artist's keys on 12 and 15.2 (which takes frame 15)
    assert layout == [(1, 0), (1, 1), (0, 0), (1, 3), (1, 4), (0, 1), (1, 6)]
