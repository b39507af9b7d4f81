"""The built-in learning rules, one record each (see `RuleKind` for what a record says)."""

from __future__ import annotations

import math

from nestgraph.compiler.kinds.base import RuleKind

GD = RuleKind("gd", "GDRule",
              state=lambda rule, trained, read, chunk, shapes: trained if rule.momentum else 0)
ADAMW = RuleKind("adamw", "AdamWRule", in_context=False,
                 state=lambda rule, trained, read, chunk, shapes: 2 * trained)
CLOSED_FORM = RuleKind("closed_form", "ClosedFormRule", level_kind="nonparametric", step=False)
TITANS = RuleKind("titans", "TitansRule", "the Titans rule (Titans Eqs. 13-14)", "memory",
                  rates=("lr", "forget", "momentum"))
DGD = RuleKind("dgd", "DGDRule", "Delta Gradient Descent (NL Eq. 88)", "memory",
               rates=("lr", "forget"))
# Its state is counted at the optimizer levels that read it.
MEMORIES = RuleKind("memories", "MemoriesRule", in_context=False, reads_memories=True)
# Optimizer levels (NL §4.2-4.5): memories of the gradients g they read. The text is what
# diagrams show for each objective.
MOMENTUM = RuleKind("momentum", "MomentumRule", level_kind="optimizer",
                    objectives={"dot": "⟨m, −g⟩ (value-less)",
                                "l2": "‖m·ĝ − g‖² (delta rule)"},
                    state=lambda rule, trained, read, chunk, shapes: 2 * read + chunk)


def _deep_memory(hidden: int, shapes) -> int:
    """DMGD's weights per tensor read as a matrix (rows x cols): codes and their initial
    values (rows x hidden each), bias, second layer (hidden x cols), the inner loss."""
    total = 0
    for shape in shapes:
        rows = shape[0] if len(shape) >= 2 else 1
        cols = math.prod(shape) // max(1, rows)
        total += 2 * rows * hidden + hidden + hidden * cols + 1
    return total


DEEP_MOMENTUM = RuleKind(
    "deep_momentum", "DeepMomentumRule", level_kind="optimizer",
    objectives={"dot": "⟨m(K), −g⟩ (value-less, MLP memory)",
                "l2": "⟨m(K), −g⟩ + ½s⟨m(K), ĝ⟩² (delta rule, MLP memory)"},
    # the memory's linear part, the read-out, and each tensor's MLP weights
    state=lambda rule, trained, read, chunk, shapes: 2 * read + chunk
    + _deep_memory(rule.hidden, shapes))
DEEP_GAIN = RuleKind(
    "deep_gain", "DeepGainRule", level_kind="optimizer",
    objectives={"l2": "‖m(g_{t−1}) − g_t‖² (gain curve)"},
    # the previous gradient, the read-out, and each tensor's gain curve
    state=lambda rule, trained, read, chunk, shapes: 2 * read + chunk
    + len(shapes) * (3 * rule.hidden + 1))
SECOND_MOMENT = RuleKind("second_moment", "SecondMomentRule", level_kind="optimizer",
                         objectives={"dot": "⟨v, −g²⟩ (value-less)"},
                         state=lambda rule, trained, read, chunk, shapes: read + chunk)

BUILT_IN = (GD, ADAMW, CLOSED_FORM, TITANS, DGD, MEMORIES, MOMENTUM, DEEP_MOMENTUM,
            DEEP_GAIN, SECOND_MOMENT)
