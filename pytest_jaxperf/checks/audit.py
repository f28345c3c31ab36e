"""The precision audit: did the optimization happen? No thresholds, only what the program computes.

Every matmul and convolution of the variant's program (:mod:`pytest_jaxperf.core.program`) is classified by
its operands' dtypes and, when one operand is a weight, by what the weight is: a float parameter, int8
codes reaching the matmul unchanged (converted at most, the scale applied after the matmul), or int8
codes multiplied back to float before it ("dequantized"). Then:

* ``bfloat16`` / ``float16``: every matmul takes both operands in that dtype. Casting only the input
  (JAX promotes ``float16 @ float32`` to float32) leaves float32 matmuls, which are named.
* ``int8``: every matmul on a weight reads int8 codes; activations may stay float; matmuls between two
  activations (attention scores) are reported but not required to be int8.
* ``int8-dynamic``: every matmul on a weight is ``int8 × int8`` accumulated in int32.

The compiled program is read too: the result dtypes of its dots and convolutions are reported, since a
backend may compute a bfloat16 matmul in float32 (XLA on the CPU does); that is the backend's choice,
reported, not failed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..core.program import LAYOUT_OPS, Const, innermost_module
from ..records import AuditRecord

if TYPE_CHECKING:
    from ..core.program import Program

#: What a weight operand is.
FLOAT_WEIGHT, INT8_WEIGHT, DEQUANTIZED = "float", "int8", "dequantized"
_SHORT = {
    "float32": "f32",
    "bfloat16": "bf16",
    "float16": "f16",
    "int8": "s8",
    "int32": "s32",
    "float64": "f64",
}


@dataclass(frozen=True)
class Matmul:
    """One matmul or convolution as it runs."""

    layer: str
    """The weight's layer (``blocks.0.linear1``), or the module it ran in for activation × activation."""
    operation: str
    operands: tuple[str, str]
    result: str
    weight: str | None
    """``float``, ``int8``, ``dequantized``; None when both operands are activations."""

    @property
    def converted_int8(self) -> bool:
        """An int8 weight converted to float inside the program, its scale applied after the matmul."""
        return self.weight == INT8_WEIGHT and "int8" not in self.operands


@dataclass(frozen=True)
class Audit:
    """What the audit found for one variant."""

    dtype: str
    matmuls: tuple[Matmul, ...]
    problems: tuple[tuple[str, tuple[Matmul, ...]], ...] = ()
    """(what is wrong, the matmuls it is wrong for), one entry per kind of problem."""
    hidden: tuple[str, ...] = ()
    """Matmuls inside control flow: their dtypes are judged for bf16/fp16; for int8 whether they
    multiply a weight is not known, so they are listed, not judged."""
    compiled: dict[str, int] = field(default_factory=dict)
    """Result dtype → count of dots/convolutions in the compiled program (empty when not compiled)."""
    apart: tuple[tuple[Matmul, str], ...] = ()
    """Matmuls that are not the model's compute, listed and not judged, each with why: those that derive
    from no input and no weight (rotary tables from positions made by iota), and under bfloat16/float16
    those on integers (index arithmetic has no float precision to lower)."""

    @property
    def passed(self) -> bool:
        return not self.problems

    def in_low_precision(self) -> int:
        """How many matmuls take an operand in a float type narrower than float32 (bfloat16, float16)."""
        return sum(any(o in ("bfloat16", "float16") for o in m.operands) for m in self.matmuls)

    def summary(self) -> str:
        """``16 matmuls: 14 bfloat16×bfloat16, 2 float32×float32``."""
        kinds = Counter(
            "×".join(m.operands) + (" (int8 weight converted)" if m.converted_int8 else "")
            for m in self.matmuls
        )
        text = f"{len(self.matmuls)} matmuls"
        text += (": " + ", ".join(f"{n} {k}" for k, n in kinds.most_common())) if kinds else ""
        if self.hidden and self.dtype not in ("bfloat16", "float16"):
            text += f"; {len(self.hidden)} inside control flow, weights unknown: {', '.join(self.hidden)}"
        if self.apart:
            reasons = ", ".join(f"{n} {why}" for why, n in Counter(why for _, why in self.apart).items())
            text += f"; {len(self.apart)} apart, not judged ({reasons}): "
            text += ", ".join(dict.fromkeys(m.layer for m, _ in self.apart))
        if self.compiled:
            text += "; compiled: " + ", ".join(f"{n} {k}" for k, n in sorted(self.compiled.items()))
        return text

    def failure(self) -> str:
        """``2 of 16 matmuls run in float32: decoder.linear2, head`` for each problem found."""
        return "; ".join(
            f"{len(found)} of {len(self.matmuls)} matmuls {what}: {', '.join(_names(found))}"
            for what, found in self.problems
        )

    def to_dict(self) -> AuditRecord:
        return AuditRecord(
            dtype=self.dtype,
            matmuls=[asdict(m) for m in self.matmuls],
            problems={what: _names(found) for what, found in self.problems},
            hidden=list(self.hidden),
            apart=[f"{m.layer} ({why})" for m, why in self.apart],
            compiled=dict(self.compiled),
            summary=self.summary(),
        )


def _names(matmuls: tuple[Matmul, ...]) -> list[str]:
    return list(dict.fromkeys(m.layer for m in matmuls))


def weight_kinds(program: Program, weights: dict[int, frozenset[int]]) -> dict[int, str]:
    """For every value computed from the parameters alone (``weights``, :meth:`Program.weights`): what
    kind of weight it is."""
    kinds: dict[int, str] = {}
    for index in range(len(program.param_names)):
        aval = program.avals[index]
        kinds[index] = INT8_WEIGHT if str(aval.dtype) in ("int8", "uint8", "int4") else FLOAT_WEIGHT
    for equation in program.equations:
        if not all(out in weights for out in equation.outputs):
            continue
        inputs = [kinds.get(o, FLOAT_WEIGHT) for o in equation.inputs if not isinstance(o, Const)]
        if equation.name in LAYOUT_OPS and len(inputs) == 1:
            kind = inputs[0]
        elif any(k != FLOAT_WEIGHT for k in inputs):
            kind = DEQUANTIZED
        else:
            kind = FLOAT_WEIGHT
        for out in equation.outputs:
            kinds[out] = kind
    return kinds


def audit(program: Program, dtype: str, compiled_hlo: str = "") -> Audit:
    """Classify every matmul of ``program`` and judge it against the variant's ``dtype``."""
    weights = program.weights()
    kinds = weight_kinds(program, weights)
    matmuls: list[Matmul] = []
    apart: list[tuple[Matmul, str]] = []
    low_float = dtype in ("bfloat16", "float16")
    for position, equation in program.matmuls():
        slots = [o for o in equation.inputs if not isinstance(o, Const) and o in weights and weights[o]]
        weight = slots[0] if len(slots) == 1 and len(equation.inputs) == 2 else None
        if weight is not None:
            layer = program.weight_name(weights[weight])
        else:
            layer = innermost_module(equation.scope) or equation.scope or f"#{position}"
        operands = tuple(
            str(o.value.dtype) if isinstance(o, Const) else str(program.avals[o].dtype)
            for o in equation.inputs
        )
        matmul = Matmul(
            layer=layer,
            operation=equation.name,
            operands=(operands[0], operands[1]),
            result=str(program.avals[equation.outputs[0]].dtype),
            weight=kinds.get(weight) if weight is not None else None,
        )
        # A value in ``weights`` with no source parameter was computed from constants alone.
        if all(isinstance(o, Const) or weights.get(o) == frozenset() for o in equation.inputs):
            apart.append((matmul, "input-independent"))
        elif low_float and any(_is_integer(d) for d in operands):
            apart.append((matmul, "on integers"))
        else:
            matmuls.append(matmul)
    hidden = [
        Matmul(
            layer=f"{innermost_module(h.scope) or h.scope or '?'} (inside {h.container})",
            operation="dot_general",
            operands=h.operands,
            result=h.result,
            weight=None,
        )
        for h in program.hidden_matmuls
    ]
    # Inside control flow operand dtypes are known (bf16/fp16 are judged on them), the weights are not.
    judged = matmuls + hidden if dtype in ("bfloat16", "float16") else matmuls
    return Audit(
        dtype=dtype,
        matmuls=tuple(judged),
        problems=tuple((what, found) for what, found in _problems(dtype, judged) if found),
        hidden=tuple(m.layer for m in hidden),
        compiled=compiled_matmul_types(compiled_hlo),
        apart=tuple(apart),
    )


def _is_integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _problems(dtype: str, matmuls: list[Matmul]) -> list[tuple[str, tuple[Matmul, ...]]]:
    on_weights = [m for m in matmuls if m.weight is not None]
    if dtype in ("bfloat16", "float16"):
        by_dtype: dict[str, list[Matmul]] = {}
        for m in matmuls:
            for operand in m.operands:
                if operand != dtype:
                    by_dtype.setdefault(operand, []).append(m)
                    break
        return [(f"run in {wrong}", tuple(found)) for wrong, found in by_dtype.items()]
    if dtype == "int8":
        return [
            ("run on a float weight", tuple(m for m in on_weights if m.weight == FLOAT_WEIGHT)),
            (
                "dequantize the weight to float before the matmul (fake quantization)",
                tuple(m for m in on_weights if m.weight == DEQUANTIZED),
            ),
        ]
    if dtype == "int8-dynamic":
        return [
            ("run on a float weight", tuple(m for m in on_weights if m.weight == FLOAT_WEIGHT)),
            (
                "dequantize the weight to float before a float matmul",
                tuple(m for m in on_weights if m.weight == DEQUANTIZED),
            ),
            (
                "take float activations instead of int8",
                tuple(
                    m
                    for m in on_weights
                    if m.weight == INT8_WEIGHT and (m.operands != ("int8", "int8") or m.result != "int32")
                ),
            ),
        ]
    return []


_COMPILED_MATMUL = re.compile(
    # "= f32[2,3]{1,0} dot(", or for a library call returning a tuple:
    # "= (bf16[8,8]{1,0}, s8[64]{0}) custom-call("
    r"=\s*\(?(\w+)\[[^\]]*\]\S*(?:[^()\n=]*\))?\s+(dot|convolution|custom-call)\((?P<rest>[^\n]*)",
    re.MULTILINE,
)


def compiled_matmul_types(hlo: str) -> dict[str, int]:
    """Result dtype → count of dots and convolutions in compiled HLO (cuBLAS/cuDNN calls included)."""
    counts: Counter[str] = Counter()
    for match in _COMPILED_MATMUL.finditer(hlo):
        dtype, opcode, rest = match.group(1), match.group(2), match.group("rest")
        if opcode == "custom-call" and not re.search(r"gemm|matmul|conv|dot", rest, re.IGNORECASE):
            continue
        counts[_SHORT_INVERSE.get(dtype, dtype)] += 1
    return dict(counts)


_SHORT_INVERSE = {short: name for name, short in _SHORT.items()}
