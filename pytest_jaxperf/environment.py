"""The environment a run happens in: backend, devices and versions (imports jax when called)."""

from __future__ import annotations

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
