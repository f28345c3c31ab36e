"""What a model really computes: its jaxpr, flattened into one list of equations that can be read and re-run.

The precision audit, the int8 quantizer and the per-layer fidelity diagnosis all need the same view of a
model: every matmul and convolution in execution order, which of their operands come from the
parameters alone (a weight) and which from the inputs (an activation), the parameter each weight comes
from, and the module each equation ran in. :func:`trace` gives that view as a :class:`Program`;
:func:`evaluate` runs it again, op by op, with a hook that may replace any matmul (how the quantizer
runs int8) or watch every result (how the diagnosis finds the first layer that lost precision).

Calls to jitted functions (``pjit``) and custom-derivative wrappers are inlined, so a matmul inside
``jnp.einsum`` or ``jax.nn`` counts like any other; control flow (``scan``, ``while``, ``cond``) stays one
opaque equation, and the matmuls inside it are listed apart (:attr:`Program.hidden_matmuls`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

#: The primitives that are matrix multiplications for the precision audit and the quantizer.
MATMULS = frozenset({"dot_general", "conv_general_dilated"})
#: Call-like primitives whose body is inlined: what runs inside them is part of the model's own program.
_INLINED = frozenset(
    {
        "pjit",
        "jit",
        "closed_call",
        "core_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "checkpoint",
        "remat",
    }
)
#: Operations that move or relabel data without computing with it: a weight that reaches a matmul
#: through these alone is still the stored weight.
LAYOUT_OPS = frozenset(
    {
        "convert_element_type",
        "reshape",
        "transpose",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "copy",
        "copy_p",
        "slice",
        "rev",
    }
)


@dataclass(frozen=True)
class Const:
    """A literal or closed-over constant operand."""

    value: Any


Operand = int | Const


@dataclass
class Equation:
    """One primitive application, over value ids of its :class:`Program`."""

    primitive: Any
    params: dict[str, Any]
    inputs: list[Operand]
    outputs: list[int]
    scope: str
    """The module path it ran in (``blocks.0.linear1``), or JAX's name stack, or ``""``."""
    effectful: bool = False
    """Has side effects (a debug print, a callback): run even when its results are unused."""
    context: Any = None
    """JAX's per-equation context (configuration it was traced under)."""

    @property
    def name(self) -> str:
        return str(self.primitive.name)

    def apply(self, *values: Any) -> list[Any]:
        """Bind the primitive to ``values``; always a list of results."""
        # jax 0.10 returns the params; older versions returned (subfuns, params).
        params = self.primitive.get_bind_params(self.params)
        subfuns: tuple[Any, ...] = ()
        if isinstance(params, tuple):
            subfuns, params = params
        with self.context.manager if self.context is not None else contextlib.nullcontext():
            result = self.primitive.bind(*subfuns, *values, **params)
        return list(result) if self.primitive.multiple_results else [result]


@dataclass(frozen=True)
class HiddenMatmul:
    """A matmul inside control flow (``scan``, ``while``, ``cond``): its dtypes are known, its operands'
    origin (weight or activation) is not."""

    scope: str
    container: str
    operands: tuple[str, str]
    result: str


@dataclass
class Program:
    """A model's computation as a flat list of equations over numbered values.

    Values ``0 .. len(param_names)-1`` are the parameter leaves, then the input leaves; the rest are
    produced by :attr:`equations`.
    """

    param_names: list[str]
    input_ids: list[int]
    equations: list[Equation]
    output_operands: list[Operand]
    out_tree: Any
    avals: dict[int, Any]
    hidden_matmuls: list[HiddenMatmul] = field(default_factory=list)
    """The matmuls inside control flow, which this view does not open."""

    def matmuls(self) -> Iterator[tuple[int, Equation]]:
        """``(position, equation)`` of every matmul and convolution, in execution order."""
        return ((i, e) for i, e in enumerate(self.equations) if e.name in MATMULS)

    def weights(self) -> dict[int, frozenset[int]]:
        """Every value computed from the parameters alone → the parameter leaves it comes from.

        A value that depends on no input is a weight (or a constant, with no sources).
        """
        derived: dict[int, frozenset[int]] = {i: frozenset({i}) for i in range(len(self.param_names))}
        for equation in self.equations:
            sources: set[int] = set()
            for operand in equation.inputs:
                if isinstance(operand, Const):
                    continue
                if operand not in derived:
                    break
                sources |= derived[operand]
            else:
                for out in equation.outputs:
                    derived[out] = frozenset(sources)
        return derived

    def weight_name(self, sources: frozenset[int]) -> str:
        """The layer a weight belongs to: its parameter's path without the last part (``linear2``)."""
        names = sorted({self.param_names[s].rpartition(".")[0] or self.param_names[s] for s in sources})
        return "+".join(names) or "constant"


def leaf_names(tree: Any) -> list[str]:
    """Dotted paths of a pytree's leaves, as a user writes them: ``blocks.0.linear1.kernel``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [
        ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path).removesuffix(
            ".value"
        )
        for path, _ in flat
    ]


def trace(forward: Callable[..., Any], params: Any, inputs: Sequence[Any]) -> Program:
    """The program of ``forward(params, *inputs)`` for these inputs' shapes and dtypes."""
    param_leaves, param_tree = jax.tree_util.tree_flatten(params)
    input_leaves, input_tree = jax.tree_util.tree_flatten(tuple(inputs))

    def flat_forward(param_leaves: list[Any], input_leaves: list[Any]) -> Any:
        params = jax.tree_util.tree_unflatten(param_tree, param_leaves)
        return forward(params, *jax.tree_util.tree_unflatten(input_tree, input_leaves))

    closed, out_shape = jax.make_jaxpr(flat_forward, return_shape=True)(param_leaves, input_leaves)
    counter = itertools.count()
    avals: dict[int, Any] = {}
    invar_ids = []
    for var in closed.jaxpr.invars:
        invar_ids.append(next(counter))
        avals[invar_ids[-1]] = var.aval
    program = Program(
        param_names=leaf_names(params),
        input_ids=invar_ids[len(param_leaves) :],
        equations=[],
        output_operands=[],
        out_tree=jax.tree_util.tree_structure(out_shape),
        avals=avals,
    )
    program.output_operands = _inline(program, counter, closed.jaxpr, closed.consts, invar_ids, "")
    return program


def _inline(
    program: Program,
    counter: Iterator[int],
    jaxpr: Any,
    consts: Sequence[Any],
    arguments: Sequence[Operand],
    scope: str,
) -> list[Operand]:
    env: dict[Any, Operand] = {}
    for var, const in zip(jaxpr.constvars, consts, strict=True):
        env[var] = Const(const)
    for var, argument in zip(jaxpr.invars, arguments, strict=True):
        env[var] = argument

    def read(var: Any) -> Operand:
        return Const(var.val) if isinstance(var, jcore.Literal) else env[var]

    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        inner_scope = _join(scope, str(eqn.source_info.name_stack))
        body = _inlinable_body(eqn)
        if body is not None:
            inner, inner_consts = body
            outs = _inline(program, counter, inner, inner_consts, inputs, inner_scope)
            for var, out in zip(eqn.outvars, outs, strict=True):
                env[var] = out
            continue
        outputs = []
        for var in eqn.outvars:
            outputs.append(next(counter))
            program.avals[outputs[-1]] = var.aval
            env[var] = outputs[-1]
        program.equations.append(
            Equation(
                eqn.primitive, dict(eqn.params), inputs, outputs, inner_scope, bool(eqn.effects), eqn.ctx
            )
        )
        program.hidden_matmuls.extend(_hidden_matmuls(eqn, inner_scope))
    return [read(v) for v in jaxpr.outvars]


def _join(outer: str, inner: str) -> str:
    return "/".join(part for part in (outer, inner) if part)


def _inlinable_body(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    if eqn.primitive.name not in _INLINED:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        body = eqn.params.get(key)
        if isinstance(body, jcore.ClosedJaxpr):
            return body.jaxpr, body.consts
        if isinstance(body, jcore.Jaxpr):
            return body, ()
    return None


def _hidden_matmuls(eqn: Any, scope: str, container: str = "") -> Iterator[HiddenMatmul]:
    container = container or eqn.primitive.name
    for sub in jcore.jaxprs_in_params(eqn.params):
        for inner in sub.eqns:
            inner_scope = _join(scope, str(inner.source_info.name_stack))
            if inner.primitive.name in MATMULS:
                lhs, rhs = (str(getattr(v.aval, "dtype", "?")) for v in inner.invars[:2])
                result = str(getattr(inner.outvars[0].aval, "dtype", "?"))
                yield HiddenMatmul(inner_scope, container, (lhs, rhs), result)
            yield from _hidden_matmuls(inner, inner_scope, container)


MatmulHook = Callable[[int, Equation, list[Any]], Any]
"""``hook(position, equation, operand values)`` → the matmul's result, replacing the original."""
Observer = Callable[[int, Equation, list[Any], list[Any]], None]
"""``observe(position, equation, operand values, results)``, called after every equation."""


def execute(
    program: Program,
    env: dict[int, Any],
    positions: Iterable[int] | None = None,
    *,
    matmul: MatmulHook | None = None,
    observe: Observer | None = None,
) -> dict[int, Any]:
    """Run the equations at ``positions`` (default: all, in order) over ``env``, a map of value id →
    value holding at least their operands; returns ``env`` with their results added.

    ``matmul`` replaces matmuls (it returns the result, or None to run the original); ``observe`` sees
    every equation's operands and results.
    """
    for position in range(len(program.equations)) if positions is None else positions:
        equation = program.equations[position]
        hooked = matmul is not None and equation.name in MATMULS
        # A hooked matmul's replaced operand (an int8 weight) may be computed by equations now dead.
        values = [
            o.value if isinstance(o, Const) else env.get(o) if hooked else env[o] for o in equation.inputs
        ]
        with jax.named_scope(equation.scope) if equation.scope else contextlib.nullcontext():
            replaced = matmul(position, equation, values) if matmul is not None and hooked else None
            results = [replaced] if replaced is not None else equation.apply(*values)
        env.update(zip(equation.outputs, results, strict=True))
        if observe is not None:
            observe(position, equation, values, results)
    return env


def leaf_env(program: Program, param_leaves: Sequence[Any], input_leaves: Sequence[Any]) -> dict[int, Any]:
    """The starting values of a run: the parameter leaves, then the input leaves."""
    env: dict[int, Any] = dict(enumerate(param_leaves))
    env.update(zip(program.input_ids, input_leaves, strict=True))
    return env


def evaluate(
    program: Program,
    param_leaves: Sequence[Any],
    input_leaves: Sequence[Any],
    *,
    matmul: MatmulHook | None = None,
    skip: frozenset[int] = frozenset(),
) -> Any:
    """Run ``program`` on these leaves, in order; returns the output pytree.

    ``matmul`` as for :func:`execute`; equations whose positions are in ``skip`` are not run (dead code
    the caller has removed, such as a float weight's preparation once the weight is int8).
    """
    positions = (p for p in range(len(program.equations)) if p not in skip)
    env = execute(program, leaf_env(program, param_leaves, input_leaves), positions, matmul=matmul)
    outputs = [o.value if isinstance(o, Const) else env[o] for o in program.output_operands]
    return jax.tree_util.tree_unflatten(program.out_tree, outputs)


def live_equations(program: Program, dropped: frozenset[tuple[int, int]] = frozenset()) -> frozenset[int]:
    """Positions of the equations the outputs need, when the operands in ``dropped`` are not read.

    ``dropped`` holds ``(position, operand index)`` pairs: a matmul's weight operand that the caller
    supplies another way (int8 codes), so the float weight and its preparation are dead.
    """
    needed = {o for o in program.output_operands if not isinstance(o, Const)}
    live: set[int] = set()
    for position in range(len(program.equations) - 1, -1, -1):
        equation = program.equations[position]
        if not needed.intersection(equation.outputs) and not equation.effectful:
            continue
        live.add(position)
        for index, operand in enumerate(equation.inputs):
            if not isinstance(operand, Const) and (position, index) not in dropped:
                needed.add(operand)
    return frozenset(live)


def needed_params(program: Program, live: frozenset[int], dropped: frozenset[tuple[int, int]]) -> set[int]:
    """Parameter leaves read by the live equations or returned as outputs."""
    count = len(program.param_names)
    used = {o for o in program.output_operands if not isinstance(o, Const) and o < count}
    for position in live:
        for index, operand in enumerate(program.equations[position].inputs):
            if not isinstance(operand, Const) and operand < count and (position, index) not in dropped:
                used.add(operand)
    return used


def is_prng_key(value: Any) -> bool:
    """Whether ``value`` is an array of PRNG keys (an ``nnx.Rngs``'s keys): no numbers to cast or draw."""
    return isinstance(value, jax.Array) and bool(jnp.issubdtype(value.dtype, jax.dtypes.prng_key))


def is_floating(value: Any) -> bool:
    return bool(jnp.issubdtype(getattr(value, "dtype", np.float32), jnp.floating))


def cast_floating(tree: Any, dtype: Any) -> Any:
    """Every floating-point leaf of ``tree`` as ``dtype``; integer and boolean leaves unchanged."""
    return jax.tree.map(lambda leaf: leaf.astype(dtype) if is_floating(leaf) else leaf, tree)


# --- module scopes -----------------------------------------------------------------------------------


#: Marks a name-stack entry as a module path (JAX's own entries, such as an einsum's spec, are not).
MODULE_MARK = "@"


@contextlib.contextmanager
def module_scopes(module: Any) -> Iterator[set[str]]:
    """Name every submodule's operations after its path while tracing (``@blocks.0.linear1``).

    NNX does not put module paths into JAX's name stack, so each submodule class's ``__call__`` is
    wrapped in ``jax.named_scope`` for the duration of the block (the classes, not instances: Python
    looks special methods up on the type). Not thread-safe, like ``nnx.capture``. Yields the paths.
    """
    from flax import nnx

    paths: dict[int, str] = {}
    for path, sub in nnx.iter_modules(module):
        paths[id(sub)] = ".".join(map(str, path)) or type(sub).__name__
    originals: dict[type, Any] = {}
    for sub_type in {type(sub) for _, sub in nnx.iter_modules(module)}:
        original = sub_type.__dict__.get("__call__")
        if original is None:
            continue
        originals[sub_type] = original
        sub_type.__call__ = _scoped(original, paths)  # type: ignore[method-assign]
    try:
        yield set(paths.values())
    finally:
        for sub_type, original in originals.items():
            sub_type.__call__ = original  # type: ignore[method-assign]


def _scoped(original: Callable[..., Any], paths: dict[int, str]) -> Callable[..., Any]:
    def scoped(self: Any, *args: Any, **kwargs: Any) -> Any:
        path = paths.get(id(self))
        if path is None:
            return original(self, *args, **kwargs)
        with jax.named_scope(MODULE_MARK + path):
            return original(self, *args, **kwargs)

    return scoped


def innermost_module(scope: str) -> str:
    """The innermost module path in a name stack (``@Decoder/@linear2/dot_general`` → ``linear2``)."""
    for part in reversed(scope.split("/")):
        if part.startswith(MODULE_MARK):
            return part[len(MODULE_MARK) :]
    return ""
