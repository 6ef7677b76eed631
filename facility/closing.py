"""What every store and client with a `close` shares: `with` closes it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosedOnExit:
    """A store or client used in a `with` block is closed at its end; it defines `close`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
