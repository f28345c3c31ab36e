"""Everything about a JAX program: how a callable is traced, wrapped, placed, watched, timed and sized.

The core imports nothing else of the package but the marker specs: the optimizations, the checks, the gate
and the fixture are built on it.
"""
