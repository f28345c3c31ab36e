"""The environment a run happens in: backend, devices and versions (imports jax when called)."""

from __future__ import annotations

import os
import sys
from importlib import metadata


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_environment() -> str:
    """One line: backend, device kinds and count, and the jax/jaxlib/flax versions."""
    import jax

    devices = jax.devices()
    kinds: dict[str, int] = {}
    for device in devices:
        kinds[device.device_kind] = kinds.get(device.device_kind, 0) + 1
    kind_text = ", ".join(f"{count}× {kind}" for kind, count in kinds.items())
    return (
        f"jaxperf: backend {jax.default_backend()}, {len(devices)} device(s) ({kind_text}); "
        f"jax {jax.__version__}, jaxlib {_version('jaxlib')}, flax {_version('flax')}"
    )


def provide_cpu_devices(count: int) -> None:
    """Make jax's CPU backend expose ``count`` devices, which must happen before the backend starts.

    While jax is not imported yet, this sets ``JAX_NUM_CPU_DEVICES`` (read when jax is imported; also
    inherited by xdist workers). When jax is imported but no backend has started, it updates the config.
    When a backend already started, RuntimeError says so: nothing can change the count any more.
    """
    if "jax" not in sys.modules:
        os.environ["JAX_NUM_CPU_DEVICES"] = str(count)
        return
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)  # type: ignore[no-untyped-call]
    except RuntimeError:
        raise RuntimeError(
            f"jax started its backends before pytest-jaxperf could provide {count} CPU devices (something "
            f"ran a jax operation while loading); set JAX_NUM_CPU_DEVICES={count} in the environment instead"
        ) from None


def child_process_environment(**extra: str) -> dict[str, str]:
    """This process's environment, plus ``extra``, for a child process that starts jax while this one
    holds its devices: without preallocation, as jax's default of 75% of a GPU's memory would fail there.
    """
    return {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", **extra}
