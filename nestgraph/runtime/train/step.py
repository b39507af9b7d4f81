"""One training step and what it needs: the trainer's state (model, optimizers, stream), the
device, the step itself (every step level fires at its period), the held-out evaluation and
the finiteness check. `loop.py` runs these in order."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from nestgraph.errors import (
    EnvironmentProblem,
    TrainingError,
)
from nestgraph.runtime.engine import init_stream, stream_weight_names
from nestgraph.runtime.levels import (
    AdamWRule,
    LevelDef,
    MemoriesRule,
    fires,
    in_context_levels,
    make_optimizer,
    needs_double_backward,
    owned_parameters,
    schedule_factor,
)
from nestgraph.runtime.program import Program
from nestgraph.runtime.stream import StreamState
from nestgraph.runtime.train.data import (
    Corpus,
    heldout_batches,
    sample_batch,
)
from nestgraph.runtime.train.distributed import mean_over_ranks, sum_over_ranks
from nestgraph.runtime.train.parallel import Parallel, wrap


@dataclass
class TrainState:
    """Everything a checkpoint must hold to continue bitwise."""

    model: torch.nn.Module
    stream: StreamState
    optimizers: dict[str, torch.optim.Optimizer]
    step: int = 0
    # How this process takes part in a data-parallel job (not saved: rebuilt by build_state).
    parallel: Parallel | None = None


COMPILE_CONFLICT = ("train.compile=on, but torch.compile has no double backward, which the "
                    "second-order and truncated in-context levels need")


COMPILE_CONFLICT_HINT = "set meta: first_order on those levels, or train.compile=auto"


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("device 'cuda' was asked for but no GPU is available",
                            "use train.device=auto or train.device=cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def build_state(program: Program, cfg: dict, device: torch.device,
                init: str | None = None) -> TrainState:
    """Model, stream state and one optimizer per step level, from the seed alone (and, with
    `init`, the weights of that file: a converted model, see `convert.py`)."""
    torch.manual_seed(cfg["seed"])
    model = program.build_model()
    if init is not None:
        load_initial_weights(model, init)
    model = model.to(device)
    if cfg["precision"] == "fp64":
        model = model.double()
    stream = init_stream(model, program.schedule)
    mark_trained(model, program.schedule)
    if _wants_compile(cfg["compile"], device, program.schedule):
        if in_context_levels(program.schedule):
            # The inner gradients keep the graph for the outer backward (retain_graph), which a
            # compiled backward that reuses ("donates") its saved buffers refuses at its first
            # call. The setting is torch's, process-wide; it only costs memory.
            torch._functorch.config.donated_buffer = False
        for layer in model.layers:
            layer.compile()
    # Wrapped before the optimizers are built: FSDP2 replaces the parameters by sharded ones.
    parallel = wrap(model, program.schedule, cfg.get("parallel", "auto"), device)
    optimizers = {lv.name: make_optimizer(lv, owned_parameters(model, lv), program.schedule)
                  for lv in program.schedule if lv.kind == "step"}
    return TrainState(model, stream, optimizers, parallel=parallel)


def load_initial_weights(model: torch.nn.Module, path: str) -> None:
    """The weights of ``train.init`` (every weight of the model, names and shapes equal)."""
    import safetensors.torch

    try:
        weights = safetensors.torch.load_file(path)
    except (OSError, ValueError, RuntimeError) as err:
        raise TrainingError(f"cannot read train.init '{path}': {err}",
                            "write it with nestgraph convert RUN BUILD -o FILE") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise TrainingError(f"train.init '{path}' does not fit this model: {first}",
                            "convert for this build: nestgraph convert RUN BUILD") from None


def mark_trained(model: torch.nn.Module, schedule) -> None:
    """Mark which weights a backward trains."""
    stream_owned = set(stream_weight_names(model, schedule))
    stepped = {n for lv in schedule if lv.kind == "step" for n in owned_parameters(model, lv)}
    for name, p in model.named_parameters():
        # A stream weight is W0 + Δ: the step level that owns W0 trains it like any other
        # parameter; without such an owner W0 stays at its initial value.
        p.requires_grad_(name not in stream_owned or name in stepped)


def step_optimizers(model: torch.nn.Module, schedule) -> dict[str, torch.optim.Optimizer]:
    """One fresh optimizer per step level, after marking which weights a backward trains."""
    mark_trained(model, schedule)
    return {lv.name: make_optimizer(lv, owned_parameters(model, lv), schedule)
            for lv in schedule if lv.kind == "step"}


def _wants_compile(choice: str, device: torch.device, schedule) -> bool:
    # torch.compile pays off on a GPU; on a CPU the compile time outweighs a short run. The
    # CLI refuses compile=on with second-order levels before a run starts; this is the guard
    # for a program trained from Python.
    second = needs_double_backward(schedule)
    if choice == "on" and second:
        raise TrainingError(COMPILE_CONFLICT, hint=COMPILE_CONFLICT_HINT)
    return choice == "on" or (choice == "auto" and device.type == "cuda" and not second)


def _autocast(cfg: dict, device: torch.device):
    if cfg["precision"] == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_step(state: TrainState, program: Program, cfg: dict, corpus: Corpus,
               device: torch.device) -> dict:
    """One step: forward with in-context learning, one backward, the step levels that fire.

    Under data parallelism this rank reads its rows of the global batch; the gradients are
    all-reduced in the backward of every step after which a step level fires or a checkpoint
    is written (and accumulate locally in between), and the loss recorded is the ranks' mean.
    """
    par = _parallel(state, program, device)
    x, y = sample_batch(corpus.train, step=state.step, batch=cfg["batch"],
                        seq_len=cfg["seq_len"], seed=cfg["seed"], order=corpus.order)
    timeline: list = []
    with par.sync(gradients_synchronised(program, cfg, state.step + 1)):
        with _autocast(cfg, device):
            result = par.reader(par.rows(x).to(device), par.rows(y).to(device), state.stream,
                                timeline=timeline, reduce_stream=par.reduce_stream)
        loss = mean_over_ranks(result.loss.detach())  # every rank sees the same number
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} at step {state.step + 1}",
                                non_finite_hint(cfg))
        result.loss.backward()
    state.step += 1
    record = {"step": state.step, "loss": loss.item()}
    for lv in program.schedule:
        if lv.kind == "step" and fires(lv, state.step):
            record[f"lr/{lv.name}"] = _apply_step_level(state, lv, cfg["steps"])
    record.update(_update_counts(program.schedule, timeline, state.step, cfg["seq_len"]))
    return record


def _parallel(state: TrainState, program: Program, device: torch.device) -> Parallel:
    """The state's place in the job; a state built by hand (fine-tuning, benchmarks) is a
    single process, wrapped once and kept."""
    if state.parallel is None:
        state.parallel = wrap(state.model, program.schedule, "none", device)
    return state.parallel


def gradients_synchronised(program: Program, cfg: dict, step: int) -> bool:
    """Whether step `step`'s gradients must be reduced across ranks in its backward: a step
    level applies them, or a checkpoint (which holds the pending ones) follows."""
    saved = step == cfg["steps"] or (cfg["checkpoint_every"]
                                     and step % cfg["checkpoint_every"] == 0)
    return bool(saved) or any(lv.kind == "step" and fires(lv, step) for lv in program.schedule)


def _update_counts(schedule, timeline: list, step: int, seq_len: int) -> dict[str, int]:
    """How many times each level updated during this step (per sequence), as it happened.

    In-context levels are counted from the engine's timeline of their updates; step and
    optimizer levels fire when their period divides the step; the levels that update inside
    a layer (memories, attention's cache) every `period` tokens of each sequence.
    """
    fired: dict[str, int] = {}
    for name, _ in timeline:
        fired[name] = fired.get(name, 0) + 1
    counts = {}
    for lv in schedule:
        if lv.kind == "in_context":
            count = fired.get(lv.name, 0)
        elif lv.unit == "step":
            count = int(fires(lv, step))
        else:
            count = seq_len // lv.period
        counts[f"updates/{lv.name}"] = count
    return counts


def non_finite_hint(cfg: dict) -> str:
    """What to try when numbers overflow, for this run's precision."""
    if cfg.get("precision") == "bf16":
        return "bf16 keeps few digits: set train.precision=fp32 (lower learning rates may help too)"
    return ("lower the learning rates (levels.NAME.rule.lr), or clip the gradients "
            "(levels.NAME.rule.clip)")


def _apply_step_level(state: TrainState, lv: LevelDef, total_steps: int) -> float:
    params = list(owned_parameters(state.model, lv).values())
    if lv.period > 1:  # gradients summed over `period` steps: use their mean
        for p in params:
            if p.grad is not None:
                p.grad.div_(lv.period)
    if lv.rule.clip:
        torch.nn.utils.clip_grad_norm_(params, lv.rule.clip)
    opt = state.optimizers[lv.name]
    updates = state.step // lv.period - 1
    factor = schedule_factor(lv.rule, updates, total_steps // lv.period) \
        if isinstance(lv.rule, (AdamWRule, MemoriesRule)) else 1.0
    for group in opt.param_groups:
        group["lr"] = lv.rule.lr * factor
    opt.step()
    opt.zero_grad(set_to_none=True)
    return lv.rule.lr * factor


def evaluate(state: TrainState, program: Program, cfg: dict, corpus: Corpus,
             device: torch.device) -> float:
    """Held-out bits per byte, with in-context levels learning exactly as in training.

    The summed next-token loss (nats) over ln 2 and over the bytes its targets stand for: with
    bytes as tokens, the mean loss in bits; with a tokenizer, each target counts the bytes of
    its token (`Corpus.token_bytes`), so runs with different tokenizers stay comparable.
    Under data parallelism each rank scores its rows of every held-out batch and the sums are
    added across ranks: the same figure as one process scoring the whole batch.
    """
    par = _parallel(state, program, device)
    batches = heldout_batches(corpus.heldout, batch=cfg["batch"], seq_len=cfg["seq_len"],
                              max_batches=cfg["eval_batches"])
    learning = bool(in_context_levels(program.schedule))
    total, count = 0.0, 0
    for x, y in batches:
        grad_mode = torch.enable_grad() if learning else torch.no_grad()
        with grad_mode, _autocast(cfg, device), par.sync(False):
            result = par.reader(par.rows(x).to(device), par.rows(y).to(device), state.stream,
                                learn_stream=False, differentiable=False,
                                reduce_stream=par.reduce_stream)
        total += result.loss.item() * result.tokens
        count += result.tokens if corpus.token_bytes is None \
            else int(corpus.token_bytes[par.rows(y).long()].sum())
    total, count = sum_over_ranks([total, float(count)], device)
    return total / max(count, 1) / math.log(2)


def check_finite(state: TrainState, cfg: dict) -> None:
    """Refuse to checkpoint weights that are no longer numbers: the good checkpoints stay.

    Under FSDP2 each rank checks its shard and the ranks agree, so all of them refuse alike.
    """
    tensors = {**state.model.state_dict(), **{f"stream {n}": t
                                               for n, t in state.stream.weights.items()}}
    bad = next((name for name, tensor in tensors.items() if tensor.is_floating_point()
                and not bool(torch.isfinite(_local(tensor)).all())), None)
    device = next(iter(state.model.parameters())).device
    if sum_over_ranks([float(bad is not None)], device)[0]:
        raise TrainingError(f"the weights became non-finite at step {state.step} "
                            f"({bad or 'in another rank’s shard'}); the last checkpoint "
                            "written is kept", non_finite_hint(cfg))


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a sharded (DTensor) weight; any other tensor as it is."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor
