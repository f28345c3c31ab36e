"""Everything about a JAX program: how a callable is traced, wrapped, placed, watched, timed and sized.

The core imports nothing of the package above it (only the foundations: records, intervals): the
optimizations, the checks, the gate and the fixture are built on it.
"""
