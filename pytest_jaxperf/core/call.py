"""How a model is called: its example call split into the array inputs everything downstream handles
(placed, sharded on their batch axis, generated for the fidelity check, traced) and the static arguments
(``None``, Python scalars, strings, flags such as ``deterministic=True``) bound into the call.

``model(x, None, rngs=None, deterministic=True, mask=m)`` becomes the inputs ``(x, m)`` and a
:class:`CallPattern` that rebuilds the call from them; a static value is part of the program (a changed
one is another program), never generated and never traced. :func:`closed_over_modules` finds the other
way a function reaches a model: NNX modules it closes over instead of taking them as arguments.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from .compiles import function_name

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


class _Input:
    """The slot of an array input in a :class:`CallPattern`."""

    def __repr__(self) -> str:
        return "<input>"


INPUT = _Input()


def is_input(value: Any) -> bool:
    """Whether an argument is an input (a pytree holding an array) rather than a static value."""
    return any(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree_util.tree_leaves(value))


@dataclass(frozen=True)
class CallPattern:
    """Where each input goes in the model's call, and the static arguments around them."""

    positional: tuple[Any, ...]
    """Each positional argument: :data:`INPUT` (the next input) or its static value."""
    keywords: tuple[tuple[str, Any], ...]
    """Each keyword argument in the order given: :data:`INPUT` or its static value."""
    any_inputs: bool = False
    """Every input positionally, however many (:data:`PLAIN`: no example call to learn from)."""

    @classmethod
    def split(cls, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[CallPattern, tuple[Any, ...]]:
        """The pattern of the call ``model(*args, **kwargs)`` and its inputs, in call order."""
        positional = tuple(INPUT if is_input(a) else a for a in args)
        keywords = tuple((k, INPUT if is_input(v) else v) for k, v in kwargs.items())
        inputs = tuple(a for a in args if is_input(a)) + tuple(v for v in kwargs.values() if is_input(v))
        return cls(positional, keywords), inputs

    @property
    def plain(self) -> bool:
        """Whether the model is called with its inputs, positionally, and nothing else."""
        return self.any_inputs or (not self.keywords and all(a is INPUT for a in self.positional))

    @property
    def input_count(self) -> int:
        return sum(a is INPUT for a in self.positional) + sum(v is INPUT for _, v in self.keywords)

    def call(self, fn: Callable[..., Any], inputs: tuple[Any, ...], *leading: Any) -> Any:
        """``fn(*leading, ...)`` called as the example was, with ``inputs`` in the inputs' places."""
        args, kwargs = self.rebuild(inputs)
        return fn(*leading, *args, **kwargs)

    def rebuild(self, inputs: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments of the call, ``inputs`` in the inputs' places."""
        if self.any_inputs:
            return tuple(inputs), {}
        remaining = iter(inputs)
        args = tuple(next(remaining) if a is INPUT else a for a in self.positional)
        kwargs = {k: next(remaining) if v is INPUT else v for k, v in self.keywords}
        return args, kwargs

    def inputs_of(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str) -> tuple[Any, ...]:
        """The inputs of a later call of the wrapped model; TypeError naming the argument where its static
        arguments are not the example's (another value is another program: wrap the model again)."""
        if self.any_inputs and not kwargs:
            return tuple(args)
        pattern, inputs = CallPattern.split(args, kwargs)
        if pattern == self or (self.any_inputs and pattern.plain):
            return inputs
        where, given, expected = self._difference(pattern)
        raise TypeError(
            f"{name} was wrapped for calls like its example, {self.describe()}; {where} is {given} here, "
            f"{expected} in the example: a static argument is part of the compiled program, so wrap the "
            "model again for this call"
        )

    def describe(self) -> str:
        """The call as it reads: ``model(<input>, None, deterministic=True)``."""
        parts = [_shown(a) for a in self.positional] + [f"{k}={_shown(v)}" for k, v in self.keywords]
        return f"model({', '.join(parts)})"

    def input_names(self, fn: Callable[..., Any], *, skip: int = 0) -> list[str]:
        """A name for each input, as ``fn``'s parameters call it (``x``, ``mask``; the first ``skip``
        parameters are not the call's); ``args_2`` where its signature does not say."""
        names = [k for k, v in self.keywords if v is INPUT]
        try:
            parameters = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ][skip:]
        except (TypeError, ValueError):
            parameters = []
        positional = [
            parameters[i].name if i < len(parameters) else f"args_{i}"
            for i, a in enumerate(self.positional)
            if a is INPUT
        ]
        return positional + names

    def _difference(self, other: CallPattern) -> tuple[str, str, str]:
        for index in range(max(len(self.positional), len(other.positional))):
            ours = self.positional[index] if index < len(self.positional) else _MISSING
            theirs = other.positional[index] if index < len(other.positional) else _MISSING
            if not _same(ours, theirs):
                return f"positional argument {index}", _shown(theirs), _shown(ours)
        ours_k, theirs_k = dict(self.keywords), dict(other.keywords)
        for key in [*ours_k, *(k for k in theirs_k if k not in ours_k)]:
            if not _same(ours_k.get(key, _MISSING), theirs_k.get(key, _MISSING)):
                return f"{key}=", _shown(theirs_k.get(key, _MISSING)), _shown(ours_k.get(key, _MISSING))
        return "the call", "different", "as given"


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # values whose == is not a truth value: different
        return False


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "not given"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


#: The pattern of a model wrapped without an example call: called with its inputs, positionally.
PLAIN = CallPattern((), (), any_inputs=True)


def signature_stand_in(
    pattern: CallPattern, fn: Callable[..., Any], *, params: bool = False
) -> Callable[..., Any]:
    """A function whose parameters are the inputs, named as ``fn`` names them (after its leading
    ``params`` with ``params``): what a compile of the inputs-only callable is explained against."""

    def inputs(*values: Any) -> None:
        return None

    names = pattern.input_names(fn, skip=1 if params else 0)
    # Names repeated or not identifiers (never from a real signature) get their position.
    unique = [n if n.isidentifier() and names.count(n) == 1 else f"args_{i}" for i, n in enumerate(names)]
    leading = ["params"] if params else []
    inputs.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in [*leading, *unique]]
    )
    inputs.__name__ = getattr(fn, "__name__", "model")
    return inputs


def closed_over_modules(fn: Any) -> list[str]:
    """The NNX modules a function reaches without taking them as arguments (a lambda's closure, a
    ``functools.partial``'s arguments, a bound method's object, a global it names), each as
    ``name (Type)``: their weights are constants of its program, which no precision variant reaches."""
    nnx = sys.modules.get("flax.nnx")
    if nnx is None:
        return []
    found: list[str] = []
    seen: set[int] = set()

    def visit(value: Any, name: str, depth: int) -> None:
        if id(value) in seen or depth > 3:
            return
        seen.add(id(value))
        if isinstance(value, nnx.Module):
            found.append(f"{name} ({type(value).__name__})")
            return
        if isinstance(value, functools.partial):
            visit(value.func, name, depth + 1)
            for index, argument in enumerate(value.args):
                visit(argument, f"{name}.args[{index}]", depth + 1)
            for key, argument in value.keywords.items():
                visit(argument, f"{name}.{key}", depth + 1)
            return
        if inspect.ismethod(value):
            visit(value.__self__, type(value.__self__).__name__, depth + 1)
            return
        code = getattr(value, "__code__", None)
        if code is None:
            return
        for free, cell in zip(code.co_freevars, getattr(value, "__closure__", None) or (), strict=False):
            with contextlib.suppress(ValueError):  # an empty cell
                visit(cell.cell_contents, free, depth + 1)
        names = getattr(value, "__globals__", {})
        loaded = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        for global_name in sorted(loaded):
            if global_name in names:
                visit(names[global_name], global_name, depth + 1)

    visit(fn, function_name(fn), 0)
    return found
