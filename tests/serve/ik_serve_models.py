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


class AbortsAtExitModel:
    """Answers like a plain function, but its interpreter aborts while it is finalised: loading
    it registers os.abort with atexit, which runs when the interpreter is torn down."""

    def __init__(self) -> None:
        self.factor = 2   # a non-empty state, so unpickling calls __setstate__

    def __setstate__(self, state: dict) -> None:
        import atexit
        import os

        atexit.register(os.abort)
        self.__dict__.update(state)

    def __call__(self, request: int) -> int:
        return request * self.factor
