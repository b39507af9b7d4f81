"""Module kinds and rules, one record each, looked up by tag (see `base` for the records).

Adding a module kind touches three places: its record (a `ModuleKind`, here or in your own
package), its schema model (a pydantic model with ``type: Literal["tag"]``), and its runtime
nn.Module. docs/extending.md walks through one.
"""

from nestgraph.compiler.kinds import attention, mlp, rules, selfmod, titans
from nestgraph.compiler.kinds.base import (
    Call,
    Flow,
    ModuleKind,
    Ownable,
    RuleKind,
    bodies,
    call,
    hidden_of,
)
from nestgraph.compiler.kinds.registry import (
    MODULE_KINDS,
    RULE_KINDS,
    module_kind,
    register,
    registered,
    rule_kind,
    unregister,
)

for _kind in (attention.KIND, mlp.MLP, mlp.MLP_CHAIN, titans.NEURAL_MEMORY,
              titans.MEMORY_AS_GATE, titans.MEMORY_AS_CONTEXT, selfmod.KIND):
    MODULE_KINDS[_kind.tag] = _kind
for _rule in rules.BUILT_IN:
    RULE_KINDS[_rule.tag] = _rule

__all__ = ["MODULE_KINDS", "RULE_KINDS", "Call", "Flow", "ModuleKind", "Ownable", "RuleKind",
           "bodies", "call", "hidden_of", "module_kind", "register", "registered", "rule_kind", "unregister"]
