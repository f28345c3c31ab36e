"""The plugin's options, each declared once in :data:`SETTINGS`: its command-line option, its ini twin, its
default, its help and how a given value is read and checked. ``pytest_addoption`` declares the options and
ini values from it, and :class:`~pytest_jaxperf.settings.PluginSettings` takes its defaults from it and
reads a run's values with it.

Standard library only: every pytest run loads the plugin, which declares these options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .units import parse_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    #: Makes argparse's ``type=`` from a ``parse``: plugin.py's wrapper, which reports a ValueError as
    #: argparse reports a bad value.
    ArgparseType = Callable[[Callable[[str], Any]], Callable[[str], Any]]

MODES = ("latency", "throughput")
#: Which measured checks ``--jaxperf-profile`` traces.
PROFILE_ON = ("all", "regressed")


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
    """A positive integer from an option or ini value (a count); ValueError naming it otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _one_of(value: str, accepted: tuple[str, ...], what: str) -> str:
    """``value`` where it is one of ``accepted``; ValueError naming it and them otherwise."""
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")
    return value


def profile_on(value: str) -> str:
    """One of :data:`PROFILE_ON`; ValueError naming the value and the accepted ones otherwise."""
    return _one_of(value, PROFILE_ON, "choice")


def timing_mode(value: str) -> str:
    """One of :data:`MODES`; ValueError naming the value and the accepted ones otherwise."""
    return _one_of(value, MODES, "timing mode")


SettingKind = Literal["flag", "value", "output", "rooted_folder"]
"""How a setting is given and read:

- ``flag``: on or off: a ``store_true`` option, a ``bool`` ini value;
- ``value``: a value read by the setting's ``parse``, which also checks the option (argparse's ``type=``),
  unless the option's ``choices`` do;
- ``output``: a file or folder this run writes, relative to the folder pytest was invoked in; None when not
  given;
- ``rooted_folder``: a folder relative to the rootdir (the baselines, committed with the project), checked by
  ``parse``.
"""


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One setting of the plugin: its command-line option, its ini twin, its default and how it is read."""

    field: str | None
    """The :class:`PluginSettings` field it fills; None for one the plugin reads itself."""
    key: str
    """The option's ``dest`` and the ini value's name: what ``config.getoption`` and ``getini`` read."""
    kind: SettingKind
    default: str = ""
    """As an ini file would write it (``"0.10"``, ``"2MiB"``); "" for not set. A flag is off by default: a
    ``store_true`` option can only turn it on."""
    option: str | None = None
    """The command-line option; None for an ini value alone."""
    help: str = ""
    """The option's help; ``{default}`` stands for the field's default (:attr:`initial`)."""
    ini_help: str = ""
    """The ini value's help; "" for an option alone, which has no ini twin."""
    parse: Callable[[str], Any] = str
    """Reads a given value and checks it, raising ValueError; for ``value`` and ``rooted_folder`` settings."""
    metavar: str | None = None
    """What ``--help`` calls the option's value (``--jaxperf-json=PATH``)."""
    choices: tuple[str, ...] | None = None
    """The option's accepted values, checked by argparse (``parse`` checks the ini value's)."""

    @property
    def has_ini(self) -> bool:
        """Whether the ini file can give it too."""
        return bool(self.ini_help)

    @property
    def initial(self) -> Any:
        """What the setting reads as when neither the command line nor the ini file gives it."""
        if self.kind == "flag":
            return False
        if self.default == "":
            return None
        if self.kind in ("output", "rooted_folder"):
            # Not checked on disk: importing the plugin must not look at the disk; a run checks what it reads.
            return Path(self.default)
        return self.parse(self.default)

    def option_arguments(self, argparse_type: ArgparseType) -> dict[str, Any]:
        """The keyword arguments of the option's ``addoption``."""
        arguments: dict[str, Any] = {
            "dest": self.key,
            # None until the command line gives it, where an ini twin is read instead: the option wins.
            "default": None if self.has_ini else self.initial,
            "help": self.help.format(default=self.initial),
        }
        if self.kind == "flag":
            return {**arguments, "action": "store_true"}
        if self.metavar is not None:
            arguments["metavar"] = self.metavar
        if self.choices is not None:
            arguments["choices"] = self.choices
        elif self.kind != "output":
            arguments["type"] = argparse_type(self.parse)
        return arguments

    @property
    def ini_type(self) -> Literal["bool"] | None:
        """The ini value's type as ``parser.addini`` takes it; None is a string."""
        return "bool" if self.kind == "flag" else None

    @property
    def ini_default(self) -> str | bool:
        """The ini value's default as ``parser.addini`` takes it: a flag's is a bool, the others' text."""
        return self.initial if self.kind == "flag" else self.default

    def given(self, config: pytest.Config) -> Any:
        """What this run gives: the option where the command line gives it, else the ini value or default."""
        if self.option is not None:
            given = config.getoption(self.key, default=None)
            if given not in (None, "") or not self.has_ini:
                return given
        return config.getini(self.key)

    def resolve(self, config: pytest.Config) -> Any:
        """The field's value in this run; ValueError naming a bad one."""
        return self.read(
            self.given(config), invocation_dir=config.invocation_params.dir, rootdir=config.rootpath
        )

    def read(self, given: Any, *, invocation_dir: Path, rootdir: Path) -> Any:
        """The field's value from what this run gives (:meth:`given`); ValueError naming a bad one."""
        if self.kind == "flag":
            return bool(given)
        if self.kind == "output":
            return Path(invocation_dir, given) if given else None
        if self.kind == "rooted_folder":
            # Its message names the folder and what is wrong with it, and has always been shown alone.
            return Path(rootdir, self.parse(str(given)))
        try:
            return self.parse(given)
        except ValueError as error:  # named as the ini file names it (the option's own is argparse's)
            raise ValueError(f"{self.key}: {error}") from None


#: Every setting, in the order ``pytest --help`` lists the options.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        field="measure",
        key="jaxperf",
        kind="flag",
        option="--jaxperf",
        help="Measure every jaxperf check and compare with the baselines "
        "(recompilation and other correctness checks run without it too)",
        ini_help="Measure and compare with baselines, as --jaxperf does",
    ),
    Setting(
        field="baselines_dir",
        key="jaxperf_baselines",
        kind="rooted_folder",
        default="baselines",
        option="--jaxperf-baselines",
        metavar="DIR",
        parse=baselines_directory,
        help="Directory of committed baselines (default: ini jaxperf_baselines, else '{default}')",
        ini_help="Directory of committed baselines",
    ),
    Setting(
        field="update_baselines",
        key="jaxperf_update_baselines",
        kind="flag",
        option="--jaxperf-update-baselines",
        help="Record new baselines from this run (implies --jaxperf); the noise floor comes from "
        "--jaxperf-repeat processes",
    ),
    Setting(
        field="extend_baselines",
        key="jaxperf_extend_baselines",
        kind="flag",
        option="--jaxperf-extend-baselines",
        help="Record as --jaxperf-update-baselines does, but add this run's processes to each stored "
        "baseline of the same program instead of replacing it: the same code measured at another time, "
        "so the noise floor spans how the machine drifts between recordings",
    ),
    Setting(
        field="repeat",
        key="jaxperf_repeat",
        kind="value",
        default="3",
        option="--jaxperf-repeat",
        metavar="N",
        parse=positive_int,
        help="Processes that measure each test when baselines are recorded (default {default})",
        ini_help="Processes measuring each test when baselines are recorded",
    ),
    Setting(
        field="json_path",
        key="jaxperf_json",
        kind="output",
        option="--jaxperf-json",
        metavar="PATH",
        help="Write every jaxperf record of the run, samples included, to PATH as JSON",
        ini_help="Write every jaxperf record of the run to this JSON file",
    ),
    Setting(
        field="markdown_path",
        key="jaxperf_markdown",
        kind="output",
        option="--jaxperf-markdown",
        metavar="PATH",
        help="Write the summary as Markdown to PATH (also appended to $GITHUB_STEP_SUMMARY when set)",
        ini_help="Write the summary as Markdown to this file",
    ),
    Setting(
        field="benchmark_json_path",
        key="jaxperf_benchmark_json",
        kind="output",
        option="--jaxperf-benchmark-json",
        metavar="PATH",
        help="Write the measurements in pytest-benchmark's JSON format to PATH",
        ini_help="Write measurements in pytest-benchmark's format to this file",
    ),
    Setting(
        field="budget_seconds",
        key="jaxperf_budget",
        kind="value",
        default="2.0",
        option="--jaxperf-budget",
        metavar="SECONDS",
        parse=positive_float,
        help="Sampling time per measurement, at most (default {default:g})",
        ini_help="Sampling time per measurement in seconds, at most",
    ),
    Setting(
        field="ci_target",
        key="jaxperf_ci_target",
        kind="value",
        default="0.02",
        parse=fraction,
        ini_help="Stop sampling when the median's 95% CI is within this fraction",
    ),
    Setting(
        field="threshold",
        key="jaxperf_threshold",
        kind="value",
        default="0.10",
        option="--jaxperf-threshold",
        metavar="FRACTION",
        parse=fraction,
        help="Across processes: a slowdown whose interval lies beyond it regresses, e.g. 0.1 "
        "(default {default:g})",
        ini_help="Across processes: the interval beyond it regresses (a fraction)",
    ),
    Setting(
        field="replay_threshold",
        key="jaxperf_replay_threshold",
        kind="value",
        default="0.05",
        option="--jaxperf-replay-threshold",
        metavar="FRACTION",
        parse=fraction,
        help="By replay: the slowdown caught (half of it, interval above 1, regresses; default {default:g})",
        ini_help="By replay: the slowdown caught; beyond half of it, with an interval above 1, regresses",
    ),
    Setting(
        field="limit_ceiling",
        key="jaxperf_limit_ceiling",
        kind="value",
        default="0.5",
        parse=positive_float,
        ini_help="Widest limit a baseline without a stored program may be recorded with (a fraction)",
    ),
    Setting(
        field="allow_wide_limits",
        key="jaxperf_allow_wide_limits",
        kind="flag",
        option="--jaxperf-allow-wide-limits",
        help="Record baselines with a limit beyond jaxperf_limit_ceiling even without a program to replay",
    ),
    Setting(
        field="mode",
        key="jaxperf_mode",
        kind="value",
        default="latency",
        option="--jaxperf-mode",
        choices=MODES,
        parse=timing_mode,
        help="latency: each call blocked; throughput: calls dispatched back to back (default {default})",
        ini_help="Timing mode: latency or throughput",
    ),
    Setting(
        field="measure_peaks",
        key="jaxperf_measure_peaks",
        kind="flag",
        option="--jaxperf-measure-peaks",
        help="Measure the device's matmul and bandwidth ceilings on the spot instead of the table's",
    ),
    Setting(
        field="explain",
        key="jaxperf_explain",
        kind="flag",
        option="--jaxperf-explain",
        help="Explain every check judged against a baseline (the program's changes, the ops that took the "
        "time), not only the regressed ones",
        ini_help="Explain every judged check, as --jaxperf-explain does",
    ),
    Setting(
        field="profile_dir",
        key="jaxperf_profile",
        kind="output",
        option="--jaxperf-profile",
        metavar="DIR",
        help="Write a profiler trace of each measured check into DIR (Perfetto and XProf open them)",
        ini_help="Write a profiler trace of each measured check into this folder",
    ),
    Setting(
        field="profile_on",
        key="jaxperf_profile_on",
        kind="value",
        default="all",
        option="--jaxperf-profile-on",
        choices=PROFILE_ON,
        parse=profile_on,
        help="Which checks --jaxperf-profile traces: all measured ones, or only the regressed "
        "(default {default})",
        ini_help="Which checks jaxperf_profile traces: all or regressed",
    ),
    # Read by the plugin before any conftest is imported (pytest_load_initial_conftests), the last moment
    # jax's CPU device count can be set: no field of the settings, resolved after the conftests.
    Setting(
        field=None,
        key="jaxperf_cpu_devices",
        kind="value",
        option="--jaxperf-cpu-devices",
        metavar="N",
        parse=positive_int,
        help="Give jax's CPU backend N virtual devices (for @jaxperf.devices on a machine without GPUs)",
        ini_help="Virtual CPU devices for jax, applied before conftests load",
    ),
    Setting(
        field="allow_nan",
        key="jaxperf_allow_nan",
        kind="flag",
        ini_help="A checked model's float32 output may hold NaN on its example inputs (else the check fails)",
    ),
    Setting(
        field="program_limit_bytes",
        key="jaxperf_program_limit",
        kind="value",
        default="2MiB",
        parse=parse_bytes,
        # The size in the help is a sample of how sizes are written, which happens to be the default.
        ini_help="Largest exported program stored with a baseline (a size: 2MiB); larger ones are not stored",
    ),
)

#: The order ``pytest --help`` has always listed the ini values in, kept so: it is not the options' order
#: (jaxperf_repeat comes after jaxperf_mode). An ini value left out of it is listed after these.
INI_HELP_ORDER = (
    "jaxperf",
    "jaxperf_baselines",
    "jaxperf_json",
    "jaxperf_markdown",
    "jaxperf_benchmark_json",
    "jaxperf_budget",
    "jaxperf_ci_target",
    "jaxperf_threshold",
    "jaxperf_replay_threshold",
    "jaxperf_limit_ceiling",
    "jaxperf_mode",
    "jaxperf_repeat",
    "jaxperf_explain",
    "jaxperf_profile",
    "jaxperf_profile_on",
    "jaxperf_cpu_devices",
    "jaxperf_allow_nan",
    "jaxperf_program_limit",
)


def ini_settings() -> list[Setting]:
    """The settings with an ini value, in the order ``pytest --help`` lists them (:data:`INI_HELP_ORDER`)."""

    def position(setting: Setting) -> int:
        known = setting.key in INI_HELP_ORDER
        return INI_HELP_ORDER.index(setting.key) if known else len(INI_HELP_ORDER)

    return sorted((setting for setting in SETTINGS if setting.has_ini), key=position)
