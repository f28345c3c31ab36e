"""Data parallelism with today's sharding API: the batch split over a 1-D mesh, parameters replicated.

``jit`` with ``NamedSharding`` inputs, not ``pmap`` (legacy; since jax 0.10 itself ``jit(shard_map)``).
Whether the devices really took part is read from the compiled program (its ``num_partitions``), not
assumed from the wrapper.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

BATCH_AXIS = "batch"


class DeviceShortage(Exception):
    """Fewer devices of the platform than the variant asks for."""


class UnsplittableBatch(ValueError):
    """An input whose batch does not divide among the mesh's devices."""


def batch_mesh(count: int, platform: str | None = None) -> Mesh:
    """A 1-D mesh over the first ``count`` devices (of ``platform``, default the default backend)."""
    devices = jax.devices(platform) if platform else jax.devices()
    if len(devices) < count:
        kind = devices[0].platform if devices else platform or jax.default_backend()
        hint = (
            " (on the CPU, --jaxperf-cpu-devices or the ini jaxperf_cpu_devices provides virtual devices)"
            if kind == "cpu"
            else ""
        )
        raise DeviceShortage(f"needs {count} {kind} devices, {len(devices)} available{hint}")
    return Mesh(np.array(devices[:count]), (BATCH_AXIS,))


def ambient_mesh() -> Mesh | None:
    """The mesh the user's code set with ``jax.set_mesh`` (explicit sharding), or None."""
    getter = getattr(jax.sharding, "get_mesh", None)
    mesh = getter() if getter is not None else None
    return mesh if isinstance(mesh, Mesh) and not mesh.empty else None


def committed_sharding(leaf: Any) -> Any:
    """The sharding a concrete array is committed to (one made under ``jax.set_mesh``), or None: an
    uncommitted array goes where it is used, and a tracer (inside a caller's trace) has none to give."""
    concrete = isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer)
    return leaf.sharding if concrete and leaf.committed else None


def batch_axis(mesh: Mesh) -> str:
    """The mesh axis a batch is split over: ``batch`` where the mesh has one, else its first axis."""
    return BATCH_AXIS if BATCH_AXIS in mesh.axis_names else str(mesh.axis_names[0])


def shard_batch(inputs: Sequence[Any], mesh: Mesh) -> tuple[Any, ...]:
    """Place every array leaf of ``inputs`` with its leading (batch) axis split over the mesh; a 0-d
    array (a decode step's cache position, a diffusion time) has no batch axis: every device gets it.

    :class:`UnsplittableBatch` names the input and the axis when a batch does not divide evenly among the
    devices.
    """
    axis = batch_axis(mesh)
    count = mesh.shape[axis]
    sharding = NamedSharding(mesh, PartitionSpec(axis))  # type: ignore[no-untyped-call]
    replicated = NamedSharding(mesh, PartitionSpec())  # type: ignore[no-untyped-call]

    def place(path: Any, leaf: Any) -> Any:
        where = f"input [{path[0].idx}]" + jax.tree_util.keystr(path[1:]) if path else "input"
        shape = getattr(leaf, "shape", None)
        if shape is None:
            return leaf
        if len(shape) == 0:
            return jax.device_put(leaf, replicated)
        if shape[0] % count:
            raise UnsplittableBatch(
                f"{where} has a batch of {shape[0]} along axis 0, which does not divide among {count} "
                f"devices: use a batch that is a multiple of {count}"
            )
        return jax.device_put(leaf, sharding)

    placed: tuple[Any, ...] = jax.tree_util.tree_map_with_path(place, tuple(inputs))
    return placed


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every device holds all of ``tree`` (the parameters)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))  # type: ignore[no-untyped-call]


def participating_devices(compiled: Any) -> int:
    """How many devices a compiled program runs on (its ``num_partitions``; 1 when unpartitioned)."""
    match = re.search(r"num_partitions=(\d+)", compiled.as_text() or "")
    return int(match.group(1)) if match else 1
