"""A trained run as a model of lm-evaluation-harness (``lm-eval``, the optional extra).

``python -m nestgraph.evaluation.lm_eval_adapter --model nestgraph --model_args run=RUN
--tasks TASK`` is ``lm_eval`` with the ``nestgraph`` model registered (lm-eval finds no models
outside its own package, so something must import this module first); in Python,
`register()` does the same before ``lm_eval.simple_evaluate(model="nestgraph", ...)``.

The model is byte-level: every byte of the UTF-8 text is a token (the vocabulary is 256), and
there is no BOS token: an empty context is a newline, as ``nestgraph generate`` starts an empty
prompt. Everything is scored with `nestgraph.runtime.reader.read_long`; `Scorer` holds the
scoring and needs no lm-eval, the `LM` subclass only translates lm-eval's requests.

This module imports without lm-eval installed (the wheel's modules are all importable);
lm-eval is imported by `register` alone, which says how to install it when it is missing.
"""

from __future__ import annotations

import copy
import functools
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from nestgraph.errors import EnvironmentProblem, NestgraphError, UsageProblem
from nestgraph.escape import printable

INSTALL_HINT = "install the extra: pip install 'nestgraph[lm-eval]'"
NEWLINE = 10  # the context of an empty context (there is no BOS byte)
PAD = 0  # right padding of a batch: every position it fills comes after the lane's last byte
DEFAULT_BATCH = 16

log = logging.getLogger(__name__)


class Scorer:
    """A run's latest checkpoint, scoring byte strings with `read_long`.

    ``carry=True``: a context longer than ``seq_len`` is read once, in windows of ``seq_len``,
    with every level's state carried from window to window. ``carry=False``: the model sees
    at most the last ``seq_len`` bytes before each prediction, as in training (left truncation,
    the usual baseline for a model of fixed context). ``learn_stream=True`` lets stream levels
    learn while a request is read; every request starts from the run's stream all the same, so
    no score depends on the order or the company of the requests.
    """

    def __init__(self, run: Path, *, carry: bool = True, learn_stream: bool = False,
                 batch_size: int = DEFAULT_BATCH, device: str | None = None,
                 trust: bool = False) -> None:
        from nestgraph.compiler.buildfolder import load_run
        from nestgraph.runtime.levels import in_context_levels
        from nestgraph.runtime.train.threads import apply_threads

        model, program, stream, cfg = load_run(Path(run), trust=trust)
        _refuse_tokenizer(Path(run), program)
        self.device = torch.device(device or "cpu")
        model.eval().to(self.device)
        stream.to(self.device)
        self.model, self.schedule, self.stream = model, program.schedule, stream
        self.seq_len = int(cfg["seq_len"])
        self.bf16 = cfg["precision"] == "bf16"
        self.carry, self.learn_stream = carry, learn_stream
        # A stream level's state is one for all lanes of a batch, and its step is their mean
        # gradient: lanes read together would change each other's scores. Read one at a time.
        shared = any(lv.lifetime == "stream" for lv in in_context_levels(self.schedule))
        self.batch_size = 1 if shared else max(1, int(batch_size))
        apply_threads(cfg.get("threads", "auto"))

    # ------------------------------------------------------------------ reading

    def read(self, rows: list[list[int]]):
        """`read_long` over right-padded rows (each at least 2 bytes): (losses, predictions)."""
        from nestgraph.runtime.reader import read_long

        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        # A learning stream changes in place: each read starts from the checkpoint's.
        stream = copy.deepcopy(self.stream) if self.learn_stream else self.stream
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16)
        with bf16 if self.bf16 else nullcontext():
            out = read_long(self.model, self.schedule, tokens.to(self.device),
                            seq_len=self.seq_len, stream=stream, carry=self.carry,
                            learn_stream=self.learn_stream)
        return out.losses.cpu(), out.predictions.cpu()

    def _batches(self, rows: list[list[int]]):
        """(indices, rows) batches, longest rows first, so that padding stays small."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            yield chosen, [rows[i] for i in chosen]

    # ------------------------------------------------------------------ requests

    def pair_row(self, context: bytes, continuation: bytes) -> tuple[list[int], int]:
        """The bytes to read for one (context, continuation) pair, and where the continuation
        starts in them."""
        row = list(context or bytes([NEWLINE])) + list(continuation)
        if not self.carry:
            # The last seq_len predictions' context; never cut into the continuation.
            row = row[-max(self.seq_len + 1, len(continuation) + 1):]
        return row, len(row) - len(continuation)

    def loglikelihood(self, pairs: list[tuple[bytes, bytes]]) -> list[tuple[float, bool]]:
        """For each pair: the log-probability (nats) of the continuation after the context,
        and whether greedy decoding would produce it byte for byte."""
        results: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        todo = [i for i, (_, cont) in enumerate(pairs) if cont]
        built = [self.pair_row(*pairs[i]) for i in todo]
        for chosen, rows in self._batches([row for row, _ in built]):
            losses, predictions = self.read(rows)
            for lane, k in enumerate(chosen):
                row, start = built[k]
                # Position t predicts byte t + 1: the continuation's bytes start..end-1 are
                # predicted at positions start-1..end-2.
                span = slice(start - 1, len(row) - 1)
                greedy = predictions[lane, span].tolist() == row[start:]
                results[todo[k]] = (-float(losses[lane, span].double().sum()), greedy)
        return results

    def rolling_pairs(self, text: bytes) -> list[tuple[bytes, bytes]]:
        """The pairs whose continuations cover `text` once, each byte predicted once.

        With carry the text is read once from a newline. Without, it is cut in pieces of
        seq_len bytes, each read after the bytes before it (all the context a window has room
        for), as lm-eval cuts a document for a model of fixed context.
        """
        if self.carry:
            return [(b"", text)]
        full = bytes([NEWLINE]) + text
        return [(full[:j + 1], text[j:j + self.seq_len])
                for j in range(0, len(text), self.seq_len)]

    def loglikelihood_rolling(self, texts: list[bytes]) -> list[float]:
        """The log-probability (nats) of each whole text."""
        pieces = [self.rolling_pairs(t) for t in texts]
        scores = iter(self.loglikelihood([p for ps in pieces for p in ps]))
        return [sum(next(scores)[0] for _ in ps) for ps in pieces]

    def generate(self, contexts: list[bytes], until: list[list[bytes]],
                 max_bytes: int) -> list[bytes]:
        """Greedy continuations of each context, cut before the first stop string.

        Every new byte reads its lane's whole context again (the reader keeps no state between
        calls), which costs a read per byte: fine for the short answers of lm-eval's tasks.
        """
        done = [b""] * len(contexts)
        contexts = [c or bytes([NEWLINE]) for c in contexts]
        for chosen, _ in self._batches([list(c) for c in contexts] if max_bytes > 0 else []):
            lanes = {k: bytearray() for k in chosen}
            while lanes:
                keys = list(lanes)
                rows = [self._context_row(contexts[k] + lanes[k]) for k in keys]
                # A byte after the context makes its last position a prediction of the next.
                _, predictions = self.read([row + [PAD] for row in rows])
                for lane, k in enumerate(keys):
                    lanes[k].append(int(predictions[lane, len(rows[lane]) - 1]))
                    stopped = _cut(bytes(lanes[k]), until[k])
                    if stopped is not None or len(lanes[k]) >= max_bytes:
                        done[k] = bytes(lanes[k]) if stopped is None else stopped
                        del lanes[k]
        return done

    def _context_row(self, context: bytes) -> list[int]:
        return list(context) if self.carry else list(context[-self.seq_len:])


def _refuse_tokenizer(run: Path, program) -> None:
    """Requests are scored byte by byte: a run whose tokens come from a tokenizer cannot be."""
    from nestgraph.runtime.train import checkpoint as ckpt
    from nestgraph.runtime.train.tokenizer import BYTES

    found = ckpt.latest_checkpoint(run)
    data = ckpt.read_meta(found).get("data", program.data) if found is not None else program.data
    if data.get("tokenizer", BYTES) != BYTES:
        raise UsageProblem(f"run '{printable(str(run))}' reads the tokens of a tokenizer, and "
                           "this adapter scores requests byte by byte",
                           "evaluate a run trained with data.tokenizer: bytes")


def _cut(text: bytes, until: list[bytes]) -> bytes | None:
    """`text` before its first stop string, or None when none occurs in it."""
    found = [text.find(u) for u in until if u and u in text]
    return text[:min(found)] if found else None


# ---------------------------------------------------------------------- model arguments

ARGS = ("run", "carry", "learn_stream", "trust_program")  # model_args the adapter takes


def _flag(name: str, value) -> bool:
    """A true/false model argument (lm-eval parses 'true'; Python callers may pass strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UsageProblem(f"model argument {name}={printable(str(value))} is not true or false",
                       f"write {name}=true or {name}=false")


def _batch(batch_size, max_batch_size) -> int:
    """lm-eval's batch size: a number, or 'auto' (here: max_batch_size, else 16)."""
    if batch_size is None or str(batch_size).startswith("auto"):
        return int(max_batch_size or DEFAULT_BATCH)
    try:
        return max(1, int(batch_size))
    except ValueError:
        raise UsageProblem(f"batch size '{printable(str(batch_size))}' is not a number",
                           "pass --batch_size N, or auto") from None


def _device(device: str | None) -> str:
    """lm-eval's command line asks for cuda:0 unless told otherwise; without CUDA, the CPU."""
    if device and device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("nestgraph: CUDA is not available, reading on the CPU")
        return "cpu"
    return device or "cpu"


def scorer_from_args(run=None, carry=True, learn_stream=False, trust_program=False,
                     batch_size=None, max_batch_size=None, device=None, **unknown) -> Scorer:
    """A `Scorer` from lm-eval's model arguments, every mistake a clear `UsageProblem`."""
    if unknown:
        names = ", ".join(sorted(unknown))
        raise UsageProblem(f"unknown model argument(s) for nestgraph: {printable(names)}",
                           f"the nestgraph model takes {', '.join(ARGS)}")
    if not run:
        raise UsageProblem("the nestgraph model needs a run folder",
                           "pass --model_args run=runs/NAME/TIMESTAMP")
    return Scorer(Path(str(run)), carry=_flag("carry", carry),
                  learn_stream=_flag("learn_stream", learn_stream),
                  trust=_flag("trust_program", trust_program),
                  batch_size=_batch(batch_size, max_batch_size), device=_device(device))


# ---------------------------------------------------------------------- the lm-eval model

@functools.cache
def register() -> type:
    """Import lm-eval, define the ``nestgraph`` model and register it; the class.

    An `EnvironmentProblem` (exit 6) with the install hint when lm-eval is missing.
    """
    try:
        from lm_eval.api.model import LM
        from lm_eval.api.registry import register_model
    except ImportError as err:
        raise EnvironmentProblem(f"lm-eval is not installed ({printable(str(err))})",
                                 INSTALL_HINT) from None

    class NestgraphLM(LM):
        """lm-eval's requests, as strings, to the byte-level `Scorer` and back."""

        def __init__(self, **model_args) -> None:
            super().__init__()
            self.scorer = scorer_from_args(**model_args)
            self._device = self.scorer.device

        @property
        def max_length(self) -> int:
            return self.scorer.seq_len

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            pairs = [(c.encode(), x.encode()) for c, x in (r.args for r in requests)]
            results = self.scorer.loglikelihood(pairs)
            for request, result in zip(requests, results, strict=True):
                self.cache_hook.add_partial("loglikelihood", request.args, result)
            return results

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            texts = [r.args[0].encode() for r in requests]
            results = self.scorer.loglikelihood_rolling(texts)
            for request, result in zip(requests, results, strict=True):
                self.cache_hook.add_partial("loglikelihood_rolling", request.args, result)
            return results

        def generate_until(self, requests, disable_tqdm: bool = False):
            # Requests with the same options are generated together.
            results: list[str] = [""] * len(requests)
            groups: dict[tuple, list[int]] = {}
            for i, request in enumerate(requests):
                groups.setdefault(_gen_options(request.args[1]), []).append(i)
            for (until, max_bytes), members in groups.items():
                contexts = [requests[i].args[0].encode() for i in members]
                texts = self.scorer.generate(contexts, [list(until)] * len(members), max_bytes)
                for i, text in zip(members, texts, strict=True):
                    results[i] = text.decode("utf-8", errors="replace")
                    self.cache_hook.add_partial("generate_until", requests[i].args, results[i])
            return results

    register_model("nestgraph")(NestgraphLM)
    return NestgraphLM


def _gen_options(kwargs: dict) -> tuple[tuple[bytes, ...], int]:
    """(stop strings, most bytes) from a request's generation options; greedy only."""
    kwargs = dict(kwargs or {})
    until = kwargs.pop("until", None) or []
    until = [until] if isinstance(until, str) else list(until)
    max_bytes = int(kwargs.pop("max_gen_toks", 256))
    if kwargs.pop("do_sample", False) or float(kwargs.pop("temperature", 0) or 0) > 0:
        log.warning("nestgraph: generate_until decodes greedily; do_sample/temperature ignored")
    return tuple(u.encode() for u in until), max_bytes


def __getattr__(name: str):
    # `from nestgraph.evaluation.lm_eval_adapter import NestgraphLM` imports lm-eval then.
    if name == "NestgraphLM":
        return register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """lm-eval's command line with the ``nestgraph`` model registered; nestgraph's errors
    printed as the ``nestgraph`` command prints them, with its exit codes."""
    try:
        register()
        from lm_eval.__main__ import cli_evaluate

        sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
        cli_evaluate()
    except NestgraphError as err:
        print(f"error: {printable(err.message)}", file=sys.stderr)
        if err.hint:
            print(f"  = help: {printable(err.hint)}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
