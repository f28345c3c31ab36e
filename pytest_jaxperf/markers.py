"""The public marker decorators: thin, documented handles on the registered pytest marks.

Each works bare (``@jaxperf.jit_warm``) or called (``@jaxperf.jit_warm(max_compiles=2)``), exactly like
``@pytest.mark.jaxperf_jit_warm``. Arguments are not checked here but at collection, where a bad one can
be reported against the test that carries it (:mod:`pytest_jaxperf.specs`).
"""

from __future__ import annotations

from typing import Any

#: Registered markers and the help line ``pytest --markers`` shows for each.
MARKERS = {
    "jaxperf_jit_warm": (
        "jaxperf_jit_warm(warmup=2, max_compiles=1): JIT-compile the model under test, warm it up on "
        "the example inputs, and fail when it compiles more than max_compiles times"
    ),
    "jaxperf_dtype": (
        "jaxperf_dtype(*names, min_sqnr_db=None, max_examples=None, input_scale=(1e-3, 1e3), "
        "input_kinds=('gaussian', 'spike', 'positive', 'constant', 'zero'), int_range=None): one case "
        "per precision (float32/fp32, bfloat16/bf16, float16/fp16, int8, int8-dynamic), audited and "
        "checked against float32 on generated inputs"
    ),
    "jaxperf_devices": (
        "jaxperf_devices(*counts, platform=None): one case per device count the batch is sharded over"
    ),
    "jaxperf_gate": (
        "jaxperf_gate(threshold=None, mode=None, budget_seconds=None): this test's regression threshold "
        "(a fraction), timing mode (latency or throughput) and sampling budget under --jaxperf"
    ),
    "jaxperf_memory": (
        "jaxperf_memory(max_bytes): fail when the compiled model needs more device memory than "
        "max_bytes (an int or a string such as '512MiB')"
    ),
}


def _mark(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Imported here: `import pytest_jaxperf` stays cheap for scripts that only use the library.
    import pytest

    # MarkDecorator applies itself when handed a single test function or class (the bare form) and
    # otherwise returns a new decorator carrying the arguments.
    return getattr(pytest.mark, name)(*args, **kwargs)


def jit_warm(*args: Any, **kwargs: Any) -> Any:
    """Mark a test: ``jaxperf.wrap``/``check`` JIT-compile the model and warm it up.

    ``@jaxperf.jit_warm`` or ``@jaxperf.jit_warm(warmup=2, max_compiles=1)``. The model is called
    ``warmup`` times on the example inputs (the first call compiles; compile time and first-call time
    are recorded apart from the steady calls). Any compile beyond ``max_compiles`` during the test fails
    it, naming what changed: shape, dtype, weak type, static argument, keyword versus default, device.
    """
    return _mark("jaxperf_jit_warm", args, kwargs)


def dtype(*args: Any, **kwargs: Any) -> Any:
    """Mark a test to run once per compute dtype: ``@jaxperf.dtype("bf16", "fp16", "int8")``.

    Cases get ids ``[bf16]``, ``[fp16]``, …; the ``jaxperf`` fixture's ``variant`` tells which is active.
    ``wrap``/``check`` run the model in that precision, audit what its matmuls compute in, and (but for
    float32) compare it with float32 on hypothesis-generated inputs. Keywords: ``min_sqnr_db`` (the
    output-SQNR floor: a number or a per-dtype dict), ``max_examples`` (generated inputs), ``input_scale``
    (the magnitudes they span, default ``(1e-3, 1e3)``), ``input_kinds`` (the kinds of input drawn,
    default all of ``gaussian``, ``spike``, ``positive``, ``constant``, ``zero``), ``int_range`` (the
    values generated integer inputs such as token ids take, both ends included; default each integer
    input's own range in the example).
    """
    return _mark("jaxperf_dtype", args, kwargs)


def devices(*args: Any, **kwargs: Any) -> Any:
    """Mark a test to run once per device count: ``@jaxperf.devices(1, 8, platform=None)``.

    Cases get ids ``[d1]``, ``[d8]``; combined with ``dtype`` they read ``[bf16-d8]``.
    """
    return _mark("jaxperf_devices", args, kwargs)


def memory(*args: Any, **kwargs: Any) -> Any:
    """Mark a test with a device-memory budget: ``@jaxperf.memory(max_bytes="2GiB")``."""
    return _mark("jaxperf_memory", args, kwargs)


def gate(*args: Any, **kwargs: Any) -> Any:
    """This test's measurement settings: ``@jaxperf.gate(threshold=0.2, mode="throughput")``.

    ``threshold``: the smallest slowdown (a fraction) called a regression, before the noise floor raises
    it; ``mode``: ``latency`` or ``throughput``; ``budget_seconds``: sampling time, at most.
    """
    return _mark("jaxperf_gate", args, kwargs)
