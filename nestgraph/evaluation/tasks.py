"""Running a task by name with the command line's options: settings checked, JSON written."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter

from nestgraph.errors import UsageProblem
from nestgraph.escape import printable
from nestgraph.evaluation import TASKS, report
from nestgraph.evaluation.loaded import Loaded


@dataclass
class Options:
    """Every option of `nestgraph eval`; each task reads the ones it has."""

    steps: int = 20  # continual: training steps per domain
    stdlib_domains: int = 3
    domains: list[Path] = field(default_factory=list)
    domain_bytes: int = 200_000
    fresh: bool = False
    batches: int = 2  # held-out batches per score (continual, levels)
    lengths: str = "1,2,4"  # recall: context lengths in multiples of train.seq_len
    sizes: str = "4,8,16,32"  # copy: the strings' n
    samples: int = 8
    finetune: int = 0
    threshold: float = 1e-4
    seed: int = 0


def tasks_named(name: str) -> list[str]:
    if name == "all":
        return list(TASKS)
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = (f"did you mean '{close[0]}'? " if close else "") + \
            f"choose one of {', '.join(TASKS)}, or all"
        raise UsageProblem(f"unknown task '{printable(name)}'", hint)
    return [name]


def check(options: Options) -> None:
    """Refuse nonsense options before any work is done."""
    for name in ("stdlib_domains", "finetune"):
        if getattr(options, name) < 0:
            raise UsageProblem(f"--{name.replace('_', '-')} must not be negative",
                               "give 0 or more")
    for name in ("steps", "batches", "samples"):
        if getattr(options, name) < 1:
            raise UsageProblem(f"--{name} must be at least 1")
    if options.domain_bytes < 256:
        raise UsageProblem("--domain-bytes must be at least 256")
    if not options.threshold >= 0:
        raise UsageProblem("--threshold must be a number of bits per byte, 0 or more")
    lengths(options)
    sizes(options)


def _numbers(text: str, kind, option: str, example: str) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) <= 0 or not all(v < 1e6 for v in values):
        what = "positive numbers" if kind is float else "positive whole numbers"
        raise UsageProblem(f"{option} '{printable(text)}' is not a comma-separated list of "
                           f"{what}", f"e.g. {option} {example}")
    return values


def lengths(options: Options) -> tuple[float, ...]:
    """Recall's context lengths, in multiples of train.seq_len."""
    return _numbers(options.lengths, float, "--lengths", "1,2,4")


def sizes(options: Options) -> tuple[int, ...]:
    """The copy task's n values."""
    return _numbers(options.sizes, int, "--sizes", "4,8,16,32")


BYTE_TASKS = ("continual", "recall", "copy")  # their domains and items are bytes


def run_task(task: str, loaded: Loaded, options: Options) -> dict:
    """The task's result dict, as the task function returns it."""
    from nestgraph.evaluation import continual, formal, levels, recall

    if task in BYTE_TASKS and not loaded.bytes_tokens:
        raise UsageProblem(f"the {task} task builds its text byte by byte, and this run's "
                           f"tokens are those of a tokenizer ({loaded.tokenizer.vocab} tokens)",
                           "evaluate it with the levels task, or train with data.tokenizer: "
                           f"bytes to run {task}")

    if task == "continual":
        from nestgraph.evaluation.continual import file_domain, stdlib_domains

        domains = stdlib_domains(options.stdlib_domains, options.domain_bytes)
        domains += [file_domain(p, options.domain_bytes) for p in options.domains]
        return continual.run(loaded, domains=domains, steps=options.steps,
                             batches=options.batches, fresh=options.fresh)
    if task == "recall":
        return recall.run(loaded, lengths=lengths(options), samples=options.samples,
                          seed=options.seed, finetune_steps=options.finetune)
    if task == "copy":
        return formal.run(loaded, sizes=sizes(options), samples=options.samples,
                          seed=options.seed, finetune_steps=options.finetune)
    return levels.run(loaded, batches=options.batches, threshold=options.threshold)


def settings(task: str, options: Options) -> dict:
    chosen = {k: (list(map(str, v)) if k == "domains" else v) for k, v in asdict(options).items()}
    chosen["lengths"], chosen["sizes"] = list(lengths(options)), list(sizes(options))
    return chosen


def evaluate(run: Path, task: str, loaded: Loaded, options: Options) -> tuple[Path, dict]:
    """Run one task, write ``RUN/eval/TASK.json``; the path and the document."""
    tick = perf_counter()
    results = run_task(task, loaded, options)
    doc = report.document(task, loaded, settings(task, options), results, perf_counter() - tick)
    return report.write(run, task, doc), doc
