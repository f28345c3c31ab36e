"""pytest hooks and fixtures of pytest-jaxperf; each hook delegates to a module of its own concern.

Importing this module imports neither jax nor flax: a conftest must be able to configure jax first.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pytest

from .markers import MARKERS
from .session import PLUGIN_NAME, JaxperfSession
from .settings import (
    DEFAULT_PROGRAM_LIMIT,
    MODES,
    PROFILE_ON,
    PluginSettings,
    baselines_directory,
    fraction,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from .fixture import Jaxperf
    from .specs import TestSpec, Variant

# Every pytest run loads this plugin, most of them without a jaxperf marker: the marker specs, the
# fixture object and anything touching jax are imported on first use, not here.

MEASURE_OPTION = "--jaxperf"
BASELINES_OPTION = "--jaxperf-baselines"
UPDATE_OPTION = "--jaxperf-update-baselines"
JSON_OPTION = "--jaxperf-json"

fixture_key = pytest.StashKey["Jaxperf"]()


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that reports a bad value as argparse does, naming it."""

    def check(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return check


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jaxperf", "JAX/Flax performance checks (pytest-jaxperf)")
    group.addoption(
        MEASURE_OPTION,
        action="store_true",
        dest="jaxperf",
        default=None,
        help="Measure every jaxperf check and compare with the baselines "
        "(recompilation and other correctness checks run without it too)",
    )
    group.addoption(
        BASELINES_OPTION,
        dest="jaxperf_baselines",
        metavar="DIR",
        type=_checked(baselines_directory),
        default=None,
        help="Directory of committed baselines (default: ini jaxperf_baselines, else 'baselines')",
    )
    group.addoption(
        UPDATE_OPTION,
        action="store_true",
        dest="jaxperf_update_baselines",
        default=False,
        help="Record new baselines from this run (implies --jaxperf); the noise floor comes from "
        "--jaxperf-repeat processes",
    )
    group.addoption(
        "--jaxperf-extend-baselines",
        action="store_true",
        dest="jaxperf_extend_baselines",
        default=False,
        help="Record as --jaxperf-update-baselines does, but add this run's processes to each stored "
        "baseline of the same program instead of replacing it: the same code measured at another time, "
        "so the noise floor spans how the machine drifts between recordings",
    )
    group.addoption(
        "--jaxperf-repeat",
        dest="jaxperf_repeat",
        metavar="N",
        type=_checked(positive_int),
        default=None,
        help="Processes that measure each test when baselines are recorded (default 3)",
    )
    group.addoption(
        JSON_OPTION,
        dest="jaxperf_json",
        metavar="PATH",
        default=None,
        help="Write every jaxperf record of the run, samples included, to PATH as JSON",
    )
    group.addoption(
        "--jaxperf-markdown",
        dest="jaxperf_markdown",
        metavar="PATH",
        default=None,
        help="Write the summary as Markdown to PATH (also appended to $GITHUB_STEP_SUMMARY when set)",
    )
    group.addoption(
        "--jaxperf-benchmark-json",
        dest="jaxperf_benchmark_json",
        metavar="PATH",
        default=None,
        help="Write the measurements in pytest-benchmark's JSON format to PATH",
    )
    group.addoption(
        "--jaxperf-budget",
        dest="jaxperf_budget",
        metavar="SECONDS",
        type=_checked(positive_float),
        default=None,
        help="Sampling time per measurement, at most (default 2)",
    )
    group.addoption(
        "--jaxperf-threshold",
        dest="jaxperf_threshold",
        metavar="FRACTION",
        type=_checked(fraction),
        default=None,
        help="Across processes: a slowdown whose interval lies beyond it regresses, e.g. 0.1 (default 0.1)",
    )
    group.addoption(
        "--jaxperf-replay-threshold",
        dest="jaxperf_replay_threshold",
        metavar="FRACTION",
        type=_checked(fraction),
        default=None,
        help="By replay: the slowdown caught (half of it, interval above 1, regresses; default 0.05)",
    )
    group.addoption(
        "--jaxperf-allow-wide-limits",
        dest="jaxperf_allow_wide_limits",
        action="store_true",
        default=False,
        help="Record baselines with a limit beyond jaxperf_limit_ceiling even without a program to replay",
    )
    group.addoption(
        "--jaxperf-mode",
        dest="jaxperf_mode",
        choices=MODES,
        default=None,
        help="latency: each call blocked; throughput: calls dispatched back to back (default latency)",
    )
    group.addoption(
        "--jaxperf-measure-peaks",
        dest="jaxperf_measure_peaks",
        action="store_true",
        default=False,
        help="Measure the device's matmul and bandwidth ceilings on the spot instead of the table's",
    )
    group.addoption(
        "--jaxperf-explain",
        dest="jaxperf_explain",
        action="store_true",
        default=None,
        help="Explain every check judged against a baseline (the program's changes, the ops that took the "
        "time), not only the regressed ones",
    )
    group.addoption(
        "--jaxperf-profile",
        dest="jaxperf_profile",
        metavar="DIR",
        default=None,
        help="Write a profiler trace of each measured check into DIR (Perfetto and XProf open them)",
    )
    group.addoption(
        "--jaxperf-profile-on",
        dest="jaxperf_profile_on",
        choices=PROFILE_ON,
        default=None,
        help="Which checks --jaxperf-profile traces: all measured ones, or only the regressed (default all)",
    )
    group.addoption(
        "--jaxperf-cpu-devices",
        dest="jaxperf_cpu_devices",
        metavar="N",
        type=_checked(positive_int),
        default=None,
        help="Give jax's CPU backend N virtual devices (for @jaxperf.devices on a machine without GPUs)",
    )
    ini = parser.addini
    ini("jaxperf", "Measure and compare with baselines, as --jaxperf does", type="bool", default=False)
    ini("jaxperf_baselines", "Directory of committed baselines", default="baselines")
    ini("jaxperf_json", "Write every jaxperf record of the run to this JSON file", default="")
    ini("jaxperf_markdown", "Write the summary as Markdown to this file", default="")
    ini("jaxperf_benchmark_json", "Write measurements in pytest-benchmark's format to this file", default="")
    ini("jaxperf_budget", "Sampling time per measurement in seconds, at most", default="2.0")
    ini("jaxperf_ci_target", "Stop sampling when the median's 95% CI is within this fraction", default="0.02")
    ini(
        "jaxperf_threshold", "Across processes: the interval beyond it regresses (a fraction)", default="0.10"
    )
    ini(
        "jaxperf_replay_threshold",
        "By replay: the slowdown caught; beyond half of it, with an interval above 1, regresses",
        default="0.05",
    )
    ini(
        "jaxperf_limit_ceiling",
        "Widest limit a baseline without a stored program may be recorded with (a fraction)",
        default="0.5",
    )
    ini("jaxperf_mode", "Timing mode: latency or throughput", default="latency")
    ini("jaxperf_repeat", "Processes measuring each test when baselines are recorded", default="3")
    ini(
        "jaxperf_explain", "Explain every judged check, as --jaxperf-explain does", type="bool", default=False
    )
    ini("jaxperf_profile", "Write a profiler trace of each measured check into this folder", default="")
    ini("jaxperf_profile_on", "Which checks jaxperf_profile traces: all or regressed", default="all")
    ini("jaxperf_cpu_devices", "Virtual CPU devices for jax, applied before conftests load", default="")
    ini(
        "jaxperf_allow_nan",
        "A checked model's float32 output may hold NaN on its example inputs (else the check fails)",
        type="bool",
        default=False,
    )
    ini(
        "jaxperf_program_limit",
        "Largest exported program stored with a baseline (a size: 2MiB); larger ones are not stored",
        default=DEFAULT_PROGRAM_LIMIT,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    from .processes import die_with_parent

    die_with_parent()  # a noise-floor or jaxperf ab child: killed with the process that started it
    # Runs before any conftest is imported: the last moment jax's CPU device count can still be set.
    count = early_config.known_args_namespace.jaxperf_cpu_devices or early_config.getini(
        "jaxperf_cpu_devices"
    )
    if not count:
        return
    from .environment import provide_cpu_devices

    try:
        provide_cpu_devices(positive_int(count))
    except (RuntimeError, ValueError) as error:
        raise pytest.UsageError(f"jaxperf_cpu_devices: {error}") from None


def pytest_configure(config: pytest.Config) -> None:
    for help_line in MARKERS.values():
        config.addinivalue_line("markers", help_line)
    try:
        settings = PluginSettings.from_pytest_config(config)
    except ValueError as error:
        raise pytest.UsageError(f"jaxperf: {error}") from None
    problem = settings.unwritable_output()
    if problem:
        raise pytest.UsageError(f"jaxperf: {problem}; nothing was run")
    session = JaxperfSession(
        settings,
        is_worker=hasattr(config, "workerinput"),
        invocation_args=tuple(config.invocation_params.args),
    )
    config.pluginmanager.register(session, PLUGIN_NAME)


def pytest_report_header(config: pytest.Config) -> str | None:
    session = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(session, JaxperfSession) and session.settings.measure:
        from .environment import describe_environment

        return describe_environment()
    return None


def _marks(node: Any) -> Iterator[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    for mark in node.iter_markers():
        if mark.name.startswith("jaxperf_"):
            yield mark.name, tuple(mark.args), dict(mark.kwargs)


def _spec_or_fail(node: Any) -> TestSpec:
    __tracebackhide__ = True
    from .specs import MarkerError, build_spec

    try:
        return build_spec(_marks(node))
    except MarkerError as error:
        message = f"{node.nodeid}: {error}"
    # Outside the except block, so the report shows the message alone, not a chained traceback.
    pytest.fail(message, pytrace=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if not any(mark.name in MARKERS for mark in definition.iter_markers()):
        return
    spec = _spec_or_fail(definition)
    if "jaxperf" not in metafunc.fixturenames:
        own = sorted({m.name for m in definition.own_markers if m.name in MARKERS})
        if own:
            pytest.fail(
                f"{definition.nodeid}: {', '.join(own)} acts through the jaxperf fixture, which this "
                "test does not request: add a `jaxperf` argument and call jaxperf.check(model, *inputs)",
                pytrace=False,
            )
        return
    if spec.dtype is not None or spec.devices is not None:
        variants = spec.variants()
        metafunc.parametrize("jaxperf_variant", variants, indirect=True, ids=[v.case_id for v in variants])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fixture = item.stash.get(fixture_key, None)
    if fixture is not None and report.when == "call" and report.passed:
        # The test caught the recompile error itself (a broad except): it must not pass regardless.
        violation = fixture.unreported_violation()
        if violation is not None:
            report.outcome = "failed"
            report.longrepr = f"jaxperf: {violation}"
    return report


@pytest.fixture
def jaxperf_variant(request: pytest.FixtureRequest) -> Variant:
    """The optimization variant of this test case (``bf16-d8``, ...), from its jaxperf markers."""
    from .specs import DEFAULT_VARIANT

    variant: Variant = getattr(request, "param", DEFAULT_VARIANT)
    return variant


@pytest.fixture
def jaxperf(request: pytest.FixtureRequest, jaxperf_variant: Variant) -> Iterator[Jaxperf]:
    """The test's handle on pytest-jaxperf, bound to its markers and its active variant.

    ``jaxperf.check(model, *example_inputs)`` runs the checks the markers ask for (``@jaxperf.jit_warm``:
    compile, warm up, fail on any further compile with its cause); ``jaxperf.wrap(model)`` gives the
    optimized callable; ``jaxperf.variant`` is the active variant; ``with jaxperf.no_recompile(): ...``
    fails on compiles inside the block; ``jaxperf.record(name, value, unit)`` reports a figure.
    """
    from .fixture import Jaxperf
    from .records import USER_PROPERTY

    session = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    settings = session.settings if isinstance(session, JaxperfSession) else PluginSettings()
    fixture = Jaxperf(
        request.node.nodeid,
        _spec_or_fail(request.node),
        jaxperf_variant,
        settings,
        baselines=session.baseline_store if isinstance(session, JaxperfSession) else None,
    )
    request.node.stash[fixture_key] = fixture
    try:
        yield fixture
    finally:
        fixture.close()
        if fixture.records:
            request.node.user_properties.append(
                (USER_PROPERTY, [record.to_dict() for record in fixture.records])
            )
