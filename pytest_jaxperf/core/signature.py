"""Abstract call signatures and the diff that explains why a call compiled again.

JAX keys its compilation caches on the *abstract* signature of a call: shapes, dtypes, weak types,
placement, the values of static arguments and even whether an argument was passed by keyword or left
at its default. This module describes a call in exactly those terms, one entry per pytree leaf, so that
two calls can be compared leaf by leaf and the difference named in words a person can act on.

Nothing here runs on the device and nothing is traced: a description costs a pytree flatten.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

#: Python scalar types that JAX traces as weak-typed 0-d arrays (or hashes, when static).
_PY_SCALARS = (bool, int, float, complex)


@dataclass(frozen=True)
class Leaf:
    """What JAX sees of one argument leaf: the parts of it that enter the compilation cache key."""

    kind: str
    """``array`` (jax.Array), ``numpy``, ``scalar`` (Python number), ``variable`` (an NNX variable),
    ``static`` (anything else: hashed by value when static) or ``passing`` (how an argument was passed)."""
    dtype: str = ""
    shape: tuple[int, ...] = ()
    weak_type: bool = False
    placement: str = ""
    value: str = ""

    def describe(self) -> str:
        """A short human rendering, e.g. ``f32[64,32] on cpu:0`` or ``Python float 1.0``."""
        if self.kind in ("array", "numpy", "variable"):
            text = f"{_short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"
            if self.weak_type:
                text += " (weak type)"
            if self.kind == "numpy":
                text += " numpy array"
            if self.placement:
                text += f" on {self.placement}"
            return text
        if self.kind == "scalar":
            return f"Python {self.value}"
        return self.value


Signature = Mapping[str, Leaf]
"""A call's abstract signature: argument path (``x``, ``params['dense']['kernel']``) → leaf."""


_DTYPE_SHORT = {
    "float64": "f64",
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "int64": "i64",
    "int32": "i32",
    "int16": "i16",
    "int8": "i8",
    "uint8": "u8",
    "uint32": "u32",
    "bool": "bool",
}


def _short_dtype(dtype: str) -> str:
    return _DTYPE_SHORT.get(dtype, dtype)


def _placement(array: jax.Array) -> str:
    sharding = array.sharding
    devices: list[Any] = sorted(sharding.device_set, key=lambda d: int(d.id))
    if len(devices) == 1:
        return _device_name(devices[0])
    spec = getattr(sharding, "spec", None)
    names = (
        ",".join(_device_name(d) for d in devices)
        if len(devices) <= 4
        else f"{_device_name(devices[0])}…{_device_name(devices[-1])}"
    )
    return f"{len(devices)} devices [{names}]" + (f" as {spec}" if spec is not None else "")


def _device_name(device: Any) -> str:
    return f"{device.platform}:{device.id}"


def describe_leaf(value: Any) -> Leaf:
    """Describe one pytree leaf the way JAX's cache key sees it."""
    if isinstance(value, jax.Array):
        try:
            placement = _placement(value)
        except Exception:
            # A tracer (a call from inside another trace) has no concrete placement.
            placement = ""
        return Leaf(
            "array",
            str(value.dtype),
            tuple(value.shape),
            bool(getattr(value, "weak_type", False)),
            placement,
        )
    if isinstance(value, np.ndarray | np.generic):
        return Leaf("numpy", str(value.dtype), tuple(np.shape(value)))
    if isinstance(value, _PY_SCALARS):
        return Leaf("scalar", value=f"{type(value).__name__} {value!r}")
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return Leaf("static", value=f"{type(value).__name__} {text}")


def _describe_module(path: str, module: Any, out: dict[str, Leaf]) -> None:
    """Describe an NNX module by its variables and its plain (static) attributes."""
    from flax import nnx

    for node_path, node in nnx.iter_graph(module):
        where = path + "".join(f".{p}" for p in node_path)
        if isinstance(node, nnx.Variable):
            leaf = describe_leaf(node.get_value())
            out[where] = Leaf("variable", leaf.dtype, leaf.shape, leaf.weak_type, "", type(node).__name__)
        elif isinstance(node, nnx.Module):
            for name, attr in vars(node).items():
                if not name.startswith("_") and isinstance(attr, (*_PY_SCALARS, str, type(None))):
                    out[f"{where}.{name}"] = Leaf("static", value=f"{type(attr).__name__} {attr!r}")
            out.setdefault(where or "<module>", Leaf("static", value=f"module {type(node).__name__}"))


def describe_call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Leaf]:
    """The abstract signature of ``fn(*args, **kwargs)``, keyed by argument path.

    Arguments are bound to ``fn``'s parameters so that paths read like the user's code (``x``, not
    ``args[0]``), and each parameter records whether it was passed positionally, by keyword or left at
    its default: JAX keys its cache on that too.
    """
    arguments, passing = _bind(fn, args, kwargs)
    described: dict[str, Leaf] = {}
    for name, how in passing.items():
        described[f"{name} (passed)"] = Leaf("passing", value=how)
    module_type = _nnx_module_type()
    for name, value in arguments.items():
        leaves, _ = jax.tree_util.tree_flatten_with_path(
            value, is_leaf=(lambda x: isinstance(x, module_type)) if module_type else None
        )
        for key_path, leaf in leaves:
            path = name + jax.tree_util.keystr(key_path)
            if module_type is not None and isinstance(leaf, module_type):
                _describe_module(path, leaf, described)
            else:
                described[path] = describe_leaf(leaf)
    return described


def _nnx_module_type() -> type | None:

    # Only look for NNX modules when flax is already loaded: never import it for a pure function.
    if "flax.nnx" not in sys.modules:
        return None
    from flax import nnx

    return nnx.Module


def _bind(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        signature = inspect.signature(fn)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        # No usable signature (a C function, a mismatched call): fall back to positions and names.
        return {f"args[{i}]": a for i, a in enumerate(args)} | dict(kwargs), {}
    passing: dict[str, str] = {}
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in kwargs:
            passing[name] = "by keyword"
        elif name in bound.arguments:
            passing[name] = "positionally"
        elif parameter.default is not parameter.empty:
            passing[name] = "left at its default"
    bound.apply_defaults()
    arguments: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            arguments.update({f"{name}[{i}]": v for i, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        else:
            arguments[name] = value
    return arguments, passing


def explain_difference(new: Signature, seen: list[Signature]) -> list[str]:
    """Name what changed between ``new`` and the closest signature in ``seen``, one line a change."""
    if not seen:
        return ["first compile"]
    closest = min(seen, key=lambda old: len(_changed_paths(old, new)))
    lines = [_explain_path(path, closest.get(path), new.get(path)) for path in _changed_paths(closest, new)]
    if lines:
        return lines
    return [
        "the call's abstract signature is the same as an earlier one: something outside the "
        "arguments changed (jax config, a context manager such as default_matmul_precision or a mesh, "
        "or the function object was re-created, e.g. a lambda or closure defined inside a loop)"
    ]


def _changed_paths(old: Signature, new: Signature) -> list[str]:
    return [path for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]


def _explain_path(path: str, before: Leaf | None, now: Leaf | None) -> str:
    if before is None and now is not None:
        if now.kind == "variable":
            return f"{path}: new {now.value} {now.describe()} (the module's structure changed)"
        return f"{path}: new argument leaf {now.describe()} (the pytree structure changed)"
    if now is None and before is not None:
        if before.kind == "variable":
            return f"{path}: {before.value} {before.describe()} is gone (the module's structure changed)"
        return f"{path}: leaf {before.describe()} is gone (the pytree structure changed)"
    assert before is not None
    assert now is not None
    if before.kind == "passing":
        name = path.removesuffix(" (passed)")
        return (
            f"{name}: {now.value} now, {before.value} before — JAX keys its cache on how an argument "
            "is passed, so f(x) and f(x, n=2) compile separately even when 2 is the default"
        )
    arrays = ("array", "numpy", "variable")
    if before.kind in arrays and now.kind in arrays:
        return _explain_array(path, before, now)
    if now.kind == "scalar" and before.kind in arrays:
        return (
            f"{path}: {now.describe()} now, {before.describe()} before — a Python scalar is traced as a "
            "weak-typed 0-d array: pass an array of the usual shape and dtype"
        )
    if now.kind in ("scalar", "static") and before.kind in ("scalar", "static"):
        return (
            f"{path}: value changed {before.value} → {now.value} (a static argument: every distinct "
            "value compiles anew)"
        )
    return f"{path}: {before.describe()} → {now.describe()}"


def _explain_array(path: str, before: Leaf, now: Leaf) -> str:
    changes = []
    if before.shape != now.shape:
        changes.append(f"shape {list(before.shape)} → {list(now.shape)}")
    if before.dtype != now.dtype:
        changes.append(f"dtype {before.dtype} → {now.dtype}")
    if before.weak_type != now.weak_type:
        changes.append("weak type " + ("gained (a Python scalar reached it)" if now.weak_type else "lost"))
    if before.kind != now.kind:
        changes.append(f"{before.kind} → {now.kind}")
    if before.placement != now.placement:
        changes.append(f"device/sharding {before.placement or '?'} → {now.placement or '?'}")
    if before.value != now.value:
        changes.append(f"variable type {before.value} → {now.value}")
    return f"{path}: {before.describe()} → {now.describe()} ({'; '.join(changes)})"


def describe_inputs(inputs: tuple[Any, ...]) -> str:
    """``[0]: f32[64,32] on cpu:0; [1]: ...``: the inputs' abstract signature."""
    signature = describe_call(lambda *inputs: None, inputs, {})
    return "; ".join(f"{path.removeprefix('inputs')}: {leaf.describe()}" for path, leaf in signature.items())
