"""Durations as people write them in config files: 90s, 15m, 6h, 2d."""

from __future__ import annotations


def parse_duration(text: str | int | float) -> float:
    """'90s', '15m', '6h', '2d' or a number of seconds -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):  # a list or a mapping where a duration belongs
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 6h, 2d)")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    for suffix in ("ms", "s", "m", "h", "d", "w"):
        if text.endswith(suffix):
            number = text[: -len(suffix)].strip()
            try:
                return float(number) * units[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 6h, 2d)") from None
