"""Progress output: a live bar on a terminal, plain periodic lines in a log file.

Bars that redraw with carriage returns fill non-interactive logs with garbage, so the choice is
made from whether standard error is a terminal, not from a flag a user must remember.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Reporter:
    """Receives the loop's events; subclasses decide how to show them."""

    @staticmethod
    def auto(log_every: int = 10) -> Reporter:
        console = Console(stderr=True)
        return RichReporter(console) if console.is_terminal else PlainReporter(log_every)

    def start(self, total: int, done: int) -> None: ...

    def step(self, step: int, record: dict) -> None: ...

    def note(self, text: str) -> None: ...

    def stop(self) -> None: ...


class SilentReporter(Reporter):
    """For tests and library use."""


class PlainReporter(Reporter):
    """One line every `every` steps, with loss, throughput and the estimated time left."""

    def __init__(self, every: int = 10, stream=None) -> None:
        self.every, self.stream = every, stream or sys.stderr
        self.total = self.done0 = 0
        self.t0 = time.perf_counter()

    def start(self, total: int, done: int) -> None:
        self.total, self.done0, self.t0 = total, done, time.perf_counter()

    def step(self, step: int, record: dict) -> None:
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.done0) / max(elapsed, 1e-9)
        eta = (self.total - step) / max(rate, 1e-9)
        print(f"step {step}/{self.total}  loss {record['loss']:.4f}  "
              f"{record['tokens_per_s']:,.0f} tok/s  eta {eta:,.0f}s",
              file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichReporter(Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None

    def start(self, total: int, done: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeRemainingColumn(), console=self.console)
        self.task = self.progress.add_task("train", total=total, completed=done,
                                           loss="-", tps="-")
        self.progress.start()

    def step(self, step: int, record: dict) -> None:
        self.progress.update(self.task, completed=step, loss=f"{record['loss']:.4f}",
                             tps=f"{record['tokens_per_s']:,.0f}")

    def note(self, text: str) -> None:
        (self.progress.console if self.progress else self.console).print(text, markup=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class FollowerReporter(Reporter):
    """What a rank other than 0 shows of a distributed run: nothing (rank 0 reports for all)."""

    def attach(self, path) -> None: ...

    def fileno(self) -> int | None:
        return None

    def close(self) -> None: ...


class LogFileReporter(Reporter):
    """Another reporter, plus ``RUN/train.log``: every note and periodic step line, as text.

    Notes arrive before the run folder exists (which run is resumed, the thread count); they
    are kept and written once `attach` names the file.
    """

    def __init__(self, inner: Reporter, every: int = 10) -> None:
        self.inner, self.every = inner, every
        self._pending: list[str] = []
        self._handle = None
        self._plain: PlainReporter | None = None

    def attach(self, path) -> None:
        self._handle = open(path, "a", encoding="utf-8", newline="\n")
        self._plain = PlainReporter(self.every, stream=self._handle)
        for line in self._pending:
            self._plain.note(line)
        self._pending = []

    def start(self, total: int, done: int) -> None:
        self.inner.start(total, done)
        if self._plain is not None:
            self._plain.start(total, done)

    def step(self, step: int, record: dict) -> None:
        self.inner.step(step, record)
        if self._plain is not None:
            self._plain.step(step, record)

    def note(self, text: str) -> None:
        self.inner.note(text)
        if self._plain is None:
            self._pending.append(text)
        else:
            self._plain.note(text)

    def stop(self) -> None:
        self.inner.stop()

    def fileno(self) -> int | None:
        """train.log's descriptor, flushed, for writes that cannot go through Python's buffer."""
        if self._handle is None:
            return None
        self._handle.flush()
        return self._handle.fileno()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._plain = None
