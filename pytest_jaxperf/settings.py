"""The plugin's settings, resolved once from the command line and the ini file.

Kept apart from :mod:`.config` (marker specs, variants) so that loading the plugin in a session that uses
no jaxperf marker does not pay for building those dataclasses: every pytest run loads the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PluginConfig:
    """The plugin's settings, resolved once from the command line and the ini file."""

    measure: bool = False
    """``--jaxperf``: measure and compare with baselines (correctness checks run regardless)."""
    baselines_dir: Path = Path("baselines")
    update_baselines: bool = False
    json_path: Path | None = None
