"""Where a result strip goes and what it is called (docs/ADDON.md, "Render back"); no bpy.

A result has one clip's motion and the other's look. AB (A's motion, B's look) belongs directly above
clip A's strip and BA directly above clip B's: over its own plate, as a compositor stacks a layer
over the footage it replaces. When the channel above the driving strip is taken where the result
plays, the strips in the way move up one channel (and the strips in their way, and so on), so nothing
is overwritten and the stack keeps its order; only when that would push a strip past the last channel
does the result take the first free channel above.
"""

from __future__ import annotations

from dataclasses import dataclass

NAME_BYTES = 62  # a strip name's limit in Blender (4.2 and 5.0)


@dataclass(frozen=True)
class Direction:
    code: str  # "AB" or "BA"
    driver: str  # the clip whose motion (keypoints) drives the result
    look: str  # the clip whose look the result has

    def describe(self) -> str:
        return f"{self.driver}'s motion, {self.look}'s look"


DIRECTIONS = {"AB": Direction("AB", "A", "B"), "BA": Direction("BA", "B", "A")}


def _fit(text: str, budget: int) -> str:
    """`text` cut to `budget` UTF-8 bytes, ending in '…' when cut (never inside a character)."""
    if len(text.encode()) <= budget:
        return text
    return text.encode()[: max(budget - len("…".encode()), 0)].decode(errors="ignore") + "…"


def result_name(direction: Direction, driver_strip: str, look_strip: str) -> str:
    """E.g. 'JOKR AB: motion A (cat) · look B (fox)', the strip names shortened to fit Blender."""
    def name(driver: str, look: str) -> str:
        return f"JOKR {direction.code}: motion {direction.driver} ({driver}) · look {direction.look} ({look})"

    spare = NAME_BYTES - len(name("", "").encode())
    if len(driver_strip.encode()) + len(look_strip.encode()) <= spare:
        return name(driver_strip, look_strip)
    half = spare // 2
    driver_budget = max(half, spare - len(look_strip.encode()))
    driver = _fit(driver_strip, driver_budget)
    return name(driver, _fit(look_strip, spare - len(driver.encode())))


@dataclass(frozen=True)
class Span:
    """A strip in the timeline: its channel and frames [start, end)."""

    key: object
    channel: int
    start: float
    end: float

    def overlaps(self, start: float, end: float) -> bool:
        return self.start < end and start < self.end


def place_above(spans: list[Span], below: int, start: float, end: float,
                max_channel: int) -> tuple[int, list[tuple[object, int]]] | None:
    """The channel for a strip playing [start, end) directly above channel `below`, and the moves
    (strip key, new channel) that make room there, in an order that never puts two strips on top of
    each other (the highest first). None when no channel above is free, even with moves."""
    target = below + 1
    if target > max_channel:
        return None
    moves: dict[object, int] = {}
    frontier = [s for s in spans if s.channel == target and s.overlaps(start, end)]
    pushable = True
    while frontier and pushable:
        following = []
        for span in frontier:
            if span.key in moves:
                continue
            moves[span.key] = span.channel + 1
            if span.channel + 1 > max_channel:
                pushable = False
                break
            following += [s for s in spans if s.channel == span.channel + 1 and s.key not in moves
                          and s.overlaps(span.start, span.end)]
        frontier = following
    if pushable:
        order = sorted(moves.items(), key=lambda move: -move[1])
        return target, order
    for channel in range(target, max_channel + 1):
        if not any(s.channel == channel and s.overlaps(start, end) for s in spans):
            return channel, []
    return None
