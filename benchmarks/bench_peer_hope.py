"""nestgraph's Hope training step against the PyPI package `nested-learning` 0.2.0 (import name
`nested_learning`), the public Hope implementation, at that package's smoke configuration.

Measured: CPU time (`time.process_time`, one thread) of one full training step on each side,
the same byte batches fed to both, one warm-up step each, then interleaved rep by rep (one
nestgraph step, one peer step, ...), so a busy machine slows both alike. Reported: the median
step, tokens per CPU second, the ratio nestgraph / peer, parameter counts, and the loss of
every step (the first and last show whether each side learns over `--steps` steps).

The peer (`configs/pilot_smoke.yaml` in its wheel, composed with its own Hydra helper and built
with its own `build_model_from_cfg`): dim 128, 2 layers, 4 heads, block variant `hope_hybrid`
(attention, a Titan memory driven by a SelfModifier, a three-level CMS with periods 1/4/16),
deep-momentum level optimizers, AdamW lr 3e-4 outside. Its vocabulary is set to 256 (bytes)
and its batches are ours, 8 x 256 (its smoke data section, 4 x 64 random tokens of a 32000
vocabulary, is not used: nestgraph's Hope refuses seq_len 64, see NOTES). A second peer row,
the same config with `block_variant=hope_selfmod` (attention-free self-modifying Titans + CMS,
closer to nestgraph's Hope), is timed over the reps only, as its step costs several times more.

The peer's step is the per-step body of `nested_learning.training.run_training_loop` for this
config (online_updates on, per_layer_teach_signal on, use_fast_state off, chunk size 0, so
inferred from the smallest CMS period, 1 token), re-sequenced here with its own helpers:
teach-scale schedule; zero_grad; for each chunk (two tokens: the previous one is re-read so
every target is predicted once): forward with block outputs, next-token cross-entropy, the
surprise value, per-layer teach signals (the loss's gradient at each block output), their mean
norm (which its loop logs), backward (outer gradients summed over chunks), then a no-grad
forward with those signals that performs its in-context updates (the Titan memory through the
SelfModifier on its period, the CMS levels through their online buffers, each by its deep-
momentum optimizer, written straight into the parameters); after the chunks, gradient clipping
at norm 1 and the AdamW step. Left out: its DataLoader (our bytes are fed instead), logging,
printing, checkpointing, run-start config validation, and `train.deterministic`, which switches
on torch's process-wide deterministic algorithms and would apply to nestgraph's side too.

nestgraph's step is `nestgraph.runtime.train.step.train_step` on the shipped `hope` spec at
the peer's width, layers and heads: one forward over the sequence with every in-context level
(projections, memory, CMS) updating on its period, one backward, the outer AdamW step.

Needs the optional extra:

    pip install -e ".[bench]" && python benchmarks/bench_peer_hope.py
        [--reps 5] [--steps 20] [--no-selfmod] [--out benchmarks/results/peer_hope.json]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from bench_levels import Bench
from report import machine, write

PEER_CONFIG = "pilot_smoke"
BATCH, SEQ_LEN = 8, 256  # nestgraph's Hope shape; the peer's model has no length of its own
BYTE_OVERRIDES = ["model.vocab_size=256", "data.vocab_size=256",
                  f"data.seq_len={SEQ_LEN}", f"data.batch_size={BATCH}"]
# label -> Hydra overrides on top of pilot_smoke (the first is the smoke config itself)
PEERS = {"peer pilot_smoke (hope_hybrid)": [],
         "peer pilot_smoke + hope_selfmod": ["+model.block_variant=hope_selfmod"]}

NOTES = [
    "Architecture: the peer's smoke config is its hope_hybrid block (self-attention, a Titan "
    "memory updated through a SelfModifier, then the CMS); nestgraph's hope is attention-free "
    "(self-modifying Titans, then the CMS). The hope_selfmod row is the peer's closer match, "
    "timed over the reps only.",
    "Size: width, layers, heads and vocabulary match; parameter counts do not. The peer's CMS "
    "and Titan hidden multipliers (4) are not settable from its config, and hope_hybrid adds "
    "attention and a SelfModifier; nestgraph keeps its shipped expand 2.",
    "Shape: the peer's smoke data section is batch 4 x seq 64 of random tokens (vocab 32000). "
    "Both sides here read 8 x 256 bytes: nestgraph's hope refuses seq_len 64 (its cms_mid "
    "level, every 128 tokens, would never fire: E-PERIOD), and the peer's model has no length.",
    "Work per step differs by design: the peer reads a sequence as 256 two-token chunks, each "
    "with its own forward, teach-signal gradient, backward and update forward, and its "
    "attention sees only the chunk (online_carry_attention_cache is off); nestgraph reads the "
    "256 tokens in one forward and one backward. Both predict the same 8 x 256 next bytes.",
    "With train.use_fast_state off (as in its smoke config) the peer's in-context updates "
    "write into the shared parameters: one update serves all 8 sequences of the batch and it "
    "carries over to later steps; nestgraph's sequence-lifetime levels keep a state per "
    "sequence and reset it at the next one (cms_slow carries across the stream).",
    "In the peer's chunked mode its CMS buffers start empty on every two-token call, so "
    "cms_mid (period 4) and cms_slow (period 16) never update; see peer update_counts.",
    "Learning rates: nestgraph's outer level warms up over 20 steps (the spec's schedule, run "
    "length 120), so these steps are its warm-up; the peer's AdamW runs at a constant 3e-4.",
    "The peer ties its LM head to an N(0, 1) embedding, so its logits start with std ~12 and "
    "its first loss is far above ln 256; that is its own initialisation.",
    "Losses are training-batch cross-entropies in nats per byte (no held-out evaluation), "
    "taken during each step before its outer update; batches differ step to step, so a "
    "single step's loss is noisy.",
    "Not reproduced: the peer's train.deterministic (a process-wide torch switch).",
]


def byte_batch(corpus, step: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows nestgraph's `train_step` draws at `step`: both sides read these bytes."""
    from nestgraph.runtime.train.data import sample_batch

    return sample_batch(corpus.train, step=step, batch=BATCH, seq_len=SEQ_LEN, seed=seed,
                        order=corpus.order)


class Nestgraph(Bench):
    """nestgraph's `hope` at the peer's width, layers and heads."""

    def __init__(self, folder: Path, corpus, peer_model_cfg):
        self.overrides = [f"model.dim={peer_model_cfg.dim}",
                          f"model.layers={peer_model_cfg.num_layers}",
                          f"modules.selfmod.heads={peer_model_cfg.heads}", "model.vocab=256",
                          f"train.batch={BATCH}", f"train.seq_len={SEQ_LEN}"]
        super().__init__("hope", "hope", self.overrides, folder, corpus, warm_up=False)
        resolved = yaml.safe_load((self.build / "spec.resolved.yaml").read_text())
        self.config = {key: resolved[key] for key in ("model", "modules", "levels", "train")}

    @property
    def update_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.record.items() if k.startswith("updates/")}

    def step(self) -> tuple[float, float]:
        return super().step(), self.record["loss"]


class Peer:
    """A `nested_learning` model from its smoke config, trained with its loop's step."""

    def __init__(self, overrides: list[str], corpus, seed: int):
        from nested_learning import training
        from nested_learning.config_utils import compose_config

        self.lib = training  # its own helpers: the step below calls them as its loop does
        self.overrides = [*BYTE_OVERRIDES, *overrides]
        self.cfg = compose_config(PEER_CONFIG, overrides=self.overrides)
        check_online_branch(self.cfg)
        torch.manual_seed(int(self.cfg.train.seed))
        self.model = training.build_model_from_cfg(self.cfg.model)
        self.optimizer = training._build_optimizer(self.model, self.cfg,
                                                   device=torch.device("cpu"))
        self.chunk = training._infer_online_chunk_size(self.model) or SEQ_LEN
        self.surprise_metric = str(self.model.get_surprise_metric()).strip().lower()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.corpus, self.seed, self.done = corpus, seed, 0
        self.update_counts: dict[str, float] = {}

    def step(self) -> tuple[float, float]:
        start = time.process_time()
        x, y = byte_batch(self.corpus, self.done, self.seed)
        # x plus the last target byte: the 256 predictions nestgraph is scored on, no more.
        tokens = torch.cat([x, y[:, -1:]], dim=1).long()
        counts: collections.Counter = collections.Counter()
        self.lib._apply_teach_schedule(self.model, self.cfg, self.done)
        self.optimizer.zero_grad()
        total, targets = 0.0, 0
        for chunk, last in self.lib._iter_online_token_chunks(tokens, chunk_size=self.chunk):
            if chunk.size(1) < 2:  # the loop skips a chunk with nothing to predict
                continue
            total += self._chunk(chunk, last, counts) * (chunk.size(1) - 1)
            targets += chunk.size(1) - 1
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=1.0)
        self.optimizer.step()
        elapsed = time.process_time() - start
        self.done += 1
        self.update_counts = {k: int(v) for k, v in sorted(counts.items())}
        return elapsed, total / max(targets, 1)

    def _chunk(self, chunk: torch.Tensor, last: bool, counts: collections.Counter) -> float:
        """One chunk as its loop runs it: scored pass, teach signals, backward, update pass."""
        logits, _, block_outputs = self.model.forward_with_block_outputs(chunk)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), chunk[:, 1:].flatten())
        surprise = self.lib._compute_surprise_override(
            self.surprise_metric, logits=logits, tokens=chunk, loss=loss, next_tokens=None)
        signals = self.lib._compute_layer_teach_signals(loss, block_outputs)
        # Its loop reads the signals' mean norm out for its log on every chunk: kept, as a sync.
        float(torch.stack([s.norm(dim=-1).mean() for s in signals]).mean())
        loss.backward()
        with torch.no_grad():
            self.model(chunk, teach_signals=signals, surprise_value=surprise,
                       finalize_updates=last, differentiable_updates=False)
            for key, value in self.model.pop_update_metrics().items():
                if key.endswith(".gate_hit"):  # one per applied update of that level
                    counts[key.removesuffix(".gate_hit")] += value
        return loss.item()

    def config(self) -> dict:
        from omegaconf import OmegaConf

        return {"config_name": PEER_CONFIG, "overrides": self.overrides,
                "model": OmegaConf.to_container(self.cfg.model, resolve=True),
                "train": OmegaConf.to_container(self.cfg.train, resolve=True),
                "optim": OmegaConf.to_container(self.cfg.optim, resolve=True),
                "online_chunk_size_used": self.chunk}


def check_online_branch(cfg) -> None:
    """Peer.step replays one branch of its loop: refuse a config that would take another."""
    train = cfg.train
    expected = {"online_updates": True, "per_layer_teach_signal": True, "use_fast_state": False,
                "online_boundary_targets": False, "online_carry_attention_cache": False}
    for key, value in expected.items():
        if bool(train.get(key, False)) != value:
            raise SystemExit(f"peer config has train.{key}={train.get(key)}; this benchmark "
                             f"replays the {key}={value} branch of its training loop only")
    mode = str(train.get("algorithm_mode", "two_pass_stopgrad_updates"))
    if mode != "two_pass_stopgrad_updates" or cfg.train.mixed_precision.enabled:
        raise SystemExit("peer config leaves the fp32 two-pass branch this benchmark replays")


def run(sides: dict, steps: int) -> dict[str, dict[str, list[float]]]:
    """Interleaved: every side's step i before any side's step i + 1; `sides` maps a label to
    (side, how many steps it runs)."""
    log = {label: {"cpu_s": [], "loss": []} for label in sides}
    for i in range(steps):
        for label, (side, limit) in sides.items():
            if i < limit:
                cpu_s, loss = side.step()
                log[label]["cpu_s"].append(cpu_s)
                log[label]["loss"].append(loss)
        print(f"step {i + 1}/{steps}: " + "; ".join(
            f"{label} {log[label]['cpu_s'][-1]:.2f}s loss {log[label]['loss'][-1]:.3f}"
            for label in sides if i < sides[label][1]), flush=True)
    return log


def summarise(entry: dict[str, list[float]], reps: int) -> dict:
    """Step 1 is the warm-up; steps 2..reps+1 are the timed reps; later steps train on."""
    timed = entry["cpu_s"][1:reps + 1]
    median = statistics.median(timed)
    return {"cpu_s_warmup": entry["cpu_s"][0], "cpu_s_reps": timed,
            "median_cpu_s_per_step": median, "tokens_per_cpu_s": BATCH * SEQ_LEN / median,
            "median_cpu_s_all_steps_after_warmup": statistics.median(entry["cpu_s"][1:]),
            "steps_run": len(entry["loss"]), "loss_first": entry["loss"][0],
            "loss_last": entry["loss"][-1], "loss_per_step": entry["loss"],
            "cpu_s_per_step": entry["cpu_s"]}


def main() -> None:
    from nestgraph.runtime.train.data import load_corpus

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="training steps per side (>= reps+1)")
    parser.add_argument("--no-selfmod", action="store_true", help="skip the hope_selfmod row")
    parser.add_argument("--out", default="benchmarks/results/peer_hope.json")
    args = parser.parse_args()
    if importlib.util.find_spec("nested_learning") is None:  # checked here: --help needs none
        raise SystemExit("this benchmark needs nested-learning: pip install -e '.[bench]'")
    from nested_learning.config_utils import compose_config

    steps = max(args.steps, args.reps + 1)
    torch.set_num_threads(1)
    corpus = load_corpus(None, max_bytes=1_000_000)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        smoke = compose_config(PEER_CONFIG, overrides=BYTE_OVERRIDES)
        ours = Nestgraph(Path(tmp), corpus, smoke.model)
        # Peers read the windows nestgraph's train_step draws: same seed, same step index.
        peers = {label: Peer(extra, corpus, seed=ours.cfg["seed"])
                 for label, extra in PEERS.items() if not (args.no_selfmod and extra)}
        sides = {"nestgraph hope": (ours, steps)}
        for label, peer in peers.items():  # the selfmod row costs ~10x a step: reps only
            sides[label] = (peer, args.reps + 1 if "selfmod" in label else steps)
        log = run(sides, steps)
    results = {label: summarise(log[label], args.reps) for label in sides}
    ours_row = results["nestgraph hope"]
    ours_row.update(params=ours.params, spec="hope", overrides=ours.overrides,
                    config=ours.config, update_counts_per_step=ours.update_counts)
    for label, peer in peers.items():
        results[label].update(params=peer.params, config=peer.config(),
                              update_counts_per_step=peer.update_counts,
                              ratio_nestgraph_tok_s_over_peer=ours_row["tokens_per_cpu_s"]
                              / results[label]["tokens_per_cpu_s"])
    for label, row in results.items():
        print(f"{label:58s} {row['params']:>9,} params {row['tokens_per_cpu_s']:8.1f} tok/s "
              f"loss {row['loss_first']:.3f} -> {row['loss_last']:.3f} "
              f"({row['steps_run']} steps)")
    write(args.out, {
        "benchmark": "one Hope training step, nestgraph vs nested-learning (PyPI), CPU time",
        "machine": machine(threads=1), "peer_package": {"name": "nested-learning",
                                                       "version": version("nested-learning")},
        "batch_x_seq": f"{BATCH} x {SEQ_LEN}", "tokens_per_step": BATCH * SEQ_LEN,
        "reps": args.reps, "steps": steps, "wall_s_total": time.perf_counter() - wall,
        "data": f"{corpus.source}, first 1,000,000 bytes; step i of every side reads "
                f"nestgraph's sample_batch windows for step i (seed {ours.cfg['seed']}); the "
                "peer gets each window plus its last target byte, so both score the same "
                f"{BATCH} x {SEQ_LEN} predictions",
        "ratio_nestgraph_tok_s_over_peer": {label: results[label]["ratio_nestgraph_tok_s_over_"
                                                                 "peer"] for label in peers},
        "results": results, "notes": NOTES})


if __name__ == "__main__":
    main()
