"""pytest-jaxperf: test and benchmark JAX/Flax inference under each optimization.

Importing this package imports neither jax nor flax, so a conftest can configure jax first; the
compile-watch helpers below load jax on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .markers import devices, dtype, gate, jit_warm, memory

if TYPE_CHECKING:
    from .core.compiles import CompileWatch, RecompileError, WatchedFunction, watch_compiles
    from .errors import IdenticalInputsWarning, LowPrecisionReferenceWarning
    from .optimize.memory import chunked, donating, max_batch_size, rematerialized
    from .specs import Variant

__version__ = "0.1.0"

# Loaded on first access: these import jax; Variant's module builds the marker specs.
_LAZY = {
    "Variant": "pytest_jaxperf.specs",
    "IdenticalInputsWarning": "pytest_jaxperf.errors",
    "LowPrecisionReferenceWarning": "pytest_jaxperf.errors",
    "watch_compiles": "pytest_jaxperf.core.compiles",
    "CompileWatch": "pytest_jaxperf.core.compiles",
    "RecompileError": "pytest_jaxperf.core.compiles",
    "WatchedFunction": "pytest_jaxperf.core.compiles",
    "max_batch_size": "pytest_jaxperf.optimize.memory",
    "chunked": "pytest_jaxperf.optimize.memory",
    "donating": "pytest_jaxperf.optimize.memory",
    "rematerialized": "pytest_jaxperf.optimize.memory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_jaxperf' has no attribute {name!r}")


__all__ = [
    "CompileWatch",
    "IdenticalInputsWarning",
    "LowPrecisionReferenceWarning",
    "RecompileError",
    "Variant",
    "WatchedFunction",
    "__version__",
    "chunked",
    "devices",
    "donating",
    "dtype",
    "gate",
    "jit_warm",
    "max_batch_size",
    "memory",
    "rematerialized",
    "watch_compiles",
]
