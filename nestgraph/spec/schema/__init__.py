"""The validated spec: frozen pydantic models, one per section of a spec file.

Only *local* rules live here (types, ranges, tags, the shape of a name). Everything that
relates two entries (a level owning a module that exists, periods that divide, flows without
cycles) is a compiler pass, where the whole graph is in view.

Shorthands a person types (``every: 16 tokens``, ``context: gradients of outer``,
``objective: next_token``) are normalised here, so that ``spec.resolved.yaml`` always shows
the canonical spelling.

The models live in one file per section (common, modules, levels, sections); every name is
re-exported here.
"""

from nestgraph.spec.schema.common import (  # noqa: F401
    _IDENT,
    _REF,
    BATCH_MAX,
    CONV_MAX,
    EXPAND_MAX,
    HEADS_MAX,
    NAME_MAX,
    PERIOD_MAX,
    SEED_LIMIT,
    SEQ_LEN_MAX,
    SPEC_VERSION,
    STEPS_MAX,
    FiniteFloat,
    Identifier,
    MomentumRate,
    Rate,
    Share,
    Strict,
    _check_identifier,
    _interval,
    rate,
)
from nestgraph.spec.schema.levels import (  # noqa: F401
    _FLOW,
    _PERIOD,
    _VALUES,
    DGD,
    GD,
    L2,
    RULE_MODELS,
    AdamW,
    Beta,
    ClosedForm,
    ContextFlow,
    DeepGain,
    DeepMomentum,
    Dot,
    Level,
    Memories,
    Momentum,
    NadarayaWatson,
    NextToken,
    Objective,
    Period,
    Rule,
    SecondMoment,
    Titans,
    Values,
    _normalise_context,
    _normalise_period,
    _owns_shorthand,
    _type_shorthand,
    rule_union,
)
from nestgraph.spec.schema.modules import (  # noqa: F401
    MODULE_MODELS,
    Activation,
    AttentionSpec,
    BlockEntry,
    ChainBlockSpec,
    MemoryArchSpec,
    MemoryAsContextSpec,
    MemoryAsGateSpec,
    MLPChainSpec,
    MLPSpec,
    ModelSpec,
    ModuleSpec,
    NeuralMemorySpec,
    SelfModifyingTitansSpec,
    _block_shorthand,
    module_union,
)
from nestgraph.spec.schema.sections import (  # noqa: F401
    DataSpec,
    Spec,
    TrainedBpe,
    TrainSpec,
    _check_loggers,
    _rebuild,
    context_source,
    period_of,
    register_model,
    tag_of,
    unregister_model,
)
