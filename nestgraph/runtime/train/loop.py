"""The training loop: one visible loop, every level updated exactly at its period.

Per training step: read the batch (in-context levels learn inside `read_sequence`), back-propagate
the next-token loss once, then let every step level whose period divides the step count apply
its optimizer to the gradient its parameters accumulated since it last fired.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch

from nestgraph.errors import (
    EXIT_INTERRUPTED,
    NestgraphError,
    TrainingError,
)
from nestgraph.escape import printable
from nestgraph.fsutil import environment_errors
from nestgraph.runtime.program import Program
from nestgraph.runtime.train import checkpoint as ckpt
from nestgraph.runtime.train.data import Corpus, check_vocab, read_corpus, resolve_source
from nestgraph.runtime.train.distributed import (
    any_rank,
    average_grads,
    average_stream,
    barrier,
    current_rank,
    from_main,
    local_device,
    process_group,
    shared_run_dir,
)
from nestgraph.runtime.train.loggers import Loggers, NoLoggers, require_loggers
from nestgraph.runtime.train.progress import FollowerReporter, LogFileReporter, Reporter
from nestgraph.runtime.train.resume import find_resume, restore, save, trim_metrics
from nestgraph.runtime.train.runs import (
    ENV_FILE,
    RunLock,
    atomic_write_text,
    new_run_dir,
    remove_stale_temporaries,
    write_env_json,
)
from nestgraph.runtime.train.step import (
    TrainState,
    build_state,
    check_finite,
    evaluate,
    gradients_synchronised,
    non_finite_hint,
    resolve_device,
    train_step,
)
from nestgraph.runtime.train.threads import Threads, apply_threads
from nestgraph.runtime.train.tokenizer import RUN_FILE

TRAIN_LOG = "train.log"
STOP_MESSAGE = b"\nstopping after this step; Ctrl-C again to stop now\n"
STOP_EVERY_RANK = b"\nstopping every process after this step and writing the checkpoint\n"


class Interrupted(NestgraphError):
    """Ctrl-C during training: the checkpoint is written, then the CLI exits with 130."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, run_dir: Path, step: int, world: int = 1) -> None:
        per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        launch = f" --nproc-per-node {per_node}" if world > 1 else ""
        super().__init__(f"interrupted at step {step}; checkpoint written in {run_dir}",
                         f"continue it with: nestgraph train {run_dir} --resume {run_dir}"
                         f"{launch}")
        self.run_dir, self.step = run_dir, step


@dataclass
class RunResult:
    run_dir: Path
    step: int
    heldout_bpb: float
    resumed_from: int = 0
    history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ checkpoints


@contextmanager
def _sigint_flag(log_fd: int | None = None):
    """First Ctrl-C asks the loop to stop after the current step; a second one stops now.

    The first one is acknowledged at once on standard error (and in train.log, `log_fd`).
    In a data-parallel job every process gets Ctrl-C, and torchrun's launcher sends it once
    more on its way out: there only rank 0 acknowledges it, and a second one does not cut the
    checkpoint short (the launcher kills processes that take too long).
    """
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)
    rank = current_rank()

    def handler(signum, frame):
        if flag["stop"] and rank.world_size == 1:
            raise KeyboardInterrupt
        if flag["stop"] or not rank.is_main:
            flag["stop"] = True
            return
        flag["stop"] = True
        message = STOP_MESSAGE if rank.world_size == 1 else STOP_EVERY_RANK
        # os.write is a single system call: safe while the interrupted code holds
        # sys.stderr's buffer (print could fail with a reentrant call there).
        for fd in (2, log_fd):
            if fd is not None:
                try:
                    os.write(fd, message)
                except OSError:
                    pass

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: keep the default behaviour
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------------ train


@dataclass
class _Session:
    """What stays fixed for one training session (a run, or one resumption of it)."""

    program: Program
    cfg: dict
    data_cfg: dict
    corpus: Corpus
    device: torch.device
    run_dir: Path
    reporter: Reporter

    def evaluate(self, state: TrainState) -> float:
        bpb = evaluate(state, self.program, self.cfg, self.corpus, self.device)
        if not math.isfinite(bpb):
            raise TrainingError(f"the held-out loss became {bpb} at step {state.step}; no "
                                "checkpoint was written for it", non_finite_hint(self.cfg))
        return bpb

    def save(self, state: TrainState) -> None:
        """Every rank takes part; rank 0 writes (the weights, optimizer and stream states are
        the same on every rank). Gradients still pending from steps that did not reduce them
        (a checkpoint on Ctrl-C) are averaged first, so the checkpoint stands for all ranks."""
        if not gradients_synchronised(self.program, self.cfg, state.step):
            average_grads(state.model)
        if current_rank().is_main or self.cfg.get("parallel") == "fsdp":  # fsdp: all write
            save(state, self.run_dir, self.cfg, self.data_cfg, self.corpus, self.program.sha256)
        else:
            check_finite(state, self.cfg)  # fails on every rank alike, as on rank 0
        barrier()  # nobody moves on (or exits) before the checkpoint is in place


def train(program: Program, cfg: dict, data_cfg: dict, *, out: Path = Path("runs"),
          resume: str = "auto", command: list[str] | None = None,
          reporter: Reporter | None = None, interrupt_at: int | None = None,
          run_dir: Path | None = None, steps: int | None = None,
          data_base: Path | None = None, defaults: dict | None = None) -> RunResult:
    """Train `program` with the train section `cfg` and data section `data_cfg`.

    `interrupt_at` behaves as if Ctrl-C were pressed once that step is done (for tests).
    `run_dir`, when given (by rank 0 under torchrun), is used instead of choosing one.
    `steps`, when the user asked for a number of steps, lets an explicitly resumed run
    (``resume=PATH``) train to that many steps instead of its own count.
    `data_base` is the folder that relative ``data.source``/``data.heldout_source`` paths are
    taken from (the folder of the spec as the user wrote it); ``None``: the working folder.
    `defaults` ({"train": ..., "data": ...}, the schema's) stand in, when deciding whether to
    resume, for settings an older run did not record.
    Every line the reporter shows also goes to ``RUN/train.log``.
    """
    main = current_rank().is_main
    log = LogFileReporter(reporter or Reporter.auto(cfg["log_every"]), cfg["log_every"]) \
        if main else FollowerReporter()
    try:
        with environment_errors(out), process_group(resolve_device(cfg["device"])):
            return _train(program, cfg, data_cfg, out=out, resume=resume, command=command,
                          reporter=log, interrupt_at=interrupt_at, run_dir=run_dir,
                          steps=steps, data_base=data_base, defaults=defaults)
    finally:
        log.close()


def _train(program, cfg, data_cfg, *, out, resume, command, reporter, interrupt_at, run_dir,
           steps, data_base, defaults) -> RunResult:
    point = _on_main(lambda: find_resume(resume, out, program, cfg, data_cfg, reporter.note,
                                         defaults))
    extended_from = None
    if point is not None:
        cfg, data_cfg = point.cfg, point.data_cfg  # a run continues with its own settings
        if resume != "auto" and steps is not None and steps != cfg["steps"]:
            extended_from, cfg = cfg["steps"], dict(cfg, steps=steps)
    threads = apply_threads(cfg.get("threads", "auto"))
    device = local_device(resolve_device(cfg["device"]))
    check_world(cfg)
    reporter.note(f"device: {device}  threads: {threads.count} ({threads.how})")
    require_loggers(cfg.get("loggers", ["jsonl"]))
    corpus = read_corpus(data_cfg, data_base, reporter.note,
                         run=point.run_dir if point is not None else None)
    if point is not None and ckpt.read_training_meta(point.checkpoint)["data_sha256"] \
            != corpus.sha256:
        if resume != "auto":
            raise TrainingError(f"the data of run '{point.run_dir}' has changed since it began",
                                "restore the data, or start a new run with --resume never")
        reporter.note(f"not resuming {point.run_dir}: its data has changed since it began")
        point = None
    init = None if point is not None else resolve_source(cfg.get("init"), data_base)
    state = build_state(program, cfg, device, init=init)
    check_vocab(corpus, int(getattr(state.model, "vocab", 256)))
    main = current_rank().is_main
    lock = None
    try:
        if point is not None:
            run_dir = point.run_dir
            lock = _claim(run_dir, main)
            restore(state, point.checkpoint, device)
            if main:
                trim_metrics(run_dir / "metrics.jsonl", state.step)
            reporter.attach(run_dir / TRAIN_LOG)
            reporter.note(f"resuming {run_dir} from step {state.step}")
            if extended_from is not None and main:
                reporter.note(f"training to step {cfg['steps']} (the run was for "
                              f"{extended_from}); the learning-rate schedules now end at step "
                              f"{cfg['steps']}")
                _record_settings(run_dir, cfg, data_cfg)
            if main:
                _record_session(run_dir, state.step, threads, command)
            if state.step >= cfg["steps"]:
                reporter.note(f"{run_dir} has already run its {cfg['steps']} steps")
                return RunResult(run_dir, state.step, float("nan"), state.step)
        else:
            run_dir = run_dir or Path(shared_run_dir(lambda: new_run_dir(out, program.name)))
            lock = _claim(run_dir, main)
            if main:
                _start_run(run_dir, program, cfg, data_cfg, corpus, device, command, threads)
            barrier()
            reporter.attach(run_dir / TRAIN_LOG)
        return _session(program, cfg, data_cfg, corpus, device, run_dir, reporter, state,
                        interrupt_at)
    finally:
        if lock is not None:
            lock.release()


def _on_main(find):
    """Rank 0's answer to `find()` on every rank; an error there stops every rank."""
    if current_rank().world_size == 1:
        return find()
    answer = None
    if current_rank().is_main:
        try:
            answer = ("ok", find())
        except NestgraphError as err:
            answer = ("error", err.message, err.hint)
            from_main(answer)
            raise
    answer = from_main(answer)
    if answer[0] == "error":
        raise TrainingError(f"rank 0 stopped: {answer[1]}", answer[2])
    return answer[1]


def check_world(cfg: dict) -> None:
    """The global batch must split evenly over the ranks."""
    world = current_rank().world_size
    if cfg["batch"] % world:
        raise TrainingError(f"train.batch={cfg['batch']} does not split evenly over {world} "
                            "processes (it is the global batch)",
                            f"set train.batch to a multiple of {world}")


def _claim(run_dir: Path, main: bool) -> RunLock | None:
    """Rank 0 locks the run folder, then clears what a killed writer left there; the other
    ranks of a distributed run neither lock nor clean."""
    if not main:
        return None
    lock = RunLock(run_dir).acquire()
    remove_stale_temporaries(run_dir)
    return lock


def _session(program, cfg, data_cfg, corpus, device, run_dir, reporter, state,
             interrupt_at) -> RunResult:
    session = _Session(program, cfg, data_cfg, corpus, device, run_dir, reporter)
    resumed_from = state.step
    unit = "bytes" if corpus.token_bytes is None else "tokens"
    reporter.note(f"run folder: {run_dir}  data: {printable(corpus.source)} "
                  f"({len(corpus.train):,} {unit})")
    columns = ["step", "loss", "heldout_bpb", "tokens_per_s",
               *[f"lr/{lv.name}" for lv in program.schedule if lv.kind == "step"],
               *[f"updates/{lv.name}" for lv in program.schedule]]
    loggers = Loggers(run_dir, cfg.get("loggers", ["jsonl"]), columns=columns,
                      resumed_from=resumed_from) if current_rank().is_main else NoLoggers()
    with loggers as log, \
            _sigint_flag(getattr(reporter, "fileno", lambda: None)()) as sig:
        history = _loop(session, state, log, sig, interrupt_at)
        bpb = session.evaluate(state)
        log.write({"step": state.step, "heldout_bpb": bpb})
        session.save(state)
    reporter.note(f"done: step {state.step}, held-out {bpb:.3f} bits/byte; run folder {run_dir}")
    return RunResult(run_dir, state.step, bpb, resumed_from, history)


def _record_settings(run_dir: Path, cfg: dict, data_cfg: dict) -> None:
    # The train and data sections as this run uses them, after every override.
    atomic_write_text(run_dir / "run.json", json.dumps(
        {"train": cfg, "data": data_cfg}, indent=2, sort_keys=True) + "\n")


def _record_session(run_dir: Path, step: int, threads: Threads, command) -> None:
    """Add this resumption (its step, thread count and command) to env.json's ``resumed``."""
    path = run_dir / ENV_FILE
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # env.json describes the run; a damaged one does not stop it
    if not isinstance(env, dict):
        return
    env.setdefault("resumed", []).append(
        {"step": step, "command": list(command or sys.argv), **threads.as_record()})
    atomic_write_text(path, json.dumps(env, sort_keys=True, indent=2) + "\n")


def _start_run(run_dir, program, cfg, data_cfg, corpus, device, command, threads) -> None:
    program.write_sources(run_dir)
    if getattr(corpus.tokenizer, "text", None):  # the run keeps the tokenizer it trains with
        atomic_write_text(run_dir / RUN_FILE, corpus.tokenizer.text)
    _record_settings(run_dir, cfg, data_cfg)
    write_env_json(run_dir, seed=cfg["seed"], command=command or sys.argv,
                   extra={"data": corpus.source, "data_sha256": corpus.sha256,
                          "device": str(device), "train": cfg, **threads.as_record()})


def _loop(session: _Session, state: TrainState, log, sig, interrupt_at) -> list[dict]:
    cfg, reporter, history = session.cfg, session.reporter, []
    if state.step == 0 and cfg["steps"] > 0:
        bpb = session.evaluate(state)
        log.write({"step": 0, "heldout_bpb": bpb})
        history.append({"step": 0, "heldout_bpb": bpb})
    tokens_per_step = cfg["batch"] * cfg["seq_len"]
    reporter.start(total=cfg["steps"], done=state.step)
    while state.step < cfg["steps"]:
        # Timed from here: evaluation, checkpoints and logging below are not the step's time.
        tick = perf_counter()
        record = train_step(state, session.program, cfg, session.corpus, session.device)
        average_stream(state.stream)  # a no-op on one process; the pending stream signal
        record["tokens_per_s"] = tokens_per_step / max(perf_counter() - tick, 1e-9)
        history.append(record)
        log.write(record)
        reporter.step(state.step, record)
        if cfg["eval_every"] and state.step % cfg["eval_every"] == 0 and state.step < cfg["steps"]:
            bpb = session.evaluate(state)
            log.write({"step": state.step, "heldout_bpb": bpb})
            reporter.note(f"step {state.step}: held-out {bpb:.3f} bits/byte")
        if cfg["checkpoint_every"] and state.step % cfg["checkpoint_every"] == 0:
            session.save(state)
        stop = any_rank(sig["stop"] or state.step == interrupt_at, session.device)
        if stop and state.step < cfg["steps"]:
            session.save(state)
            reporter.stop()
            raise Interrupted(session.run_dir, state.step, current_rank().world_size)
    reporter.stop()
    return history
