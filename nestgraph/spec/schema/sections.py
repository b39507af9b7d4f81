"""The ``train:`` and ``data:`` sections, the whole `Spec`, and helpers that read a level."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
)

from nestgraph.spec.schema.common import (
    BATCH_MAX,
    SEED_LIMIT,
    SEQ_LEN_MAX,
    STEPS_MAX,
    FiniteFloat,
    Identifier,
    Strict,
)
from nestgraph.spec.schema.levels import RULE_MODELS, Level
from nestgraph.spec.schema.modules import MODULE_MODELS, ModelSpec, ModuleSpec, module_union


def _check_loggers(names: list[str]) -> list[str]:
    if "jsonl" not in names:
        raise ValueError("train.loggers must include 'jsonl': resuming a run and `nestgraph "
                         "plot` read metrics.jsonl")
    if len(set(names)) != len(names):
        raise ValueError("train.loggers names a logger twice")
    return names


class TrainSpec(Strict):
    steps: int = Field(200, ge=0, le=STEPS_MAX)
    batch: int = Field(8, ge=1, le=BATCH_MAX)
    seq_len: int = Field(128, ge=2, le=SEQ_LEN_MAX)
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    precision: Literal["fp32", "bf16", "fp64"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    parallel: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="with several processes (torchrun, --nproc-per-node): 'ddp' "
        "replicates the weights and all-reduces gradients, 'fsdp' shards them per layer "
        "(FSDP2); 'auto' is ddp. train.batch is the global batch, split evenly across them")
    log_every: int = Field(10, ge=1, le=STEPS_MAX)
    eval_every: int = Field(50, ge=0, le=STEPS_MAX, description="0 evaluates only at the end")
    eval_batches: int = Field(8, ge=1, le=BATCH_MAX)
    checkpoint_every: int = Field(100, ge=0, le=STEPS_MAX,
                                  description="0 checkpoints only at the end")
    keep_checkpoints: int = Field(3, ge=1, le=BATCH_MAX)
    init: str | None = Field(
        None, description="a weights file (written by `nestgraph convert`) a new run starts "
        "from instead of the random initialisation; relative to the spec's folder")
    threads: Literal["auto"] | Annotated[int, Field(ge=1, le=4096, strict=True)] = Field(
        "auto", description="CPU threads for torch; 'auto' takes the cores not busy with "
        "other work (the core count minus the 1-minute load average, at least 1)")
    loggers: Annotated[list[Literal["jsonl", "csv", "tensorboard"]],
                       AfterValidator(_check_loggers)] = Field(
        ["jsonl", "csv"], description="where metrics go: metrics.jsonl (always needed: resuming "
        "and plot read it), metrics.csv, TensorBoard event files under tensorboard/")


class TrainedBpe(Strict):
    """``{bpe: N}``: a byte-level BPE of N tokens learned from the run's own training data."""

    bpe: int = Field(ge=257, le=1 << 20, strict=True,  # BPE_MIN, BPE_MAX
                     description="the vocabulary: the 256 bytes, then the learned merges")


BPE_MIN, BPE_MAX = 257, 1 << 20
_TOKENIZER_FORMS = "'bytes', a tokenizer.json path, or {bpe: N}"


def _read_tokenizer(value):
    """One message naming the form that was meant, rather than one per member of the union."""
    if isinstance(value, TrainedBpe):
        return value
    if isinstance(value, dict):
        n = value.get("bpe")
        if set(value) != {"bpe"} or isinstance(n, bool) or not isinstance(n, int) \
                or not BPE_MIN <= n <= BPE_MAX:
            raise ValueError(f"data.tokenizer {{bpe: N}} takes one key, bpe, a whole number from "
                             f"{BPE_MIN} to {BPE_MAX} (the 256 bytes and the merges)")
        return TrainedBpe(bpe=n)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"data.tokenizer is {_TOKENIZER_FORMS}")
    return value


class DataSpec(Strict):
    source: str = Field("stdlib", description="'stdlib' (the embedded corpus), a file or a folder")
    heldout: FiniteFloat = Field(0.05, gt=0, lt=1)
    max_bytes: int = Field(4_000_000, ge=1024, le=1 << 40)
    heldout_source: str | None = Field(
        None, description="a separate file or folder to evaluate on; none: the held-out part "
        "is the last `heldout` fraction of the training data")
    order: Literal["random", "stream"] = Field(
        "random", description="'random': independent random windows each step; 'stream': "
        "lane i of the batch reads its own contiguous part of the text, step after step, so "
        "stream-lifetime levels see a continuing context")
    tokenizer: Annotated[TrainedBpe | str, BeforeValidator(_read_tokenizer)] = Field(
        "bytes", description="what a token is: 'bytes' (vocabulary 256), a tokenizer.json of "
        "the tokenizers package (relative to the spec's folder), or {bpe: N}, a byte-level BPE "
        "of N tokens trained on the training part of the data; model.vocab must match, and the "
        "held-out loss stays in bits per byte")


class Spec(Strict):
    nestgraph: Literal[1] = Field(description="spec format version")
    name: Identifier
    about: str = ""
    model: ModelSpec
    modules: dict[Identifier, ModuleSpec] = Field(min_length=1)
    levels: list[Level] = Field(min_length=1)
    train: TrainSpec = TrainSpec()
    data: DataSpec = DataSpec()


def period_of(level: Level) -> tuple[int, str]:
    """``'16 tokens'`` -> ``(16, 'token')``."""
    count, unit = level.every.split()
    return int(count), unit.rstrip("s")


def context_source(level: Level) -> tuple[str, str]:
    """``'gradients of outer'`` -> ``('gradients', 'outer')``; ``'tokens'`` -> ``('tokens', '')``."""
    words = level.context.split()
    return (words[0], words[2]) if len(words) == 3 else (words[0], "")



# ------------------------------------------------------------------ kinds from outside


def tag_of(model: type[Strict]) -> str:
    """The ``type`` tag of a module or rule model: its ``type: Literal["tag"]`` field."""
    field = model.model_fields.get("type")
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{model.__name__} needs a field type: Literal['tag']")
    return args[0]


def register_model(section: str, model: type[Strict]) -> None:
    """Add a module type (`section` "module") or a rule ("rule") to the schema."""
    models = MODULE_MODELS if section == "module" else RULE_MODELS
    tag = tag_of(model)
    if any(tag_of(m) == tag for m in models):
        raise ValueError(f"a {section} type {tag!r} is already in the schema")
    models.append(model)
    _rebuild()


def unregister_model(section: str, tag: str) -> None:
    models = MODULE_MODELS if section == "module" else RULE_MODELS
    models[:] = [m for m in models if tag_of(m) != tag]
    _rebuild()


def _rebuild() -> None:
    """Rebuild the models whose fields hold the unions, so validation sees the new members."""
    # pydantic keeps a field's discriminator on the field, and the bare union as its annotation
    Level.model_fields["rule"].annotation = Union[tuple(RULE_MODELS)]  # noqa: UP007
    Level.model_rebuild(force=True)
    Spec.model_fields["modules"].annotation = dict[Identifier, module_union()]
    Spec.model_rebuild(force=True)
