"""Where a run's metrics go (``train.loggers``): metrics.jsonl, metrics.csv, TensorBoard.

``metrics.jsonl`` is the run's record: resuming trims it and ``nestgraph plot`` reads it, so
it is always among the loggers. ``metrics.csv`` is a view of the same records with one column
per key, rewritten from metrics.jsonl when a session starts (so a resumed run's CSV never holds
a step twice) and appended to afterwards. TensorBoard event files go to ``RUN/tensorboard/``;
they need the optional ``tensorboard`` package.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from nestgraph.errors import EnvironmentProblem
from nestgraph.fsutil import atomic_write_text
from nestgraph.runtime.train.runs import MetricsLog, read_metrics

CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_INSTALL = "pip install 'nestgraph[tensorboard]'"
_FIRST_COLUMNS = ("step", "loss", "heldout_bpb", "tokens_per_s")


def require_loggers(names: list[str]) -> None:
    """Fail before a run folder is made if a logger asked for cannot work here."""
    if "tensorboard" in names:
        _summary_writer()


def _summary_writer():
    try:
        import tensorboard  # noqa: F401  torch's writer needs it, and says so less clearly
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise EnvironmentProblem("train.loggers asks for tensorboard, which is not installed",
                                 f"{TENSORBOARD_INSTALL}, or leave tensorboard out of "
                                 "train.loggers") from None
    return SummaryWriter


class CsvLog:
    """metrics.csv: every record of metrics.jsonl as a row; columns fixed per session."""

    def __init__(self, run_dir: Path, columns: list[str]) -> None:
        self.path = Path(run_dir) / CSV_FILE
        previous = read_metrics(Path(run_dir) / "metrics.jsonl") \
            if (Path(run_dir) / "metrics.jsonl").is_file() else []
        seen = [key for record in previous for key in record]
        self.columns = _ordered([*columns, *seen])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(previous)
        atomic_write_text(self.path, buffer.getvalue())
        self._handle = open(self.path, "a", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._handle, self.columns, extrasaction="ignore",
                                      lineterminator="\n")

    def write(self, record: dict[str, Any]) -> None:
        self._writer.writerow(record)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class TensorBoardLog:
    """Scalars under ``RUN/tensorboard``; a resumed session purges the steps it replays."""

    def __init__(self, run_dir: Path, resumed_from: int) -> None:
        writer = _summary_writer()
        self._writer = writer(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                              purge_step=resumed_from + 1 if resumed_from else None)

    def write(self, record: dict[str, Any]) -> None:
        step = record.get("step", 0)
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Loggers:
    """Every logger a run asked for, written to together."""

    def __init__(self, run_dir: Path, names: list[str], *, columns: list[str],
                 resumed_from: int = 0) -> None:
        self.sinks: list = []
        try:
            if "csv" in names:
                self.sinks.append(CsvLog(run_dir, columns))
            if "tensorboard" in names:
                self.sinks.append(TensorBoardLog(run_dir, resumed_from))
            # jsonl last: CsvLog reads metrics.jsonl as it stands before this session.
            self.sinks.insert(0, MetricsLog(Path(run_dir) / "metrics.jsonl"))
        except BaseException:
            self.close()
            raise

    def write(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoLoggers(Loggers):
    """The loggers of a rank other than 0: rank 0 writes the metrics of the whole job."""

    def __init__(self) -> None:
        self.sinks = []


def _ordered(keys: list[str]) -> list[str]:
    unique = list(dict.fromkeys(keys))
    first = [k for k in _FIRST_COLUMNS if k in unique]
    return first + [k for k in unique if k not in first]
