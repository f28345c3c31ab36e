"""An optimized HLO module read as a person reads it: the kernels it runs (each fusion with the ops it
fuses, each op left unfused), the dtypes of its dots and convolutions, its converts, transposes, copies,
custom calls and collectives; and two such modules compared, the largest differences first.

Read from the text XLA prints (``compiled.as_text()``), which every backend gives: the same reading
serves the CPU's thunks and the GPU's kernels.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from ..records import ProgramChangeRecord
from ..units import format_bytes

#: An instruction line: ``[ROOT] %name = type opcode(operands), attributes``; the type may be a tuple.
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+) = (?P<type>.+?) (?P<opcode>[a-z][\w\-]*)\((?P<rest>.*)$"
)
#: A computation's first line: ``[ENTRY] %name (parameters) -> type {``.
_COMPUTATION = re.compile(r"^(?P<entry>ENTRY\s+)?%?(?P<name>[\w.\-]+) \(.*\{\s*$")
_ARRAY = re.compile(r"(?P<dtype>[a-z]+\d*(?:e\d+m\d+\w*)?)\[(?P<dims>[\d,]*)\]")
_OPERAND = re.compile(r"%([\w.\-]+)")
#: A called computation, or a braced list of them (``branch_computations={%a, %b}``).
_CALLED = re.compile(
    r"\b(calls|to_apply|body|condition|branch_computations|called_computations)=(\{[^}]*\}|%?[\w.\-]+)"
)
_CUSTOM_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_FUSION_KIND = re.compile(r"\bkind=(k\w+)")
#: A custom fusion's kind: the CPU's ``fusion_config`` (``__ynn_fusion``), the GPU's
#: ``fusion_backend_config`` (``__triton_gemm``, ``__cudnn$fusion``).
_CUSTOM_FUSION_KIND = re.compile(r'"(?:fusion_config|fusion_backend_config)":\{"kind":"_*([^"]+)"')

_BITS = {
    "pred": 8, "s4": 4, "u4": 4, "s8": 8, "u8": 8, "s16": 16, "u16": 16, "s32": 32, "u32": 32, "s64": 64,
    "u64": 64, "f16": 16, "bf16": 16, "f32": 32, "f64": 64, "c64": 64, "c128": 128,
}  # fmt: skip
#: Ops that move or name data without computing: left out of a fusion's description.
_PLUMBING = frozenset({
    "parameter", "constant", "broadcast", "bitcast", "reshape", "tuple", "get-tuple-element", "iota", "slice",
    "bitcast-convert", "copy-start", "copy-done", "after-all", "partition-id", "replica-id",
})  # fmt: skip
#: Instructions that launch no work of their own at the top level.
_NO_KERNEL = frozenset({
    "parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all", "call", "async-start",
    "async-update", "async-done",
})  # fmt: skip
#: What runs other computations: their ops are the kernels (a GPU's command buffer is a ``call``, an
#: asynchronous op an ``async-start``); the while loop and the conditional are kernels too, but their time
#: is their body's, never an op's own.
_CONTAINERS = frozenset({"while", "conditional", "call", "async-start"})
#: The roles under which each container calls the computations that run kernels.
_RUNS = {
    "while": ("body", "condition"),
    "conditional": ("branch_computations",),
    "call": ("to_apply",),
    "async-start": ("calls", "called_computations"),
}
_COLLECTIVES = frozenset({
    "all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute", "collective-broadcast",
    "all-reduce-start", "all-gather-start", "collective-permute-start", "ragged-all-to-all",
})  # fmt: skip
_FUSION_WORDS = {"kLoop": "loop", "kInput": "input", "kOutput": "output", "kCustom": "custom"}
#: Ops named in a fusion's description at most; more are counted.
_DESCRIBED_OPS = 5


def array_bytes(hlo_type: str) -> int:
    """The bytes of an HLO type (a tuple's elements summed): ``f32[64,256]{1,0}`` → 65536."""
    total = 0
    for match in _ARRAY.finditer(hlo_type):
        dtype = match.group("dtype")
        # The narrow float formats (f8e4m3fn, f4e2m1fn …) carry their width in their name.
        bits = _BITS.get(dtype) or (int(dtype[1]) if re.fullmatch(r"f\de\d+m\d+\w*", dtype) else None)
        if bits is None:
            continue
        dims = [int(d) for d in match.group("dims").split(",") if d]
        total += (math.prod(dims) * bits + 7) // 8
    return total


def short_type(hlo_type: str) -> str:
    """An HLO type without its layouts: ``f32[64,256]{1,0}`` → ``f32[64,256]``."""
    return re.sub(r"\{[^{}]*\}", "", hlo_type).strip()


@dataclass(frozen=True)
class Instruction:
    name: str
    opcode: str
    type: str
    rest: str
    """The operands and attributes, as printed."""


@dataclass(frozen=True)
class Kernel:
    """What the program runs at its top level: a fusion, or an op left unfused."""

    name: str
    description: str
    """``loop fusion (add+multiply+tanh) f32[64,256]`` or ``transpose f32[256,784]``: the same op in two
    programs gets the same description, whatever XLA named it."""
    bytes: int
    """Its output's bytes."""
    container: bool = False
    """A while loop or a conditional: its time in a trace spans its body's ops, counted there."""


@dataclass(frozen=True)
class Inventory:
    """An optimized HLO module's kernels and the features a regression shows in."""

    kernels: tuple[Kernel, ...]
    features: dict[str, Counter[str]] = field(default_factory=dict)
    """Per kind (``dots``, ``converts`` …), how many of each description."""
    feature_bytes: dict[str, int] = field(default_factory=dict)
    """The bytes one instance of each feature description touches."""
    counts: dict[str, int] = field(default_factory=dict)
    """Op and fusion counts by kind, the whole module's."""

    def kernel_named(self, name: str) -> Kernel | None:
        return next((kernel for kernel in self.kernels if kernel.name == name), None)


def _computations(text: str) -> tuple[dict[str, list[Instruction]], str]:
    """The module's computations by name, and the entry's name."""
    computations: dict[str, list[Instruction]] = {}
    entry = ""
    current: list[Instruction] | None = None
    for line in text.splitlines():
        header = _COMPUTATION.match(line)
        if header and not line.startswith(" "):
            current = computations.setdefault(header.group("name"), [])
            if header.group("entry"):
                entry = header.group("name")
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None:
            continue
        match = _INSTRUCTION.match(line)
        if match:
            current.append(Instruction(match["name"], match["opcode"], match["type"], match["rest"]))
    return computations, entry


def _called(instruction: Instruction) -> dict[str, list[str]]:
    called: dict[str, list[str]] = {}
    for role, names in _CALLED.findall(instruction.rest):
        listed = (name.strip().lstrip("%") for name in names.strip("{}").split(","))
        called.setdefault(role, []).extend(name for name in listed if name)
    return called


class _Reader:
    """Walks a module's computations once, noting features and op counts as it goes."""

    def __init__(self, computations: dict[str, list[Instruction]]) -> None:
        self.computations = computations
        self.features: dict[str, Counter[str]] = {}
        self.feature_bytes: dict[str, int] = {}
        self.counts: Counter[str] = Counter()

    def note(self, kind: str, description: str, touched: int) -> None:
        self.features.setdefault(kind, Counter())[description] += 1
        self.feature_bytes[description] = max(self.feature_bytes.get(description, 0), touched)

    def instruction(self, instruction: Instruction, types: dict[str, str]) -> None:
        """Count one instruction and note what it shows: a dot's dtypes, a convert, a transpose…"""
        opcode = instruction.opcode
        self.counts[opcode] += 1
        operands = [types[o] for o in _OPERAND.findall(instruction.rest.split("),", 1)[0]) if o in types]
        out = short_type(instruction.type)
        if opcode in ("dot", "convolution") and len(operands) >= 2:
            signature = " × ".join(short_type(o) for o in operands[:2])
            touched = sum(array_bytes(o) for o in operands[:2]) + array_bytes(instruction.type)
            self.note("dots" if opcode == "dot" else "convolutions", f"{opcode} {signature} → {out}", touched)
        elif opcode == "convert" and operands:
            target = _ARRAY.search(instruction.type)
            if target:
                touched = array_bytes(operands[0]) + array_bytes(instruction.type)
                self.note("converts", f"convert {short_type(operands[0])} → {target.group('dtype')}", touched)
        elif opcode in ("transpose", "copy"):
            kind = "transposes" if opcode == "transpose" else "copies"
            self.note(kind, f"{opcode} {out}", 2 * array_bytes(instruction.type))
        elif opcode == "custom-call":
            target_name = _CUSTOM_TARGET.search(instruction.rest)
            called = target_name.group(1) if target_name else "?"
            self.note("custom calls", f"custom call {called} → {out}", array_bytes(instruction.type))
        elif opcode in _COLLECTIVES:
            self.note("collectives", f"{opcode} {out}", array_bytes(instruction.type))

    def fused(self, fusion: Instruction, seen: frozenset[str]) -> list[str]:
        """The computing ops a fusion runs, in order (nested fusions opened), their features noted."""
        ops: list[str] = []
        for name in _called(fusion).get("calls", []):
            if name in seen:
                continue
            body = self.computations.get(name, [])
            types = {i.name: i.type for i in body}
            for instruction in body:
                self.instruction(instruction, types)
                if instruction.opcode == "fusion":
                    ops.extend(self.fused(instruction, seen | {name}))
                elif instruction.opcode not in _PLUMBING:
                    ops.append(instruction.opcode)
        return ops


def inventory(text: str) -> Inventory:
    """The kernels and features of optimized HLO text (``compiled.as_text()``), in program order: the
    entry's, a container's (a loop, a conditional's branches, a command buffer, an asynchronous op) right
    after it. Fused computations are read as their fusion's contents, reducers not at all."""
    computations, entry = _computations(text)
    reader = _Reader(computations)
    kernels: list[Kernel] = []
    walked: set[str] = set()

    def walk(computation: str) -> None:
        if computation in walked or computation not in computations:
            return
        walked.add(computation)
        types = {i.name: i.type for i in computations[computation]}
        for instruction in computations[computation]:
            reader.instruction(instruction, types)
            if instruction.opcode not in _NO_KERNEL:
                kernels.append(_kernel(instruction, reader))
            called = _called(instruction)
            for role in _RUNS.get(instruction.opcode, ()):
                for name in called.get(role, []):
                    walk(name)

    walk(entry)
    counts = dict(reader.counts)
    counts["kernels"] = len(kernels)
    return Inventory(tuple(kernels), reader.features, reader.feature_bytes, counts)


def _kernel(instruction: Instruction, reader: _Reader) -> Kernel:
    if instruction.opcode == "fusion":
        kind = _fusion_kind(instruction)
        reader.counts[f"{kind} fusions"] += 1
        ops = reader.fused(instruction, frozenset())
        description = f"{kind} fusion ({_ops_text(ops)}) {short_type(instruction.type)}"
    else:
        description = f"{instruction.opcode} {short_type(instruction.type)}"
    return Kernel(
        instruction.name,
        description,
        array_bytes(instruction.type),
        container=instruction.opcode in _CONTAINERS,
    )


def _fusion_kind(fusion: Instruction) -> str:
    """``loop``, ``input``, ``output``, or a custom fusion's own kind (``ynn``, ``triton_gemm``)."""
    custom = _CUSTOM_FUSION_KIND.search(fusion.rest)
    if custom:
        return custom.group(1).removesuffix("_fusion").removesuffix("$fusion")
    kind = _FUSION_KIND.search(fusion.rest)
    return _FUSION_WORDS.get(kind.group(1), kind.group(1)) if kind else "fusion"


def _ops_text(ops: list[str]) -> str:
    """``add+dot+tanh``: each op once, in alphabetical order (XLA may order the same fusion's ops
    differently in two programs); beyond a few, how many more."""
    distinct = sorted(set(ops))
    shown = "+".join(distinct[:_DESCRIBED_OPS])
    more = len(distinct) - _DESCRIBED_OPS
    return f"{shown}+{more} more" if more > 0 else shown or "no computing op"


#: Between changes of equal bytes, the one that says more first: a transpose usually comes with the copy
#: that lays it out, and a dot's dtype with the converts that feed it.
_TIE_ORDER = (
    "dots", "convolutions", "transposes", "converts", "custom calls", "collectives", "kernels", "copies",
    "parameter bytes", "temporary bytes",
)  # fmt: skip
_COMPUTE = ("dots", "convolutions")
#: Added or gone kernels named in the kernels' line at most; more are counted.
_NAMED_KERNELS = 3


@dataclass(frozen=True)
class ProgramChange:
    """One difference between two optimized programs."""

    kind: str
    description: str
    baseline: int
    current: int
    bytes: int

    def to_dict(self) -> ProgramChangeRecord:
        return ProgramChangeRecord(
            kind=self.kind,
            description=self.description,
            baseline=self.baseline,
            current=self.current,
            bytes=self.bytes,
        )


def program_changes(
    baseline: Inventory,
    current: Inventory,
    *,
    baseline_bytes: dict[str, int] | None = None,
    current_bytes: dict[str, int] | None = None,
) -> list[ProgramChange]:
    """What differs between two programs, dots and convolutions first, then the most bytes touched: the
    kernels added and gone (one change), each dot, convolution, convert, transpose, copy, custom call and
    collective whose count differs, and the parameter and temporary bytes (``*_bytes``: ``parameter
    bytes``/``temporary bytes`` of each compiled program, where known)."""
    changes: list[ProgramChange] = []
    kernels = _kernel_change(baseline, current)
    if kernels is not None:
        changes.append(kernels)
    for kind in sorted(set(baseline.features) | set(current.features)):
        theirs = baseline.features.get(kind, Counter())
        ours = current.features.get(kind, Counter())
        for description in sorted(set(theirs) | set(ours)):
            before, after = theirs[description], ours[description]
            if before == after:
                continue
            each = current.feature_bytes.get(description) or baseline.feature_bytes.get(description, 0)
            changes.append(
                ProgramChange(
                    kind, f"{description}: {before} → {after}", before, after, abs(after - before) * each
                )
            )
    for kind, theirs_bytes in (baseline_bytes or {}).items():
        ours_bytes = (current_bytes or {}).get(kind)
        if ours_bytes is None or ours_bytes == theirs_bytes:
            continue
        changes.append(
            ProgramChange(
                kind,
                f"{kind}: {format_bytes(theirs_bytes)} → {format_bytes(ours_bytes)}",
                theirs_bytes,
                ours_bytes,
                abs(ours_bytes - theirs_bytes),
            )
        )
    # A matmul or convolution added, gone or computed in another dtype first: it is where an inference
    # program spends its time, and the converts around it are its consequence.
    return sorted(
        changes,
        key=lambda change: (change.kind not in _COMPUTE, -change.bytes, _TIE_ORDER.index(change.kind)),
    )


def _kernel_change(baseline: Inventory, current: Inventory) -> ProgramChange | None:
    theirs = Counter(kernel.description for kernel in baseline.kernels)
    ours = Counter(kernel.description for kernel in current.kernels)
    added = list((ours - theirs).elements())
    gone = list((theirs - ours).elements())
    if not added and not gone:
        return None
    size = {kernel.description: kernel.bytes for kernel in (*baseline.kernels, *current.kernels)}
    named = {kernel.description: kernel.name for kernel in current.kernels}
    parts = []
    if added:
        parts.append("added " + _listed([f"{named[d]} ({d})" for d in added]))
    if gone:
        parts.append("gone " + _listed(gone))
    return ProgramChange(
        "kernels",
        f"kernels {len(baseline.kernels)} → {len(current.kernels)}: {'; '.join(parts)}",
        len(baseline.kernels),
        len(current.kernels),
        # A kernel that became another (one gone, one added, as when an op joins a fusion) touches its
        # bytes once: ranked beside the op that joined, not above it.
        max(sum(size[d] for d in added), sum(size[d] for d in gone)),
    )


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_NAMED_KERNELS])
    more = len(items) - _NAMED_KERNELS
    return f"{shown} and {more} more" if more > 0 else shown
