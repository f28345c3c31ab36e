"""The plugin's settings, resolved once from the command line and the ini file.

What a test's markers ask for is another thing, kept in :mod:`.specs` (marker specs, variants): loading the
plugin in a session that uses no jaxperf marker does not pay for building those dataclasses, as every
pytest run loads the plugin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .units import parse_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

MODES = ("latency", "throughput")
#: Which measured checks ``--jaxperf-profile`` traces.
PROFILE_ON = ("all", "regressed")
#: The largest exported program stored with a baseline, unless ``jaxperf_program_limit`` says otherwise.
DEFAULT_PROGRAM_LIMIT = "2MiB"


def baselines_directory(value: str) -> Path:
    """The baselines directory named by ``value``; ValueError when it is an existing file."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{value!r} is a file, not a directory of baselines")
    return path


def positive_float(value: str) -> float:
    """A finite positive number from an option or ini value; ValueError naming it otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive number, got {value!r}") from None
    if not 0 < number < math.inf:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def fraction(value: str) -> float:
    """A fraction strictly between 0 and 1 (a threshold, a target): inf would switch the gate off, and 2
    is a percentage typed as a fraction far more often than a +200 % threshold."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number < 1:
        raise ValueError(f"expected a fraction such as 0.1 (10%), got {value!r}")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def program_limit(value: str) -> int:
    """``jaxperf_program_limit``'s size in bytes; ValueError naming the ini option and the value."""
    try:
        return parse_bytes(value)
    except ValueError as error:
        raise ValueError(f"jaxperf_program_limit: {error}") from None


def _one_of(value: str, accepted: tuple[str, ...], what: str) -> str:
    """``value`` where it is one of ``accepted``; ValueError naming it and them otherwise."""
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")
    return value


def profile_on(value: str) -> str:
    return _one_of(value, PROFILE_ON, "choice")


def timing_mode(value: str) -> str:
    return _one_of(value, MODES, "timing mode")


@dataclass(frozen=True)
class PluginSettings:
    """The plugin's settings, resolved once from the command line and the ini file."""

    measure: bool = False
    """``--jaxperf``: measure and compare with baselines (correctness checks run regardless)."""
    baselines_dir: Path = Path("baselines")
    update_baselines: bool = False
    extend_baselines: bool = False
    """``--jaxperf-extend-baselines``: add this recording's processes to the stored baselines."""
    json_path: Path | None = None
    markdown_path: Path | None = None
    benchmark_json_path: Path | None = None
    budget_seconds: float = 2.0
    """Time spent sampling one measurement, at most (warm-up and compile not counted)."""
    ci_target: float = 0.02
    """Stop sampling once the median's 95% interval is within ± this fraction."""
    threshold: float = 0.10
    """Smallest slowdown the cross-process timing tier calls a regression (raised by the noise floor)."""
    replay_threshold: float = 0.05
    """The slowdown a replay of the baseline's stored program catches (see ``verdicts.replay_status``)."""
    limit_ceiling: float = 0.5
    """Widest limit a recorded baseline may have without a stored program, unless allowed."""
    allow_wide_limits: bool = False
    mode: str = "latency"
    repeat: int = 3
    """Processes whose medians give the noise floor when baselines are recorded."""
    measure_peaks: bool = False
    program_limit_bytes: int = parse_bytes(DEFAULT_PROGRAM_LIMIT)
    """Exported programs larger than this are not stored with their baselines (ini jaxperf_program_limit)."""
    rootdir: Path = Path()
    allow_nan: bool = False
    """ini ``jaxperf_allow_nan``: a checked model's float32 output may hold NaN."""
    explain: bool = False
    """``--jaxperf-explain``: explain every check judged against a baseline, not only the regressed."""
    profile_dir: Path | None = None
    """``--jaxperf-profile``: where each measured check's profiler trace is written."""
    profile_on: str = "all"
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

        def value(name: str) -> Any:
            given = config.getoption(name, default=None)
            return given if given not in (None, "") else config.getini(name)

        def parsed(name: str, parse: Callable[[str], Any]) -> Any:
            try:
                return parse(value(name))
            except ValueError as error:  # named as the ini file names it (the option's own is argparse's)
                raise ValueError(f"{name}: {error}") from None

        def path(name: str, base: Path) -> Path | None:
            given = value(name)
            return Path(base, given) if given else None

        measure = config.getoption("jaxperf")
        if measure is None:
            measure = bool(config.getini("jaxperf"))
        extend = bool(config.getoption("jaxperf_extend_baselines"))
        update = bool(config.getoption("jaxperf_update_baselines")) or extend
        here = config.invocation_params.dir
        return cls(
            measure=bool(measure) or update,
            baselines_dir=Path(config.rootpath, baselines_directory(str(value("jaxperf_baselines")))),
            update_baselines=update,
            extend_baselines=extend,
            json_path=path("jaxperf_json", here),
            markdown_path=path("jaxperf_markdown", here),
            benchmark_json_path=path("jaxperf_benchmark_json", here),
            budget_seconds=parsed("jaxperf_budget", positive_float),
            ci_target=parsed("jaxperf_ci_target", fraction),
            threshold=parsed("jaxperf_threshold", fraction),
            replay_threshold=parsed("jaxperf_replay_threshold", fraction),
            limit_ceiling=parsed("jaxperf_limit_ceiling", lambda given: positive_float(str(given))),
            allow_wide_limits=bool(config.getoption("jaxperf_allow_wide_limits")),
            mode=parsed("jaxperf_mode", lambda given: timing_mode(str(given))),
            repeat=parsed("jaxperf_repeat", positive_int),
            measure_peaks=bool(config.getoption("jaxperf_measure_peaks")),
            program_limit_bytes=program_limit(str(config.getini("jaxperf_program_limit"))),
            rootdir=config.rootpath,
            allow_nan=bool(config.getini("jaxperf_allow_nan")),
            explain=bool(config.getoption("jaxperf_explain") or config.getini("jaxperf_explain")),
            profile_dir=path("jaxperf_profile", here),
            profile_on=parsed("jaxperf_profile_on", lambda given: profile_on(str(given))),
        )
