"""nestgraph: write Nested Learning levels down as a spec, compile them, train them.

The pipeline, one subpackage per stage:

    nestgraph.spec      YAML text -> validated `Spec` (positions kept for error messages)
    nestgraph.compiler  Spec -> networkx graph -> passes -> plan -> program.py
    nestgraph.runtime   the modules, levels and training loop that program.py wires together
    nestgraph.viz       drawings of the level hierarchy
    nestgraph.cli       the `nestgraph` command

Importing `nestgraph` is cheap: torch is imported only by the runtime.
"""

__version__ = "0.1.0"
