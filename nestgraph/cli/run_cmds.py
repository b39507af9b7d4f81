"""Commands that run builds and runs: train, generate, eval, plot."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from nestgraph.cli.common import (
    DebugOpt,
    TrustOpt,
    _split_args,
    app,
    handled,
)
from nestgraph.cli.help import Command
from nestgraph.cli.spec_cmds import _compile_into, _looks_like_spec
from nestgraph.console import status as _status  # one stream for log lines: stderr
from nestgraph.errors import UsageProblem
from nestgraph.escape import printable


@app.command(cls=Command, short_help="Train a build (or a spec, compiled on the way); runs go to runs/.")
@handled
def train(
    ctx: typer.Context,
    args: Annotated[list[str] | None, typer.Argument(
        metavar="[BUILD|SPEC] [PATH=VALUE|~PATH]...",
        help="a build folder (default: the most recent build) then train.*/data.* overrides; "
             "or a spec (path or shipped name), compiled into build/NAME first, then "
             "overrides of any section", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", metavar="PATH",
        help="a text file or folder [default: the Python standard library sources]")] = None,
    steps: Annotated[int | None, typer.Option("--steps", metavar="N",
                                              help="training steps")] = None,
    out: Annotated[Path, typer.Option("--out", metavar="DIR",
                                      help="where run folders go")] = Path("runs"),
    resume: Annotated[str, typer.Option(
        "--resume", metavar="auto|never|PATH",
        help="auto (continue an unfinished run), never, or a run/checkpoint folder")]
    = "auto",
    nproc_per_node: Annotated[int | None, typer.Option(
        "--nproc-per-node", metavar="N", help="train data-parallel on N processes of this "
        "machine (as torchrun does; gloo on CPU, nccl on GPUs)", rich_help_panel="Parallel")]
    = None,
    nnodes: Annotated[str, typer.Option(
        "--nnodes", metavar="N", help="nodes of the job (with --rdzv-endpoint)",
        rich_help_panel="Parallel")] = "1",
    node_rank: Annotated[int, typer.Option(
        "--node-rank", metavar="K", help="this node's place in the job",
        rich_help_panel="Parallel")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option(
        "--rdzv-endpoint", metavar="HOST:PORT", help="where the nodes meet",
        rich_help_panel="Parallel")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print what each process would do (rows, levels, what is averaged "
        "when), then stop")] = False,
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a compiled program; runs go to runs/NAME/TIMESTAMP/.

    With --nproc-per-node N the build is trained on N processes (data-parallel, train.parallel:
    ddp or fsdp; train.batch is the global batch); `torchrun --nproc-per-node N -m nestgraph
    train BUILD` does the same.

    The build's program.py is compiled again from its spec.resolved.yaml and must match byte
    for byte (exit 5 otherwise; --trust-program skips the check). Examples:
    nestgraph train build/cms --steps 50 train.batch=4;
    nestgraph train specs/cms.yaml model.dim=32 --steps 20
    """
    from nestgraph import api
    from nestgraph.compiler.buildfolder import check_program, find_build

    words, overrides = _split_args(args)
    if len(words) > 1:
        raise UsageProblem(f"expected at most one build folder or spec, got "
                           f"{printable(' '.join(words))}")
    if words and _looks_like_spec(words[0]):
        _status(f"compiling {printable(words[0])} first")
        folder = _compile_into(words[0], overrides, None)
        overrides = []  # applied by the compiler, to any section
    else:
        folder = find_build(words)
        check_program(folder, trust=trust_program)
    world = (nproc_per_node or 1) * _nodes(nnodes)
    if dry_run:
        typer.echo("\n".join(_plan(folder, overrides, steps, data, world)))
        return
    if nproc_per_node is not None and not _under_launcher():
        from nestgraph.cli.launch import child_command, launch, launcher_args

        _plan(folder, overrides, steps, data, world)  # bad settings stop here, not N times
        launch(launcher_args(nproc_per_node, nnodes, node_rank, rdzv_endpoint, child_command(
            folder, overrides, data=data, steps=steps, out=out, resume=resume)))
        return
    run_dir = api.train(folder, overrides, steps=steps, data=data, out=out, resume=resume,
                        trust=True, command=sys.argv)  # checked above, or just compiled
    if os.environ.get("RANK", "0") == "0":  # one figure per job, by rank 0
        _plot_after_training(run_dir)


def _under_launcher() -> bool:
    """Whether torchrun (or `--nproc-per-node`) started this process."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _nodes(nnodes: str) -> int:
    try:
        return int(nnodes.split(":")[-1])
    except ValueError:
        raise UsageProblem(f"--nnodes expects N or MIN:MAX, got {printable(nnodes)}") from None


def _plan(folder: Path, overrides: list[str], steps, data, world: int) -> list[str]:
    """The settings checked and the job described (`nestgraph.cli.dry_run`)."""
    from nestgraph.api import load_program
    from nestgraph.cli.dry_run import describe
    from nestgraph.compiler.buildfolder import RESOLVED
    from nestgraph.compiler.train_config import train_config

    world = int(os.environ.get("WORLD_SIZE", world))
    cfg, _ = train_config(load_program(folder, trust=True), list(overrides), steps=steps,
                          data=data, resolved=folder / RESOLVED)
    lines = describe(folder, cfg, world)
    if cfg["batch"] % world:
        raise UsageProblem(f"train.batch={cfg['batch']} does not split evenly over {world} "
                           "processes (it is the global batch)",
                           f"set train.batch to a multiple of {world}")
    return lines


def _plot_after_training(run_dir: Path) -> None:
    """Draw the run's curves into its folder when matplotlib is there; say so when it is not."""
    from nestgraph.viz.plot import plot_run

    _draw_if_possible("curves", lambda: plot_run(run_dir))


def _draw_if_possible(what: str, draw) -> None:
    """Draw a figure and name its file, or say why none was drawn (matplotlib is optional)."""
    from nestgraph.errors import EnvironmentProblem

    try:
        _status(f"{what}: {printable(str(draw()))}")
    except EnvironmentProblem as err:
        _status(f"no {what} drawn: {printable(err.message)} ({printable(err.hint)})")


@app.command(cls=Command, short_help="Start a build from a trained run's weights (NL §7.3).")
@handled
def convert(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(
        metavar="RUN", help="a run folder or checkpoint, or a Llama-style Hugging Face "
        "checkpoint folder (config.json and model.safetensors; pip install 'nestgraph[hf]')")],
    build: Annotated[Path, typer.Argument(metavar="BUILD", help="the build to start")],
    maps: Annotated[list[str] | None, typer.Option(
        "--map", metavar="SRC=DST", help="read the target's weights named …DST… from the "
        "source's …SRC… (repeatable; the longest DST wins)")] = None,
    zero: Annotated[list[str] | None, typer.Option(
        "--zero", metavar="GLOB", help="target weights that start at zero (repeatable), e.g. "
        "'*.blocks.mid.w2' so an MLP-chain block adds nothing yet")] = None,
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", metavar="FILE", help="[default: BUILD/init.safetensors]")] = None,
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fill BUILD's weights from RUN's latest checkpoint, write them as a weights file, and
    print what was copied, zeroed and left fresh. Train from it with train.init=FILE.
    A Hugging Face checkpoint's weights take a nestgraph Transformer's names (modules attn
    and mlp); a build that would not compute what it computes (widths, heads, RoPE base,
    a gated silu MLP, RMSNorms) is refused with the overrides to compile it with.
    Example: nestgraph convert runs/transformer/RUN build/hope-attention
    --map blocks.mlp.body.=blocks.cms.body.blocks.fast. --map blocks.mlp.=blocks.cms.
    --zero '*.blocks.mid.w2' --zero '*.blocks.slow.w2'
    """
    from nestgraph import api

    path, done = api.convert(run, build, maps=list(maps or []), zero=list(zero or []), out=out,
                             trust=trust_program)
    _status(f"copied {len(done.copied)} weights, zeroed {len(done.zeroed)}, "
            f"left {len(done.fresh)} at their initial values")
    for name in done.fresh:
        _status(f"  fresh: {printable(name)}")
    for name in done.unused:
        _status(f"  not used from the source: {printable(name)}")
    _status(f"wrote {printable(str(path))}; train it: nestgraph train {printable(str(build))} "
            f"train.init={printable(str(path))}")


@app.command(cls=Command, short_help="Sample from a trained run; in-context levels keep learning.")
@handled
def generate(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(metavar="RUN",
                                        help="a run folder (runs/NAME/TIMESTAMP)")],
    prompt: Annotated[str, typer.Option("--prompt", metavar="TEXT",
                                        help="text to continue")] = "",
    tokens: Annotated[int, typer.Option("--tokens", metavar="N",
                                        help="tokens to generate (bytes, unless the run "
                                             "trained with data.tokenizer)")]
    = 200,
    temperature: Annotated[float, typer.Option("--temperature", metavar="T",
                                               help="sampling temperature")] = 0.8,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="random seed")] = 0,
    learn: Annotated[bool, typer.Option(
        "--learn", help="let stream-lifetime levels keep learning while the context is read "
        "(test-time learning)")] = False,
    state: Annotated[Path | None, typer.Option(
        "--state", metavar="FILE", help="start from the stream state saved in FILE "
        "[default: the run's checkpoint]")] = None,
    save_state: Annotated[Path | None, typer.Option(
        "--save-state", metavar="FILE", help="write the stream state to FILE afterwards")]
    = None,
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Sample from a trained run; in-context levels keep learning as they read.

    The context is read in windows of train.seq_len with the state carried. The run's
    program.py must be what its spec.resolved.yaml compiles to (exit 5 otherwise;
    --trust-program skips the check). A missing --state file exits 2, an unreadable or
    mismatched one 5.
    Example: nestgraph generate runs/cms/20261122-101500 --prompt "def " --tokens 100
    """
    from nestgraph import api

    if save_state is not None and not save_state.parent.is_dir():
        raise UsageProblem(f"cannot write '{printable(str(save_state))}': its folder does not "
                           "exist", "create the folder first, or pick another path")
    text = api.sample(run, prompt, tokens=tokens, temperature=temperature, seed=seed,
                      learn=learn, trust=trust_program, state=state, save_state=save_state)
    typer.echo(prompt + text)
    if save_state is not None:
        _status(f"wrote the stream state to {printable(str(save_state))}")


@app.command("eval", cls=Command, short_help="Evaluate a run: continual, recall, copy, levels.")
@handled
def eval_cmd(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(metavar="RUN",
                                        help="a run folder (runs/NAME/TIMESTAMP)")],
    task: Annotated[str, typer.Option(
        "--task", metavar="TASK", help="continual, recall, copy, levels, or all")] = "all",
    steps: Annotated[int, typer.Option(
        "--steps", metavar="N", help="continual: training steps per domain")] = 20,
    stdlib_domains: Annotated[int, typer.Option(
        "--stdlib-domains", metavar="N",
        help="continual: the N largest standard-library packages as domains")] = 3,
    domain: Annotated[list[Path] | None, typer.Option(
        "--domain", metavar="FILE", help="continual: a text file as one more domain "
                                         "(repeatable)")] = None,
    domain_bytes: Annotated[int, typer.Option(
        "--domain-bytes", metavar="N", help="continual: bytes read of each domain")] = 200_000,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="continual: start from the run's initial weights, not its trained "
                        "ones")] = False,
    batches: Annotated[int, typer.Option(
        "--batches", metavar="N", help="continual, levels: held-out batches per score")] = 2,
    lengths: Annotated[str, typer.Option(
        "--lengths", metavar="LIST",
        help="recall: context lengths in multiples of train.seq_len")] = "1,2,4",
    sizes: Annotated[str, typer.Option(
        "--sizes", metavar="LIST", help="copy: the strings' n")] = "4,8,16,32",
    samples: Annotated[int, typer.Option(
        "--samples", metavar="N", help="recall, copy: examples per length")] = 8,
    finetune: Annotated[int, typer.Option(
        "--finetune", metavar="N",
        help="recall, copy: first train a copy N steps on the task's format")] = 0,
    threshold: Annotated[float, typer.Option(
        "--threshold", metavar="BPB",
        help="levels: flag an ablation that changes held-out bpb by less")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed", metavar="N",
                                      help="recall, copy: seed of the examples")] = 0,
    trust_program: TrustOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Evaluate a run's latest checkpoint; writes RUN/eval/TASK.json and RUN/eval/TASK.png.

    The table goes to standard output; the figure needs matplotlib (without it the JSON is
    still written). Example: nestgraph eval runs/hope/20261202-101500 --task levels
    """
    from nestgraph.evaluation.tasks import Options, check, evaluate, tasks_named

    names = tasks_named(task)
    options = Options(steps=steps, stdlib_domains=stdlib_domains, domains=list(domain or []),
                      domain_bytes=domain_bytes, fresh=fresh, batches=batches, lengths=lengths,
                      sizes=sizes,
                      samples=samples, finetune=finetune, threshold=threshold, seed=seed)
    check(options)
    from nestgraph.evaluation.loaded import load
    from nestgraph.evaluation.report import show
    from nestgraph.runtime.train.threads import apply_threads

    loaded = load(run, trust=trust_program)
    apply_threads(loaded.cfg.get("threads", "auto"))
    if task == "all" and not loaded.bytes_tokens:
        from nestgraph.evaluation.tasks import BYTE_TASKS

        names = [n for n in names if n not in BYTE_TASKS]
        _status(f"eval: skipping {', '.join(BYTE_TASKS)} (they read bytes; this run uses a "
                "tokenizer)")
    for name in names:
        _status(f"eval {name}: {printable(str(run))} at step {loaded.step}")
        path, doc = evaluate(run, name, loaded, options)
        show(name, doc["results"])
        _status(f"wrote {printable(str(path))}")
        _plot_eval(run, name, doc)


def _plot_eval(run: Path, task: str, doc: dict) -> None:
    from nestgraph.viz.eval_plot import plot_eval

    _draw_if_possible("figure", lambda: plot_eval(run, task, doc))


@app.command(cls=Command, short_help="Draw a run's training curves (needs matplotlib).")
@handled
def plot(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(metavar="RUN",
                                        help="a run folder (runs/NAME/TIMESTAMP)")],
    out: Annotated[Path | None, typer.Option(
        "-o", "--out", metavar="FILE", help="PNG or SVG file [default: RUN/curves.png]")] = None,
    debug: DebugOpt = False,
) -> None:
    """Draw a run's training curves: loss, held-out bits per byte, speed, level updates.

    Results of `nestgraph eval` found in RUN/eval/ are drawn too, as RUN/eval/TASK.png.

    Needs matplotlib (pip install 'nestgraph[plot]').
    Example: nestgraph plot runs/hope/20261202-101500
    """
    from nestgraph.viz.eval_plot import plot_evals
    from nestgraph.viz.plot import plot_run

    _status(f"wrote {printable(str(plot_run(run, out)))}")
    for path in plot_evals(run):
        _status(f"wrote {printable(str(path))}")
