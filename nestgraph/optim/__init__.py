"""Optimizers as memories of gradients (Nested Learning §4): each is a `torch.optim.Optimizer`
that works on any PyTorch model, and each is also a level rule in a spec.

    from nestgraph.optim import M3
    opt = M3(model.parameters(), lr=0.02, slow_every=10)
"""

from nestgraph.optim.deep_gain import DeepGain
from nestgraph.optim.dgd import DeltaGD
from nestgraph.optim.dmgd import DMGD
from nestgraph.optim.m3 import M3
from nestgraph.optim.momentum import DeltaMomentum, MemoryMomentum, Muon, PreconditionedMomentum

__all__ = ["DMGD", "M3", "DeepGain", "DeltaGD", "DeltaMomentum", "MemoryMomentum", "Muon",
           "PreconditionedMomentum"]
