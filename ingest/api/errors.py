"""The API's answers to refused actions (409) and malformed requests (422)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_ECHO_CHARS = 200  # a 422 quotes at most this much of what was sent


async def refused(request: Request, exc: Exception) -> JSONResponse:
    """The book refused the action (AlarmActionError): its explanation, 409."""
    return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)


async def invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422, but one that can always be sent. Its errors repeat the input,
    which may be what no JSON response holds: NaN, Infinity or a lone surrogate
    ("\\ud800"), all of which Python's JSON parser takes, or the bytes of a body of
    another media type. FastAPI's own handler answered those with a 500."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(_json_safe([_short_input(e) for e in exc.errors()]))
    return JSONResponse({"detail": errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def _short_input(error: Any) -> Any:
    """An error quoting at most a preview of the input: a 60 kB comment is not sent back
    (nor the whole body, which FastAPI quotes for a body that is not an object)."""
    if not isinstance(error, dict) or "input" not in error:
        return error
    shown = error["input"]
    text = shown if isinstance(shown, str) else repr(shown)
    if len(text) <= MAX_ECHO_CHARS:
        return error
    preview = text[:MAX_ECHO_CHARS]
    return {**error, "input": f"{preview}… ({len(text)} characters, not all shown)"}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, str):
        return value.encode("utf-8", errors="backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
