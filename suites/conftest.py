"""The suites run with 8 virtual CPU devices (on a CPU machine), so that ``@jaxperf.devices(1, 2, 8)``
cases run for real; on a GPU machine the real devices are used and this changes nothing."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--gate-benchmarks",
        action="store_true",
        help="also run the benchmarks of the gate itself (test_gate_accuracy.py, test_ab_accuracy.py): "
        "minutes of fresh processes, left out of the main job",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("gate_benchmarks"):
        return
    reason = (
        "a benchmark of the gate itself (minutes of fresh processes): run on purpose with --gate-benchmarks"
    )
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("gate_benchmark"):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gate_benchmark: a benchmark of the gate itself, run with --gate-benchmarks"
    )
    # Same effect as `jaxperf_cpu_devices = 8` in an ini file, kept here so the plugin's own tests
    # (and their subprocesses) keep one device.
    if not config.getoption("jaxperf_cpu_devices"):
        from pytest_jaxperf.environment import provide_cpu_devices

        provide_cpu_devices(8)
    # The regression gate checks the same generated inputs on every run (hypothesis's own "ci" profile
    # does the same on CI); a profile chosen with --hypothesis-profile wins. 40 inputs a variant keep the
    # main job within its 10 minutes (100 took 70 s more for the same minima, but for the DCGAN's int8).
    if config.getoption("hypothesis_profile", None) is None:
        from hypothesis import settings

        settings.register_profile(
            "jaxperf-suites", max_examples=40, derandomize=True, database=None, deadline=None
        )
        settings.load_profile("jaxperf-suites")
