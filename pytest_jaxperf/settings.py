"""The plugin's settings, resolved once from the command line and the ini file.

Kept apart from :mod:`.config` (marker specs, variants) so that loading the plugin in a session that uses
no jaxperf marker does not pay for building those dataclasses: every pytest run loads the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def baselines_directory(value: str) -> Path:
    """The baselines directory named by ``value``; ValueError when it is an existing file."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{value!r} is a file, not a directory of baselines")
    return path


@dataclass(frozen=True)
class PluginConfig:
    """The plugin's settings, resolved once from the command line and the ini file."""

    measure: bool = False
    """``--jaxperf``: measure and compare with baselines (correctness checks run regardless)."""
    baselines_dir: Path = Path("baselines")
    update_baselines: bool = False
    json_path: Path | None = None

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> PluginConfig:
        """Resolve the settings: an option given on the command line wins over its ini twin."""
        measure = config.getoption("jaxperf")
        if measure is None:
            measure = bool(config.getini("jaxperf"))
        baselines = config.getoption("jaxperf_baselines") or baselines_directory(
            config.getini("jaxperf_baselines")
        )
        json_path = config.getoption("jaxperf_json") or config.getini("jaxperf_json") or None
        update = bool(config.getoption("jaxperf_update_baselines"))
        return cls(
            measure=bool(measure) or update,
            baselines_dir=Path(config.rootpath, baselines),
            update_baselines=update,
            json_path=Path(config.invocation_params.dir, json_path) if json_path else None,
        )
