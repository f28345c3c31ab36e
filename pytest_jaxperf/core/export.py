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
            raise ProgramUnreadable(f"the stored program is not base64 text ({error})") from None
        return cls(data, serialized_bytes)


def export_program(wrapped: WrappedModel, inputs: tuple[Any, ...], limit_bytes: int) -> StoredProgram:
    """The compiled program of ``wrapped`` for these inputs, exported and compressed.

    The state leaves are the program's first argument and the inputs the rest, placed as the model
    runs them (sharded over its mesh, if any): the stored program is the variant as it was measured.
    Raises :class:`ProgramNotExported` saying why when it cannot be stored.
    """
    if not wrapped.jitted or wrapped.forward is None:
        raise ProgramNotExported(f"{wrapped.name} is not compiled here (no @jaxperf.jit_warm): no program")
    forward = wrapped.forward
    leaves, structure = jax.tree_util.tree_flatten(wrapped.params)

    def program(state_leaves: list[Any], *arguments: Any) -> Any:
        return forward(jax.tree_util.tree_unflatten(structure, state_leaves), *arguments)

    placed = wrapped.place(*inputs)
    try:
        exported = export.export(jax.jit(program))(leaves, *placed)
        serialized = exported.serialize()
    except ImportError as error:  # flatbuffers, which jax's serializer needs and does not install
        raise ProgramNotExported(f"jax.export cannot serialize here: {error}") from None
    except Exception as error:  # host callbacks, custom calls jax.export does not allow, ...
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ProgramNotExported(
            f"jax.export refused it: {type(error).__name__}: {first_line[:300]}"
        ) from None
    if len(serialized) > limit_bytes:
        raise ProgramNotExported(
            f"its exported program is {len(serialized):,} bytes, over the limit of {limit_bytes:,} "
            "(closed-over constants are embedded: hold weights as module state, or raise "
            "jaxperf_program_limit)"
        )
    return StoredProgram(zlib.compress(bytes(serialized), 9), len(serialized))


def load_program(stored: StoredProgram) -> export.Exported:
    """The exported program back; ProgramUnreadable saying why when it cannot be."""
    try:
        serialized = zlib.decompress(stored.data)
    except zlib.error as error:
        raise ProgramUnreadable(f"the stored program is corrupt or truncated ({error})") from None
    if len(serialized) != stored.serialized_bytes:
        raise ProgramUnreadable(
            f"the stored program is {len(serialized):,} bytes, its record says {stored.serialized_bytes:,}"
        )
    try:
        return export.deserialize(bytearray(serialized))
    except Exception as error:  # another jax's serialization version, a damaged flatbuffer
        raise ProgramUnreadable(
            f"jax {jax.__version__} cannot read the stored program: {type(error).__name__}: {error}"
        ) from None
