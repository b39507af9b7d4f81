"""Drawings of the level hierarchy (Graphviz)."""
