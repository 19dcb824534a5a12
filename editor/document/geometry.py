"""Integer rectangles in canvas or layer pixel coordinates.

Every region the model passes around (dirty areas, render requests, dab
footprints) is a half-open integer rectangle, so tile arithmetic never has to
guess about rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class Rect:
    """Half-open pixel rectangle: columns [x, x + w), rows [y, y + h)."""

    x: int
    y: int
    w: int
    h: int

    @staticmethod
    def from_bounds(x0: int, y0: int, x1: int, y1: int) -> "Rect":
        """Build from corners; an inverted box gives an empty rect."""
        return Rect(int(x0), int(y0), max(0, int(x1) - int(x0)), max(0, int(y1) - int(y0)))

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    def is_empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    def area(self) -> int:
        return 0 if self.is_empty() else self.w * self.h

    def intersect(self, other: "Rect") -> "Rect":
        return Rect.from_bounds(
            max(self.x, other.x), max(self.y, other.y), min(self.x1, other.x1), min(self.y1, other.y1)
        )

    def union(self, other: "Rect") -> "Rect":
        # An empty rect is the identity of union, whatever its position.
        if self.is_empty():
            return other
        if other.is_empty():
            return self
        return Rect.from_bounds(
            min(self.x, other.x), min(self.y, other.y), max(self.x1, other.x1), max(self.y1, other.y1)
        )

    def translated(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def contains_rect(self, other: "Rect") -> bool:
        return other.is_empty() or (
            self.x <= other.x and self.y <= other.y and other.x1 <= self.x1 and other.y1 <= self.y1
        )

    def slices(self, origin_x: int = 0, origin_y: int = 0) -> tuple[slice, slice]:
        """Numpy (row, column) slices of this rect inside an array whose (0, 0) is at origin."""
        return (slice(self.y - origin_y, self.y1 - origin_y), slice(self.x - origin_x, self.x1 - origin_x))


EMPTY_RECT = Rect(0, 0, 0, 0)


def union_all(rects: Iterable[Rect]) -> Rect:
    out = EMPTY_RECT
    for r in rects:
        out = out.union(r)
    return out


def bbox_or_none(r: Rect) -> Optional[Rect]:
    return None if r.is_empty() else r
