"""INT8 quantization of any model's weights, read from what the model computes.

The model is traced once on example inputs (:func:`pytest_jaxperf.core.program.trace`): every matmul and
convolution that multiplies an activation by a weight (a value computed from the parameters alone) is
found together with its exact contracting axes, so one code path serves ``nnx.Linear``,
``nnx.LinearGeneral`` (attention projections), ``nnx.Einsum``, ``nnx.Conv`` and plain functions with a
params pytree, without editing the model.

Each such weight is stored as int8 codes with one float32 scale per output channel (symmetric,
``scale = max|w| / 127``, a zero channel gets scale 1, values clipped to ±127 before the cast), and
the float weight is dropped: parameter bytes fall to about a quarter. At run time the matmul is
``lax.dot_general(x, codes, preferred_element_type=float32) * scale`` (``int8``: activations stay
float, the scale is applied after the matmul) or, ``dynamic``, the activation is quantized too with
one scale per row (per example for a convolution) and the matmul is ``int8 × int8 → int32`` before
both scales are applied (``int8-dynamic``). Convolutions take one dtype for both operands, so the
weight-only variant converts the codes to float inside the compiled program.

Matmuls inside control flow (``lax.scan``, ``while``, ``cond``) are not opened and stay in float;
:attr:`QuantizedModel.left_in_float` lists them with the reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import program as prog
from ..core.call import PLAIN, CallPattern
from ..core.compiles import function_name
from ..core.memory import tree_bytes
from ..core.placement import committed_sharding
from ..core.program import innermost_module

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

INT8_MAX = 127


class QuantizationError(ValueError):
    """The model cannot be quantized as asked (no floating-point weight reaches a matmul)."""


@dataclass(frozen=True)
class QuantizedLayer:
    """One weight stored as int8."""

    name: str
    """The layer, named after the weight's parameter path (``blocks.0.linear1``)."""
    operation: str
    """``dot_general`` or ``conv_general_dilated``."""
    shape: tuple[int, ...]
    scales: int
    """Number of scales (output channels)."""


@dataclass(frozen=True)
class FloatLayer:
    """A matmul the quantizer left in float, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class _Plan:
    """How one traced program runs with int8 weights."""

    program: prog.Program
    layers: dict[int, tuple[str, int]]
    """Matmul position → (layer name, weight operand index)."""
    live: frozenset[int]
    float_leaves: dict[int, str]
    """Parameter leaf index → its name in ``params["float"]``."""


class QuantizedModel:
    """A model whose matmul weights are int8; call it like the original: ``quantized(*inputs)``.

    ``params`` holds everything it reads: ``{layer: {"codes": int8, "scale": float32}}`` for each int8
    weight and ``{path: array}`` for each float parameter still read (biases, norms, embeddings), so
    that parameter paths keep naming layers; ``apply(params, *inputs)`` is the pure function of them,
    for ``jax.jit``.
    """

    def __init__(
        self,
        name: str,
        forward: Callable[..., Any],
        float_params: Any,
        example_inputs: Sequence[Any],
        *,
        dynamic: bool,
        pattern: CallPattern = PLAIN,
    ) -> None:
        self.name = name
        self.dynamic = dynamic
        self.pattern = pattern
        """How the model is called around its inputs: ``forward`` takes the inputs alone."""
        self._forward = forward
        leaves, self._param_tree = jax.tree_util.tree_flatten(float_params)
        self._param_avals = [_abstract(leaf) for leaf in leaves]
        self.float_param_bytes = tree_bytes(leaves)
        self._plans: dict[Any, _Plan] = {}
        self._left: tuple[FloatLayer, ...] = ()
        self._layers: tuple[QuantizedLayer, ...] = ()
        self.params = self._quantize(self._plan_for(example_inputs), leaves)

    # --- public ---------------------------------------------------------------------------------------

    @property
    def layers(self) -> tuple[QuantizedLayer, ...]:
        """The weights stored as int8."""
        return self._layers

    @property
    def left_in_float(self) -> tuple[FloatLayer, ...]:
        """Matmuls that still run on a float weight, each with the reason."""
        return self._left

    @property
    def param_bytes(self) -> int:
        """Bytes of everything the quantized model stores (int8 codes, scales, float leftovers)."""
        return tree_bytes(self.params)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply(self.params, *args, **kwargs)

    def apply(self, params: Any, *args: Any, **kwargs: Any) -> Any:
        """The model's output, called as the model is, with these (quantized) ``params``; traceable by
        ``jax.jit``."""
        inputs = self.pattern.inputs_of(args, kwargs, self.name)
        plan = self._plan_for(inputs)
        leaves: list[Any] = [None] * len(plan.program.param_names)
        for index, path in plan.float_leaves.items():
            leaves[index] = params[path]

        def int8_matmul(position: int, equation: prog.Equation, values: list[Any]) -> Any:
            layer = plan.layers.get(position)
            if layer is None:
                return None
            name, weight_index = layer
            quantized = params[name]
            return int8_matmul_op(
                equation, values, weight_index, quantized["codes"], quantized["scale"], dynamic=self.dynamic
            )

        dead = frozenset(range(len(plan.program.equations))) - plan.live
        input_leaves = jax.tree_util.tree_leaves(tuple(inputs))
        return prog.evaluate(plan.program, leaves, input_leaves, matmul=int8_matmul, skip=dead)

    def __repr__(self) -> str:
        mode = "int8-dynamic" if self.dynamic else "int8"
        return f"<{mode} {self.name}: {len(self._layers)} int8 weights, {len(self._left)} left in float>"

    # --- planning -------------------------------------------------------------------------------------

    def _plan_for(self, inputs: Sequence[Any]) -> _Plan:
        input_leaves = jax.tree_util.tree_leaves(tuple(inputs))
        key = tuple((np.shape(leaf), str(jnp.result_type(leaf))) for leaf in input_leaves)
        if key in self._plans:
            return self._plans[key]
        # Traced abstractly: the weights' values are not needed to know how each one is used.
        params = jax.tree_util.tree_unflatten(self._param_tree, self._param_avals)
        abstract_inputs = jax.tree_util.tree_map(_abstract, tuple(inputs))
        program = prog.trace(self._forward, params, abstract_inputs)
        weights = program.weights()
        layers: dict[int, tuple[str, int]] = {}
        left: list[FloatLayer] = []
        seen: dict[str, int] = {}
        for position, equation in program.matmuls():
            slot, reason = _weight_slot(program, equation, weights)
            if slot is None:
                if reason:
                    left.append(FloatLayer(reason[0], reason[1]))
                continue
            operand = equation.inputs[slot]
            assert isinstance(operand, int)
            base = program.weight_name(weights[operand])
            seen[base] = seen.get(base, 0) + 1
            layers[position] = (base if seen[base] == 1 else f"{base}#{seen[base]}", slot)
        for hidden in program.hidden_matmuls:
            left.append(
                FloatLayer(
                    innermost_module(hidden.scope) or hidden.scope or "?",
                    f"inside {hidden.container}, which the quantizer does not open",
                )
            )
        dropped = frozenset((position, slot) for position, (_, slot) in layers.items())
        live = prog.live_equations(program, dropped)
        float_leaves = {
            index: program.param_names[index] for index in prog.needed_params(program, live, dropped)
        }
        # A weight also read as float elsewhere keeps its path for that; its int8 form gets another key.
        taken = set(float_leaves.values())
        layers = {
            position: (name + ".int8" if name in taken else name, slot)
            for position, (name, slot) in layers.items()
        }
        plan = _Plan(program, layers, live, float_leaves)
        if self._plans:
            known = {name for name, _ in next(iter(self._plans.values())).layers.values()}
            if {name for name, _ in layers.values()} != known:
                raise QuantizationError(
                    f"{self.name}: for inputs {key} the model multiplies different weights than for the "
                    "inputs it was quantized with; quantize it again for these inputs"
                )
        else:
            self._left = tuple(left)
        self._plans[key] = plan
        return plan

    def _quantize(self, plan: _Plan, leaves: list[Any]) -> dict[str, Any]:
        if not plan.layers:
            if self._left:  # weight matmuls there are, where the quantizer cannot reach them
                reasons = "; ".join(f"{f.name}: {f.reason}" for f in self._left)
                raise QuantizationError(
                    f"{self.name}'s weight matmuls are all out of the built-in int8 quantizer's reach "
                    f"({reasons}): nothing it can quantize; pass your own int8 model with convert="
                )
            raise QuantizationError(
                f"{self.name} has no matmul or convolution taking a floating-point weight: nothing to "
                "quantize to int8"
            )
        wanted = {plan.program.equations[p].inputs[slot] for p, (_, slot) in plan.layers.items()}
        values = _weight_values(plan.program, leaves, {w for w in wanted if isinstance(w, int)})
        int8: dict[str, Any] = {}
        layers = []
        for position, (name, slot) in plan.layers.items():
            equation = plan.program.equations[position]
            operand = equation.inputs[slot]
            assert isinstance(operand, int)
            weight = jnp.asarray(values[operand], jnp.float32)
            codes, scale = quantize_symmetric(weight, scale_axes(equation, slot, weight.ndim))
            int8[name] = {"codes": codes, "scale": scale}
            layers.append(QuantizedLayer(name, equation.name, weight.shape, int(scale.size)))
        self._layers = tuple(layers)
        floats = {path: leaves[index] for index, path in plan.float_leaves.items()}
        return {**floats, **int8}


def quantize_int8(
    model: Any,
    *example_inputs: Any,
    params: Any = None,
    dynamic: bool = False,
    pattern: CallPattern = PLAIN,
) -> QuantizedModel:
    """``model`` with every matmul weight stored as int8 (per output channel), as a :class:`QuantizedModel`.

    ``model`` is a ``flax.nnx`` module or a function ``fn(params, *inputs)``; the example inputs'
    shapes show how each weight is used (which axes a matmul contracts). ``dynamic=True`` also
    quantizes activations (per row, int32 accumulation). With ``pattern`` the model is called as its
    example was (keywords, static arguments), ``example_inputs`` being its inputs alone. Raises
    :class:`QuantizationError` when no floating-point weight reaches a matmul.
    """
    from flax import nnx

    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)

        def forward(state: Any, *inputs: Any) -> Any:
            live = nnx.merge(graphdef, state)
            # Operations keep their module's name: the audit and the diagnosis name layers by it.
            with prog.module_scopes(live):
                return pattern.call(live, inputs)

        return QuantizedModel(
            type(model).__name__, forward, state, example_inputs, dynamic=dynamic, pattern=pattern
        )

    def with_params(params: Any, *inputs: Any) -> Any:
        return pattern.call(model, inputs, params)

    def without_params(params: Any, *inputs: Any) -> Any:
        return pattern.call(model, inputs)

    return QuantizedModel(
        function_name(model),
        without_params if params is None else with_params,
        () if params is None else params,
        example_inputs,
        dynamic=dynamic,
        pattern=pattern,
    )


def quantize_symmetric(values: Any, reduce_axes: tuple[int, ...]) -> tuple[Any, Any]:
    """int8 codes and float32 scales (``max|x| / 127`` over ``reduce_axes``, kept as size-1 axes).

    One function for the weights (quantized once, ahead of time) and the activations of ``int8-dynamic``
    (inside the compiled program). An all-zero slice gets scale 1 (no 0/0); values are clipped before
    the cast, which would otherwise saturate on XLA and wrap in NumPy.
    """
    amax = jnp.max(jnp.abs(values), axis=reduce_axes, keepdims=True)
    scale = jnp.where(amax > 0, amax / INT8_MAX, 1.0).astype(jnp.float32)
    codes = jnp.clip(jnp.round(values / scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return codes, scale


def scale_axes(equation: prog.Equation, slot: int, ndim: int) -> tuple[int, ...]:
    """The axes one scale spans for operand ``slot`` of a matmul: its contracting axes (per output channel
    for a weight, per row for an activation); for a convolution all but the kernel's output-feature axis
    (weight) or the batch axis (activation: one scale per example)."""
    if equation.name == "dot_general":
        contracting, _ = _dot_axes(equation)
        return tuple(contracting[slot])
    numbers = equation.params["dimension_numbers"]
    kept = numbers.rhs_spec[0] if slot == 1 else numbers.lhs_spec[0]
    return tuple(a for a in range(ndim) if a != kept)


def int8_matmul_op(
    equation: prog.Equation,
    values: list[Any],
    weight_index: int,
    codes: Any,
    scale: Any,
    *,
    dynamic: bool,
) -> Any:
    """The matmul of ``equation`` with its weight as int8 codes, scales applied after (its epilogue)."""
    activation = values[1 - weight_index]
    out_dtype = activation.dtype
    params = dict(equation.params)
    # The float weight itself is not read (it was dropped): its rank is the codes'.
    ndims = (codes.ndim, activation.ndim) if weight_index == 0 else (activation.ndim, codes.ndim)
    weight_scale = _to_output_layout(equation, weight_index, scale, ndims)
    if dynamic:
        axes = scale_axes(equation, 1 - weight_index, activation.ndim)
        quantized, act_scale = quantize_symmetric(activation, axes)
        operands = [quantized, codes] if weight_index == 1 else [codes, quantized]
        params["preferred_element_type"] = jnp.int32
        (accumulated,) = _with_params(equation, params).apply(*operands)
        activation_scale = _to_output_layout(equation, 1 - weight_index, act_scale, ndims)
        return (accumulated.astype(jnp.float32) * activation_scale * weight_scale).astype(out_dtype)
    stored = codes
    if equation.name == "conv_general_dilated":
        stored = codes.astype(out_dtype)  # convolutions take one dtype for both operands
    operands = [activation, stored] if weight_index == 1 else [stored, activation]
    params["preferred_element_type"] = out_dtype
    (product,) = _with_params(equation, params).apply(*operands)
    return (product * weight_scale).astype(out_dtype)


def _with_params(equation: prog.Equation, params: dict[str, Any]) -> prog.Equation:
    return dataclasses.replace(equation, params=params)


def _dot_axes(equation: prog.Equation) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    (lhs_c, rhs_c), (lhs_b, rhs_b) = equation.params["dimension_numbers"]
    return (tuple(lhs_c), tuple(rhs_c)), (tuple(lhs_b), tuple(rhs_b))


def _to_output_layout(equation: prog.Equation, slot: int, scale: Any, ndims: tuple[int, int]) -> Any:
    """A scale kept in its operand's layout (size 1 on reduced axes), broadcastable to the result.

    ``dot_general`` results are laid out as (batch axes, lhs free axes, rhs free axes); a convolution's
    scale is per output feature (weight) or per example (activation).
    """
    if equation.name == "conv_general_dilated":
        numbers = equation.params["dimension_numbers"]
        out_ndim = len(numbers.out_spec)
        shape = [1] * out_ndim
        axis = numbers.out_spec[1] if slot == 1 else numbers.out_spec[0]
        shape[axis] = scale.size
        return jnp.reshape(scale, shape)
    (contracting, batch) = _dot_axes(equation)
    ndim = scale.ndim
    own_batch = list(batch[slot])
    free = [a for a in range(ndim) if a not in contracting[slot] and a not in own_batch]
    moved = jnp.transpose(scale, own_batch + free + list(contracting[slot]))
    sizes = [scale.shape[a] for a in own_batch + free]
    other = 1 - slot
    other_free = ndims[other] - len(contracting[other]) - len(batch[other])
    batch_sizes, free_sizes = sizes[: len(own_batch)], sizes[len(own_batch) :]
    if slot == 0:
        shape = batch_sizes + free_sizes + [1] * other_free
    else:
        shape = batch_sizes + [1] * other_free + free_sizes
    return jnp.reshape(moved, shape)


def _weight_slot(
    program: prog.Program, equation: prog.Equation, weights: dict[int, frozenset[int]]
) -> tuple[int | None, tuple[str, str] | None]:
    """Which operand of a matmul is the weight to quantize, or why none is (None when not a layer)."""
    known = [isinstance(o, prog.Const) or o in weights for o in equation.inputs]
    if all(known) or not any(known):
        return None, None  # weight × weight (constant-folded) or activation × activation (attention)
    slot = known.index(True)
    operand = equation.inputs[slot]
    if isinstance(operand, prog.Const) or not weights[operand]:
        return None, None  # a constant built in the program, no parameter behind it
    name = program.weight_name(weights[operand])
    aval = program.avals[operand]
    if not jnp.issubdtype(aval.dtype, jnp.floating):
        return None, (name, f"weight is {aval.dtype}, not floating point")
    if equation.name == "conv_general_dilated":
        if slot != 1:
            return None, (name, "a convolution whose weight is its first operand")
        if equation.params.get("batch_group_count", 1) != 1:
            return None, (name, "a convolution with batch_group_count > 1")
    return slot, None


def _weight_values(program: prog.Program, leaves: list[Any], wanted: set[int]) -> dict[int, Any]:
    """The concrete values of the ``wanted`` weight operands: the parameter-only part of the program, run."""
    weights = program.weights()
    parameter_only = [
        position
        for position, equation in enumerate(program.equations)
        if all(out in weights for out in equation.outputs)
    ]
    values = prog.execute(program, dict(enumerate(leaves)), parameter_only)
    return {w: values[w] for w in wanted}


def _abstract(leaf: Any) -> Any:
    """A leaf's shape and dtype, with the sharding it is committed to: a model that reads
    ``jax.typeof(x).sharding`` under an ambient mesh traces as it runs."""
    sharding = committed_sharding(leaf)
    return jax.ShapeDtypeStruct(np.shape(leaf), jnp.result_type(leaf), sharding=sharding)  # type: ignore[no-untyped-call]
