"""The plugin's settings, resolved once from the command line and the ini file, as the table of options
(:mod:`.options`) declares and reads them.

What a test's markers ask for is another thing, kept in :mod:`.specs` (marker specs, variants): loading the
plugin in a session that uses no jaxperf marker does not pay for building those dataclasses, as every
pytest run loads the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import SETTINGS

if TYPE_CHECKING:
    import pytest

#: Each :class:`PluginSettings` field's default, from the table.
FIELD_DEFAULTS: dict[str, Any] = {
    setting.field: setting.initial for setting in SETTINGS if setting.field is not None
}


@dataclass(frozen=True)
class PluginSettings:
    """The plugin's settings, resolved once from the command line and the ini file.

    Each field's default is its setting's, in :data:`SETTINGS` (``rootdir`` excepted, which is pytest's).
    """

    measure: bool = FIELD_DEFAULTS["measure"]
    """``--jaxperf``: measure and compare with baselines (correctness checks run regardless)."""
    baselines_dir: Path = FIELD_DEFAULTS["baselines_dir"]
    update_baselines: bool = FIELD_DEFAULTS["update_baselines"]
    extend_baselines: bool = FIELD_DEFAULTS["extend_baselines"]
    """``--jaxperf-extend-baselines``: add this recording's processes to the stored baselines."""
    json_path: Path | None = FIELD_DEFAULTS["json_path"]
    markdown_path: Path | None = FIELD_DEFAULTS["markdown_path"]
    benchmark_json_path: Path | None = FIELD_DEFAULTS["benchmark_json_path"]
    budget_seconds: float = FIELD_DEFAULTS["budget_seconds"]
    """Time spent sampling one measurement, at most (warm-up and compile not counted)."""
    ci_target: float = FIELD_DEFAULTS["ci_target"]
    """Stop sampling once the median's 95% interval is within ± this fraction."""
    threshold: float = FIELD_DEFAULTS["threshold"]
    """Smallest slowdown the cross-process timing tier calls a regression (raised by the noise floor)."""
    replay_threshold: float = FIELD_DEFAULTS["replay_threshold"]
    """The slowdown a replay of the baseline's stored program catches (see ``verdicts.replay_status``)."""
    limit_ceiling: float = FIELD_DEFAULTS["limit_ceiling"]
    """Widest limit a recorded baseline may have without a stored program, unless allowed."""
    allow_wide_limits: bool = FIELD_DEFAULTS["allow_wide_limits"]
    mode: str = FIELD_DEFAULTS["mode"]
    repeat: int = FIELD_DEFAULTS["repeat"]
    """Processes whose medians give the noise floor when baselines are recorded."""
    measure_peaks: bool = FIELD_DEFAULTS["measure_peaks"]
    program_limit_bytes: int = FIELD_DEFAULTS["program_limit_bytes"]
    """Exported programs larger than this are not stored with their baselines (ini jaxperf_program_limit)."""
    rootdir: Path = Path()
    allow_nan: bool = FIELD_DEFAULTS["allow_nan"]
    """ini ``jaxperf_allow_nan``: a checked model's float32 output may hold NaN."""
    explain: bool = FIELD_DEFAULTS["explain"]
    """``--jaxperf-explain``: explain every check judged against a baseline, not only the regressed."""
    profile_dir: Path | None = FIELD_DEFAULTS["profile_dir"]
    """``--jaxperf-profile``: where each measured check's profiler trace is written."""
    profile_on: str = FIELD_DEFAULTS["profile_on"]
    """``--jaxperf-profile-on``: ``all`` measured checks are traced, or only the ``regressed``."""

    def unwritable_output(self) -> str | None:
        """The first file this run must write that cannot be written, said with its option; else None."""
        from .writable import why_folder_unwritable, why_unwritable

        outputs = (
            ("--jaxperf-json", self.json_path),
            ("--jaxperf-markdown", self.markdown_path),
            ("--jaxperf-benchmark-json", self.benchmark_json_path),
        )
        for option, path in outputs:
            why = why_unwritable(path) if path is not None else None
            if why:
                return f"{option} {path} cannot be written: {why}"
        if self.profile_dir is not None:
            why = why_folder_unwritable(self.profile_dir)
            if why:
                return f"--jaxperf-profile {self.profile_dir} cannot be written: {why}"
        if self.update_baselines:
            why = why_folder_unwritable(self.baselines_dir)
            if why:
                return f"the baselines folder {self.baselines_dir} cannot be written: {why}"
        return None

    @classmethod
    def from_pytest_config(cls, config: pytest.Config) -> PluginSettings:
        """Resolve the settings: an option given on the command line wins over its ini twin."""
        setting_of = {setting.field: setting for setting in SETTINGS if setting.field is not None}
        # Read in the fields' order: of several bad values, the first field's is the one reported.
        values = {
            field.name: setting_of[field.name].resolve(config)
            for field in fields(cls)
            if field.name in setting_of
        }
        # Extending the baselines records them, as updating does; recording them measures.
        values["update_baselines"] = values["update_baselines"] or values["extend_baselines"]
        values["measure"] = values["measure"] or values["update_baselines"]
        return cls(**values, rootdir=config.rootpath)
