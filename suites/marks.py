"""Marks the suites share."""

from __future__ import annotations

import os

import jax
import pytest

#: The benchmarks of the gate itself (false alarms, detection), some twenty fresh processes each: figures
#: about the plugin, not about the models, so the main job leaves them out (saying so) and they run on
#: purpose with ``--gate-benchmarks`` (CI's plain run of the suites passes it). See ``conftest.py``.
gate_benchmark = pytest.mark.gate_benchmark

#: They measure the gate on the kind of machine CI runs on, a shared CPU runner. On an accelerator each of
#: those processes starts the device, more than the suite's time allows; run them there on purpose with
#: JAXPERF_ACCURACY_ON_ACCELERATOR=1.
cpu_runner_benchmark = pytest.mark.skipif(
    jax.default_backend() != "cpu" and not os.environ.get("JAXPERF_ACCURACY_ON_ACCELERATOR"),
    reason="measures the gate on a CPU runner, as CI's; JAXPERF_ACCURACY_ON_ACCELERATOR=1 runs it here",
)
