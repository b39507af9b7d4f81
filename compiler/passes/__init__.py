"""Compiler passes. Each is a function ``g -> None`` that adds to the graph; see ``compile_spec``."""
