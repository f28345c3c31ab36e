"""pytest hooks and fixtures of pytest-jaxperf; each hook delegates to a module of its own concern.

Importing this module imports neither jax nor flax: a conftest must be able to configure jax first.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pytest

from .markers import MARKERS
from .options import SETTINGS, ini_settings, positive_int
from .session import PLUGIN_NAME, JaxperfSession
from .settings import PluginSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from .fixture import Jaxperf
    from .specs import TestSpec, Variant

# Every pytest run loads this plugin, most of them without a jaxperf marker: the marker specs, the
# fixture object and anything touching jax are imported on first use, not here.

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
    # Every option, ini value, default and help text comes from the one table of settings.
    group = parser.getgroup("jaxperf", "JAX/Flax performance checks (pytest-jaxperf)")
    for setting in SETTINGS:
        if setting.option is not None:
            group.addoption(setting.option, **setting.option_arguments(_checked))
    for setting in ini_settings():
        parser.addini(setting.key, setting.ini_help, type=setting.ini_type, default=setting.ini_default)


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
