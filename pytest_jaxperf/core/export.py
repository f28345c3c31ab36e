"""A wrapped model's program as an artifact that outlives the process: exported with ``jax.export`` (the
model's state leaves and its inputs as arguments, their shardings kept), serialized and compressed; read
back later and called beside the live program.

A stored program is what a baseline can be re-run as: timed in the same process as the current program,
both programs share the machine's mood, which a number recorded hours ago does not.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
from jax import export

from ..errors import first_line
from ..settings import PluginSettings

if TYPE_CHECKING:
    from .wrap import WrappedModel

#: The largest serialized program stored with a baseline, unless the ini option says otherwise: closed-over
#: constants (weights the model does not hold as state) are embedded in the program and can make it large.
DEFAULT_LIMIT_BYTES = PluginSettings.program_limit_bytes
#: Names the encoding of a stored program, so that a later one can be told apart and refused, not misread.
FORMAT = "jax.export+zlib+base64"


class ProgramNotExported(Exception):
    """The program cannot be stored: the message says why (what the record keeps instead)."""


class ProgramUnreadable(Exception):
    """A stored program that cannot be read back: corrupt, truncated, or of another format or jax."""


class ProgramCorrupt(ProgramUnreadable):
    """A stored program whose bytes are damaged: not base64, truncated, or not the size its record says."""


class ProgramIncompatible(ProgramUnreadable):
    """An intact stored program this jax cannot read (another serialization version)."""


@dataclass(frozen=True)
class StoredProgram:
    """A serialized, compressed program and its sizes."""

    data: bytes
    """The zlib-compressed serialization."""
    serialized_bytes: int
    """The size of ``jax.export``'s serialization, before compression."""

    def to_text(self) -> str:
        """The compressed program as base64 text, for a JSON file."""
        return base64.b64encode(self.data).decode("ascii")

    @classmethod
    def from_text(cls, text: str, serialized_bytes: int) -> StoredProgram:
        """The program from :meth:`to_text`'s text; ProgramUnreadable when it is not base64."""
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as error:
            raise ProgramCorrupt(f"the stored program is not base64 text ({error})") from None
        return cls(data, serialized_bytes)


def exported_program(
    wrapped: WrappedModel, inputs: tuple[Any, ...]
) -> tuple[export.Exported, tuple[Any, ...]]:
    """``wrapped``'s compiled program for these inputs as ``jax.export`` gives it, and its arguments.

    The state leaves are the program's first argument and the inputs the rest, placed as the model
    runs them (sharded over its mesh, if any). Raises :class:`ProgramNotExported` saying why it cannot be.
    """
    if not wrapped.jitted or wrapped.forward is None:
        raise ProgramNotExported(f"{wrapped.name} is not compiled here (no @jaxperf.jit_warm): no program")
    forward = wrapped.forward
    leaves, structure = jax.tree_util.tree_flatten(wrapped.params)

    def program(state_leaves: list[Any], *arguments: Any) -> Any:
        return forward(jax.tree_util.tree_unflatten(structure, state_leaves), *arguments)

    placed = wrapped.place(*inputs)
    try:
        return export.export(jax.jit(program))(leaves, *placed), (leaves, *placed)
    except Exception as error:  # host callbacks, custom calls jax.export does not allow, ...
        raise ProgramNotExported(f"jax.export refused it: {first_line(error)}") from None


def serialized(exported: export.Exported) -> bytes:
    """The program's ``jax.export`` serialization; ProgramNotExported when this installation cannot."""
    try:
        return bytes(exported.serialize())
    except ImportError as error:  # flatbuffers, which jax's serializer needs and does not install
        raise ProgramNotExported(f"jax.export cannot serialize here: {error}") from None
    except Exception as error:  # an effect or a custom call the serializer does not know
        raise ProgramNotExported(f"jax.export cannot serialize it: {type(error).__name__}: {error}") from None


def export_program(wrapped: WrappedModel, inputs: tuple[Any, ...], limit_bytes: int) -> StoredProgram:
    """The compiled program of ``wrapped`` for these inputs, exported and compressed
    (:func:`exported_program`): the stored program is the variant as it was measured.
    Raises :class:`ProgramNotExported` saying why when it cannot be stored.
    """
    data = serialized(exported_program(wrapped, inputs)[0])
    if len(data) > limit_bytes:
        raise ProgramNotExported(
            f"its exported program is {len(data):,} bytes, over the limit of {limit_bytes:,} "
            "(closed-over constants are embedded: hold weights as module state, or raise "
            "jaxperf_program_limit)"
        )
    return StoredProgram(zlib.compress(data, 9), len(data))


def deserialize_program(stored: StoredProgram) -> export.Exported:
    """The exported program back; ProgramUnreadable saying why when it cannot be."""
    try:
        serialized = zlib.decompress(stored.data)
    except zlib.error as error:
        raise ProgramCorrupt(f"the stored program is corrupt or truncated ({error})") from None
    if len(serialized) != stored.serialized_bytes:
        raise ProgramCorrupt(
            f"the stored program is {len(serialized):,} bytes, its record says {stored.serialized_bytes:,}"
        )
    try:
        return export.deserialize(bytearray(serialized))
    except Exception as error:  # intact (zlib checks its data), so: another jax's serialization version
        raise ProgramIncompatible(
            f"jax {jax.__version__} cannot read the stored program: {type(error).__name__}: {error}"
        ) from None


def other_platform(program: export.Exported) -> str | None:
    """Why a stored program cannot run on this platform (exported for ``cuda`` where this is a CPU);
    None where it can. The platform is named as ``jax.export`` names it, not as the backend is."""
    platform = export.default_export_platform()
    if platform in program.platforms:
        return None
    return f"the stored program was exported for {', '.join(program.platforms)}, not for {platform}"


def compiled_alone(program: export.Exported) -> Any:
    """A stored program compiled for its own argument shapes, with nothing to call it on: what its
    optimized HLO is read from where it cannot be replayed. ProgramUnreadable where it does not compile
    here (another platform, another device count)."""
    elsewhere = other_platform(program)
    if elsewhere:
        raise ProgramUnreadable(elsewhere)
    if program.nr_devices != 1:
        raise ProgramUnreadable(f"the stored program runs on {program.nr_devices} devices, not one")
    shapes = [jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval in program.in_avals]  # type: ignore[no-untyped-call]
    args, kwargs = jax.tree_util.tree_unflatten(program.in_tree, shapes)
    try:
        return jax.jit(program.call).lower(*args, **kwargs).compile()
    except Exception as error:  # a module this XLA rejects
        raise ProgramUnreadable(f"it does not compile here: {first_line(error)}") from None
