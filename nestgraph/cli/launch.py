"""`nestgraph train --nproc-per-node N`: the same job `torchrun` would start, through PyTorch's
own launcher (``torch.distributed.run``), and a clear message when one of its processes dies."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from nestgraph.errors import EXIT_INTERRUPTED, NestgraphError, TrainingError, UsageProblem


class JobInterrupted(NestgraphError):
    """The launcher was interrupted: exit 130, as one process interrupted exits."""

    exit_code = EXIT_INTERRUPTED


def child_command(build: Path, overrides: list[str], *, data: str | None, steps: int | None,
                  out: Path, resume: str) -> list[str]:
    """What every process runs: `nestgraph train` on the already compiled build."""
    argv = ["train", str(build), *overrides, "--out", str(out), "--resume", resume,
            "--trust-program"]  # checked (or compiled) once, by the launching process
    if data is not None:
        argv += ["--data", data]
    if steps is not None:
        argv += ["--steps", str(steps)]
    return argv


def launcher_args(nproc: int, nnodes: str, node_rank: int, rdzv_endpoint: str | None,
                  child: list[str]) -> list[str]:
    """torchrun's own arguments for this job (one node: standalone, a free local port)."""
    if nproc < 1:
        raise UsageProblem(f"--nproc-per-node must be at least 1, got {nproc}")
    argv = ["--nproc-per-node", str(nproc), "--nnodes", nnodes, "--max-restarts", "0"]
    if rdzv_endpoint:
        argv += ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint,
                 "--node-rank", str(node_rank)]
    elif nnodes not in ("1", "1:1"):
        raise UsageProblem(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (a node every "
                           "other node can reach)", "for one machine, leave --nnodes out")
    else:
        argv += ["--standalone"]
    return [*argv, "-m", "nestgraph", *child]


def launch(argv: list[str]) -> None:
    """Run the job and wait for it; a process that fails stops all of them."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun warns, then sets this to 1; train.threads decides (auto: the cores per process).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        run(get_args_parser().parse_args(argv))
    except SignalException as err:  # Ctrl-C (or a kill) reached the launcher too
        raise JobInterrupted(f"interrupted by {signal.Signals(err.sigval).name}; the processes "
                             "finished their step and wrote the checkpoint (above) unless "
                             "they were killed", "run the same command again: --resume auto "
                             "(the default) continues from the last checkpoint") from None
    except ChildFailedError as err:
        raise TrainingError(f"the job stopped: {_failures(err)}; the other processes were "
                            "stopped with it, and every checkpoint already written is intact",
                            "run the same command again: --resume auto (the default) "
                            "continues from the last checkpoint") from None


def _failures(err) -> str:
    """'rank 1 (pid N) was killed by SIGKILL': the process that failed first."""
    if not err.failures:
        return "a process failed"
    rank, failure = err.get_first_failure()
    code = failure.exitcode
    if code is not None and code < 0:
        try:
            return f"rank {rank} (pid {failure.pid}) was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"rank {rank} (pid {failure.pid}) was killed by signal {-code}"
    return f"rank {rank} (pid {failure.pid}) exited with code {code}"
