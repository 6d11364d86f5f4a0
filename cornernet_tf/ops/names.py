"""The directions and corners every corner-pool implementation accepts (`corner_pool` and the
compiled op), checked in one place so that their errors agree."""

from __future__ import annotations

DIRECTIONS = ("top", "left", "bottom", "right")
CORNERS = ("top_left", "bottom_right")


def check_choice(op: str, kind: str, value: str, valid: tuple[str, ...]) -> str:
    """`value` if it is one of `valid`, else ValueError naming `op`, the kind of value and the valid ones."""
    if value not in valid:
        raise ValueError(f"{op}: unknown {kind} {value!r}; valid values are {list(valid)}")
    return value


def check_direction(direction: str, op: str = "corner_pool") -> str:
    """`direction` if it is one of DIRECTIONS, else ValueError naming `op` and the valid values.
    Shared by every implementation, so they accept the same names."""
    return check_choice(op, "direction", direction, DIRECTIONS)


def check_corner(corner: str, op: str) -> str:
    """`corner` if it is one of CORNERS, else ValueError naming `op` and the valid values."""
    return check_choice(op, "corner", corner, CORNERS)
