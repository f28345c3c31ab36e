"""Checks run on the wrapped model: what compiles (this package), later audit, memory and fidelity."""
