"""Models packaged by the serve tests: each one breaks one promise of the serving protocol."""
from __future__ import annotations


class CountingModel:
    """Stateful: answers how many requests this copy has seen, so a replay in one interpreter differs."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, request: int) -> int:
        self.seen += 1
        return self.seen


class FailingModel:
    """Raises on every request."""

    def __call__(self, request: int) -> int:
        raise ValueError(f"cannot answer request {request} (always fails)")
