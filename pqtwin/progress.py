"""Progress for a log or a pipe: what a long command says while it works when stderr is no terminal.

On a terminal the commands draw rich's bar, which disappears when done. Redirected (``nohup``, CI, ``2> log``), a
bar draws nothing at all, so a sweep of a million points or a ten-thousand-device run said nothing for many
minutes. ``LogProgress`` stands in for the bar there: it takes the calls the commands make of rich's
``Progress`` (a context manager; ``add_task``, ``update``, ``start``, ``stop``) and prints a plain line per task at
most every ``every_s`` — none for a task that ends sooner, so short commands keep their output as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

EVERY_S = 30.0  # between two lines of one task (and before its first)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    said_s: float = 0.0  # when its last line was printed (its start before the first)


class LogProgress:
    """rich ``Progress``'s calls, answered by a plain line on ``console`` every ``every_s`` per task."""

    def __init__(self, console: Console, label: str | None = None, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        """``label``: the bar's fixed text, put before each task's description; ``every_s``: default ``EVERY_S``."""
        every_s = EVERY_S if every_s is None else every_s
        if not every_s > 0:
            raise ValueError(f"every_s must be > 0 (got {every_s!r})")
        self.console, self.label, self.every_s, self.clock = console, label, every_s, clock
        self.tasks: list[_Task] = []
        self.started_s = clock()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Nothing to draw: lines are printed as tasks advance."""

    def stop(self) -> None:
        """Nothing to take down: a line once printed stays, as a log's lines do."""

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self.tasks.append(_Task(description, total, said_s=self.clock()))
        return len(self.tasks) - 1

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               description: str | None = None, **_: Any) -> None:  # fmt: skip
        task = self.tasks[task_id]
        task.completed = task.completed if completed is None else completed
        task.total = task.total if total is None else total
        task.description = task.description if description is None else description
        now = self.clock()
        if now - task.said_s >= self.every_s:
            task.said_s = now
            what = f"{self.label} {task.description}" if self.label else task.description
            self.console.print(Text(line(what, task.completed, task.total, now - self.started_s)), soft_wrap=True,
                               highlight=False)  # fmt: skip


def line(description: str, completed: float, total: float | None, elapsed_s: float) -> str:
    """``sweep-x: checking points: 120,000 of 1,000,000 (12 %), 2 min elapsed``."""
    from sim.cost import duration

    done = f"{completed:,.0f}"
    if total:
        done += f" of {total:,.0f} ({100 * completed / total:.0f} %)"
    return f"{description}: {done}, {duration(elapsed_s)} elapsed"
