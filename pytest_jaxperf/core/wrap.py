"""JIT with warm-up: the model under test as one compiled, watched callable.

A model is a ``flax.nnx.Module`` (called as ``model(*inputs)``) or a pure function, called as
``fn(*inputs)`` or, with ``params``, as ``fn(params, *inputs)``.

An NNX module is split once into its graph definition and its state, and the forward pass is a plain
``jax.jit`` over the state: the idiom the NNX docs give for inference, without ``nnx.jit``'s per-call
graph traversal (about 0.2–0.5 ms a call on a small model, which would swamp its run time). The wrapped
callable therefore runs the module *as it was when wrapped*: wrap again after changing the model. A
module that changes its own structure while being called (an attribute added in ``__call__``) would
recompile on every such call under ``nnx.jit``; wrapping it raises :class:`ModelStructureError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax

from .call import PLAIN, CallPattern, is_input, signature_stand_in
from .compiles import CompileEvent, CompileWatch, RecompileError, WatchedFunction, function_name
from .model import describe_model_error, is_nnx_module
from .placement import replicate, shard_batch
from .program import cast_floating, leaf_names, module_scopes, trace
from .signature import describe_leaf
from .timing import timed_call

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .program import Program


class ModelStructureError(RecompileError):
    """An NNX module changed its own structure while being called."""


@dataclass(frozen=True)
class WarmupTimings:
    """What the warm-up measured, each call blocked on its whole output."""

    compile_seconds: float
    """Trace + lowering + XLA compile of the first call, from jax's compile events."""
    first_call_seconds: float
    """Wall time of the first call, compile included."""
    steady_call_seconds: tuple[float, ...]
    """Wall time of each later warm-up call (no compile expected)."""


class WrappedModel:
    """The model under test with its optimizations applied, called with the example inputs only."""

    def __init__(
        self,
        name: str,
        call: Callable[..., Any],
        watched: WatchedFunction | None,
        jitted: bool,
        lower: Callable[..., Any] | None = None,
        mesh: Any = None,
        forward: Callable[..., Any] | None = None,
        params: Any = (),
        pattern: CallPattern | None = None,
    ) -> None:
        self.name = name
        self.watched = watched
        self.jitted = jitted
        self.mesh = mesh
        """The device mesh the batch is sharded over (None: one device)."""
        self.forward = forward
        """The pure function ``forward(params, *inputs)`` that is compiled; for reading its program."""
        self.params = params
        """What ``forward`` takes as its parameters (an NNX module's state, a function's params)."""
        self.pattern = pattern
        """How the model is called around its inputs (keywords, static arguments); None: as it is called."""
        self._call = call
        self._lower = lower

    def program(self, *inputs: Any) -> Program:
        """What the model computes for these inputs, its operations named by module path."""
        assert self.forward is not None
        return trace(functools.partial(self.forward, scoped=True), self.params, inputs)

    def place(self, *inputs: Any) -> tuple[Any, ...]:
        """The inputs as this callable runs them: with a mesh, the batch axis split over its devices."""
        if self.mesh is None:
            return inputs

        return shard_batch(inputs, self.mesh)

    def run(self, *placed: Any, **kwargs: Any) -> Any:
        """Call with inputs already :meth:`place`-d (what measurements time: no transfer per call)."""
        __tracebackhide__ = True
        return self._call(*placed, **kwargs)

    def lower(self, *inputs: Any, **kwargs: Any) -> Any:
        """The ``jax.stages.Lowered`` program for these inputs (None when not jitted)."""
        return self._lower(*self.place(*inputs), **kwargs) if self._lower is not None else None

    def on_inputs(self, *inputs: Any) -> Any:
        """Call with the inputs alone, the static arguments of its call as in the example: how the checks
        call it on inputs of their own."""
        __tracebackhide__ = True
        return self._call(*self.place(*inputs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call it as the model is called; its static arguments must be the example's."""
        __tracebackhide__ = True
        if self.pattern is None or (self.pattern.plain and not kwargs):
            return self._call(*self.place(*args), **kwargs)
        if self.pattern.any_inputs:  # wrapped without an example call: jax traces every argument
            static = next((k for k, v in kwargs.items() if not is_input(v)), None)
            if static is not None:
                raise TypeError(
                    f"{self.name} was wrapped without an example call, so {static}={kwargs[static]!r} would "
                    f"be traced as an array: give the wrap the example call, jaxperf.wrap(model, x, "
                    f"{static}={kwargs[static]!r})"
                )
            return self._call(*self.place(*args), **kwargs)
        return self._call(*self.place(*self.pattern.inputs_of(args, kwargs, self.name)))

    def __repr__(self) -> str:
        return f"<jaxperf wrapped {self.name} jit={self.jitted}>"


def wrap_model(
    model: Any,
    *,
    params: Any = None,
    jit: bool = True,
    max_compiles: int | None = None,
    explain: bool = False,
    mesh: Any = None,
    cast_inputs: Any = None,
    name: str | None = None,
    pattern: CallPattern | None = None,
) -> WrappedModel:
    """Make ``model`` a callable of its inputs; with ``jit``, compiled and watched for recompiles.

    With ``mesh`` (see :func:`.placement.batch_mesh`), the parameters are replicated on its devices and
    every call splits the inputs' batch axis over them. With ``cast_inputs`` (a dtype), floating
    inputs are cast to it inside the model (mixed precision). With ``pattern``, the model is called as
    its example was (keywords, static arguments) and the callable takes the inputs alone. Raises
    TypeError when ``model`` is neither an NNX module nor a function (see :func:`describe_model_error`).
    """
    error = describe_model_error(model, params)
    if error:
        raise TypeError(error)
    if mesh is not None and not jit:
        raise ValueError("sharding over several devices needs jit: combine devices() with jit_warm")
    if is_nnx_module(model):
        return _wrap_module(
            model,
            jit=jit,
            max_compiles=max_compiles,
            explain=explain,
            mesh=mesh,
            cast_inputs=cast_inputs,
            pattern=pattern or PLAIN,
        )
    if mesh is not None and params is not None:
        params = replicate(params, mesh)
    renamed = name is not None and name != function_name(model)
    name = name or function_name(model)
    pattern = pattern or PLAIN
    forward = _function_forward(model, params is not None, cast_inputs, name, pattern)
    stored = params if params is not None else ()
    if not jit:
        return WrappedModel(
            name,
            functools.partial(forward, stored),
            None,
            jitted=False,
            forward=forward,
            params=stored,
            pattern=pattern,
        )
    if cast_inputs is None and not renamed and pattern.plain:
        # A function the user already jitted (static arguments and all) is watched as it is.
        jitted = model if hasattr(model, "lower") else jax.jit(model)
        signature_of: Callable[..., Any] = model
    else:
        jitted = jax.jit(forward)
        signature_of = (
            signature_stand_in(pattern, model, params=params is not None)
            if not pattern.plain
            else model
            if params is not None
            else _with_params_first(model)
        )
    watched = WatchedFunction(
        jitted, name=name, max_compiles=max_compiles, signature_of=signature_of, explain=explain
    )
    if params is None and cast_inputs is None and not renamed and pattern.plain:
        return WrappedModel(
            name, watched, watched, jitted=True, lower=jitted.lower, mesh=mesh, forward=forward, params=()
        )

    def call_with_params(*inputs: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return watched(stored, *inputs, **kwargs)

    return WrappedModel(
        name,
        call_with_params,
        watched,
        jitted=True,
        lower=functools.partial(jitted.lower, stored),
        mesh=mesh,
        forward=forward,
        params=stored,
        pattern=pattern,
    )


def _with_params_first(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in with ``fn``'s signature after a leading ``params``: how a compile is explained."""

    def signature(params: Any, *args: Any, **kwargs: Any) -> Any:
        return None

    signature.__name__ = getattr(fn, "__name__", "model")
    return signature


def _function_forward(
    model: Callable[..., Any], takes_params: bool, cast_inputs: Any, name: str, pattern: CallPattern
) -> Callable[..., Any]:
    def forward(params: Any, *inputs: Any, scoped: bool = False, **kwargs: Any) -> Any:
        if cast_inputs is not None:
            inputs = cast_floating(inputs, cast_inputs)
        if kwargs:  # a later call's own keywords, on a model wrapped without an example call
            return model(params, *inputs, **kwargs) if takes_params else model(*inputs, **kwargs)
        return pattern.call(model, inputs, params) if takes_params else pattern.call(model, inputs)

    # jax reports compiles under the function's name: the watch finds them by the model's.
    forward.__name__ = forward.__qualname__ = name
    return forward


def _wrap_module(
    module: Any,
    *,
    jit: bool,
    max_compiles: int | None,
    explain: bool,
    mesh: Any,
    cast_inputs: Any,
    pattern: CallPattern,
) -> WrappedModel:
    from flax import nnx

    name = type(module).__name__
    graphdef, state = nnx.split(module)
    state_paths = _variable_paths(state)
    if mesh is not None:
        state = replicate(state, mesh)
    structure_changes: list[str] = []

    def forward(state: Any, *inputs: Any, scoped: bool = False, **kwargs: Any) -> Any:
        live = nnx.merge(graphdef, state)
        if cast_inputs is not None:
            inputs = cast_floating(inputs, cast_inputs)
        # Reading the program (scoped): name each operation after the submodule it runs in.
        with module_scopes(live) if scoped else contextlib.nullcontext():
            out = live(*inputs, **kwargs) if kwargs else pattern.call(live, inputs)
        # Runs at trace time only: a free check that the forward pass left the module's structure alone.
        new_graphdef, new_state = nnx.split(live)
        if new_graphdef != graphdef:
            structure_changes.append(_structure_change(name, state_paths, _variable_paths(new_state)))
        return out

    if not jit:
        call = module if cast_inputs is None and pattern.plain else functools.partial(forward, state)
        return WrappedModel(name, call, None, jitted=False, forward=forward, params=state, pattern=pattern)

    # jax reports compiles under the function's name: make it the model's, so events read jit(Decoder).
    forward.__name__ = forward.__qualname__ = name
    jitted = jax.jit(forward)

    def call_module(*inputs: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        out = jitted(state, *inputs, **kwargs)
        if structure_changes:
            # Raised here rather than inside the trace, so the traceback ends at the user's call.
            raise ModelStructureError(structure_changes[-1])
        return out

    watched = WatchedFunction(
        call_module,
        name=name,
        max_compiles=max_compiles,
        signature_of=module.__call__ if pattern.plain else signature_stand_in(pattern, module.__call__),
        explain=explain,
    )
    return WrappedModel(
        name,
        watched,
        watched,
        jitted=True,
        lower=functools.partial(jitted.lower, state),
        mesh=mesh,
        forward=forward,
        params=state,
        pattern=pattern,
    )


def _variable_paths(state: Any) -> dict[str, str]:

    # Named as the user wrote the attributes (the paths' trailing ".value" dropped).
    leaves = jax.tree_util.tree_leaves(state)
    return {
        name: describe_leaf(leaf).describe() for name, leaf in zip(leaf_names(state), leaves, strict=True)
    }


def _structure_change(name: str, before: dict[str, str], after: dict[str, str]) -> str:
    added = [f"{p} ({after[p]})" for p in sorted(set(after) - set(before))]
    removed = [f"{p} ({before[p]})" for p in sorted(set(before) - set(after))]
    changes = []
    if added:
        changes.append("added " + ", ".join(added))
    if removed:
        changes.append("removed " + ", ".join(removed))
    what = "; ".join(changes) or "a static (non-array) attribute changed"
    return (
        f"{name} changes its own structure when called ({what}). Under nnx.jit a call that changes it "
        "compiles again, and under split/merge the change is lost: create all state in __init__ "
        "(as nnx.Variable attributes) and update it in place, or call the model once before checking "
        "it, so that the state it adds exists"
    )


def warm_up(wrapped: WrappedModel, inputs: Sequence[Any], calls: int) -> tuple[WarmupTimings, Any]:
    """Call ``wrapped(*inputs)`` ``calls`` times, blocking on each whole output, and time each; the
    timings and the last call's output, for the caller to judge."""
    __tracebackhide__ = True
    compiled_before = wrapped.watched.compile_seconds if wrapped.watched else 0.0

    placed = wrapped.place(*inputs)
    output, durations = None, []
    for _ in range(calls):
        output, seconds = timed_call(wrapped.run, *placed)
        durations.append(seconds)
    compiled = (wrapped.watched.compile_seconds if wrapped.watched else 0.0) - compiled_before
    return WarmupTimings(compiled, durations[0], tuple(durations[1:])), output


def counted_compiles(
    wrapped: WrappedModel, timings: WarmupTimings, ahead_of_time: Sequence[CompileEvent]
) -> tuple[int, WarmupTimings]:
    """The compiles of ``wrapped`` and its warm-up timings, counting ``ahead_of_time``: backend compiles
    made for it before its first call (its memory analysed, say)."""
    compiles = len(wrapped.watched.compiles) if wrapped.watched else 0
    if ahead_of_time and wrapped.watched and not any(c.call == 1 for c in wrapped.watched.compiles):
        # The program was compiled ahead of time and the first call reused it from JAX's executable
        # cache: that compile is the model's, so it is counted and timed here.
        compiles += 1
        timings = dataclasses.replace(
            timings, compile_seconds=timings.compile_seconds + sum(e.seconds for e in ahead_of_time)
        )
    return compiles, timings


def compile_watch(*functions: Callable[..., Any], max_compiles: int = 0) -> CompileWatch:
    """A :class:`CompileWatch` over ``functions``: wrapped models are watched with their causes, any
    other callable with JAX's explanation; TypeError for a model that is not compiled or a non-callable."""
    __tracebackhide__ = True
    watched: list[Callable[..., Any]] = []
    for function in functions:
        if isinstance(function, WrappedModel):
            if function.watched is None:
                raise TypeError(
                    f"no_recompile: {function.name} was wrapped without @jaxperf.jit_warm, so it "
                    "is not compiled and there is nothing to watch"
                )
            watched.append(function.watched)
        elif callable(function):
            watched.append(function)
        else:
            raise TypeError(f"no_recompile takes functions to watch, got {function!r}")
    return CompileWatch(*watched, max_compiles=max_compiles)
