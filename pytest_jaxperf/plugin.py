"""pytest hooks and fixtures of pytest-jaxperf; each hook delegates to a module of its own concern.

Importing this module imports neither jax nor flax: a conftest must be able to configure jax first.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import pytest

from .markers import MARKERS
from .session import PLUGIN_NAME, JaxperfSession
from .settings import PluginConfig, baselines_directory

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from pathlib import Path

    from .config import TestSpec, Variant
    from .fixture import Jaxperf

# Every pytest run loads this plugin, most of them without a jaxperf marker: the marker specs, the
# fixture object and anything touching jax are imported on first use, not here.

MEASURE_OPTION = "--jaxperf"
BASELINES_OPTION = "--jaxperf-baselines"
UPDATE_OPTION = "--jaxperf-update-baselines"
JSON_OPTION = "--jaxperf-json"

fixture_key = pytest.StashKey["Jaxperf"]()


def _directory(value: str) -> Path:
    try:
        return baselines_directory(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
        type=_directory,
        default=None,
        help="Directory of committed baselines (default: ini jaxperf_baselines, else 'baselines')",
    )
    group.addoption(
        UPDATE_OPTION,
        action="store_true",
        dest="jaxperf_update_baselines",
        default=False,
        help="Record new baselines from this run (implies --jaxperf)",
    )
    group.addoption(
        JSON_OPTION,
        dest="jaxperf_json",
        metavar="PATH",
        default=None,
        help="Write every jaxperf record of the run to PATH as JSON",
    )
    parser.addini(
        "jaxperf", "Measure and compare with baselines, as --jaxperf does", type="bool", default=False
    )
    parser.addini("jaxperf_baselines", "Directory of committed baselines", default="baselines")
    parser.addini("jaxperf_json", "Write every jaxperf record of the run to this JSON file", default="")


def pytest_configure(config: pytest.Config) -> None:
    for help_line in MARKERS.values():
        config.addinivalue_line("markers", help_line)
    try:
        settings = PluginConfig.from_pytest_config(config)
    except ValueError as error:
        raise pytest.UsageError(f"jaxperf: {error}") from None
    if settings.update_baselines:
        # Refuse rather than pretend: the regression gate that reads and writes baselines is not part
        # of this version, so nothing could be recorded.
        raise pytest.UsageError(
            f"{UPDATE_OPTION}: this version of pytest-jaxperf measures but does not yet record "
            f"baselines; nothing would be written to {settings.baselines_dir}"
        )
    session = JaxperfSession(settings, is_worker=hasattr(config, "workerinput"))
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
    from .config import MarkerError, build_spec

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
    from .config import DEFAULT_VARIANT

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
    settings = session.settings if isinstance(session, JaxperfSession) else PluginConfig()
    fixture = Jaxperf(request.node.nodeid, _spec_or_fail(request.node), jaxperf_variant, settings)
    request.node.stash[fixture_key] = fixture
    try:
        yield fixture
    finally:
        fixture.close()
        if fixture.records:
            request.node.user_properties.append(
                (USER_PROPERTY, [record.to_dict() for record in fixture.records])
            )
