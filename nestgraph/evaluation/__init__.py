"""Evaluation tasks of a trained run (``nestgraph eval``): each a function of a loaded run.

Every task function takes a `Loaded` run and keyword options and returns a plain dict (JSON
ready); `nestgraph.evaluation.report` writes it to ``RUN/eval/TASK.json`` and prints it.
"""

from __future__ import annotations

TASKS = ("continual", "recall", "copy", "levels")
