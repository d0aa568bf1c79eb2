"""The undo stack of an ADD: every step that created something pushes how to revert it;
on failure the steps run newest first, and a step that fails while reverting is logged,
never raised (the original error is the one to report)."""

from __future__ import annotations


class Undo:
    """``push(what, fn, *args)`` after (or before, when the step may fail half-way and the
    revert tolerates finding nothing) each change; ``run()`` reverts them all."""

    __slots__ = ("who", "steps")

    def __init__(self, who: str = "plugin") -> None:
        self.who = who
        self.steps: list = []

    def push(self, what: str, fn, *args) -> None:
        self.steps.append((what, fn, args))

    def run(self) -> None:
        """Revert every step, newest first; errors go to stderr."""
        import sys

        while self.steps:
            what, fn, args = self.steps.pop()
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - keep undoing the rest
                sys.stderr.write(f"{self.who}: undo {what} failed: {e}\n")
