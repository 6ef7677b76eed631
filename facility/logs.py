"""Logging for the daemons: plain text for people, JSON lines for log collectors."""

from __future__ import annotations

import json
import logging
import re
import reprlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we report device errors


PREVIEW_CHARS = 60


def reason_kind(reason: str) -> str:
    """ "not zlib-compressed JSON: Expecting ',' delimiter: line 1 column 77" -> the part
    before the details, numbers masked: a key to count and rate-limit refusals by."""
    return re.sub(r"\d+", "N", reason.split(":", 1)[0])[:80]


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = PREVIEW_CHARS
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 3
_SHORT.maxlong = 40


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """repr() of a value from outside, cut to `limit` characters: a reason quotes the
    start of what was refused, never all of it (a 60 kB string in every log line and
    counter key grew a gateway by 100 MB). Built with reprlib, which looks at a few
    items, a few levels and the start of a long string, so a huge or deep value is never
    copied whole."""
    if type(value) is str and len(value) <= limit:  # the common case, quickly
        text = repr(value)
        if len(text) <= limit:
            return text
    if isinstance(value, str | bytes | bytearray) and len(value) > limit:
        head = value[:limit]
        return f"{head!r}… ({len(value)} {'chars' if isinstance(value, str) else 'bytes'})"
    try:
        text = _SHORT.repr(value)
    except (RecursionError, ValueError):  # an int past int_max_str_digits, say
        return f"a {type(value).__name__} too long to show"
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


@dataclass
class RateLimitedLog:
    """Logs refusals of bad input at a bounded cost: the first of each kind at once,
    then at most one line per kind every `every_s` seconds saying how many were left
    unsaid. Kinds are short and fixed (never the value itself); past `max_kinds` they
    share one, so a flood of distinct messages cannot grow the table."""

    logger: logging.Logger
    every_s: float = 60.0
    max_kinds: int = 100
    level: int = logging.WARNING
    clock: Callable[[], float] = time.monotonic
    _kinds: dict[str, list[float | int]] = field(default_factory=dict)  # kind -> [at, unsaid]

    def kind_of(self, kind: str) -> str:
        if kind in self._kinds or len(self._kinds) < self.max_kinds:
            return kind
        return "other"

    def log(self, kind: str, message: str, *args: object) -> None:
        """`message % args` under `kind`; the caller keeps message and args short."""
        kind = self.kind_of(kind)
        now = self.clock()
        entry = self._kinds.get(kind)
        if entry is None:
            self._kinds[kind] = [now, 0]
            self.logger.log(self.level, message, *args)
            return
        if now - entry[0] < self.every_s:
            entry[1] += 1
            return
        unsaid = int(entry[1])
        entry[0], entry[1] = now, 0
        if unsaid:
            self.logger.log(
                self.level,
                message + " (and %d more like it since the last report)",
                *args,
                unsaid,
            )
        else:
            self.logger.log(self.level, message, *args)
