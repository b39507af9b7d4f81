"""A memory level's rates, each within its schema range, are also held to their joint stability
bound (chunk x lr / (1 - momentum) <= 1), reported at the rate to lower."""

from __future__ import annotations

import pytest

from nestgraph.compiler.ir import facts
from nestgraph.testing import level_of, only_diagnostic, shipped_data, validated_graph


@pytest.mark.parametrize(("rule", "key", "hint"), [
    ({"lr": 100.0, "forget": 0.5, "momentum": 0.0}, "lr", "use lr <= 0.0625"),
    ({"max_lr": 1e6}, "max_lr", "use max_lr <= 0.00625"),
    ({"max_momentum": 0.99}, "max_lr", "use max_lr <= 0.000625"),
    ({"lr": 0.01, "momentum": 0.99}, "lr", "use lr <= 0.000625"),
])
def test_an_unstable_memory_rate_is_refused_at_that_rate(rule: dict, key: str, hint: str) -> None:
    data = shipped_data("titans")
    level_of(data, "memory")["rule"].update(rule)
    d = only_diagnostic(validated_graph(data))
    assert d.path == ("levels", 0, "rule", key)
    assert "too large to stay stable" in d.message and d.hint.startswith(hint), d.hint


def test_the_shipped_rates_are_stable() -> None:
    assert facts(validated_graph(shipped_data("titans"))).diagnostics == []
