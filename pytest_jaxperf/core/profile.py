"""A program's calls under ``jax.profiler``: the time of each of its ops, read back in this process, and
traces written for people to open (Perfetto, XProf).

Each op of a compiled program appears in the trace as events carrying an ``hlo_op`` statistic, the
instruction's name: the CPU's thunks on the host's threads, the GPU's kernels on the device's planes.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

from ..errors import first_line

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: A profiled run lasts about this long: enough calls that a few slow ones do not decide an op's time.
PROFILED_SECONDS = 0.2
#: Calls profiled at least and at most.
FEWEST_CALLS, MOST_CALLS = 3, 50


def seconds_to_profile(one_call_seconds: float, runs: int) -> float:
    """What ``runs`` profiled runs of a program whose call takes ``one_call_seconds`` take, about."""
    return runs * calls_to_profile(one_call_seconds) * one_call_seconds


class ProfilerUnavailable(Exception):
    """No per-op times: the profiler could not start, or its trace holds no per-op events."""


def calls_to_profile(one_call_seconds: float) -> int:
    """How many calls a profiled run makes of a program whose call takes ``one_call_seconds``."""
    wanted = int(PROFILED_SECONDS / max(one_call_seconds, 1e-7))
    return max(FEWEST_CALLS, min(MOST_CALLS, wanted))


@contextlib.contextmanager
def _tracing(folder: Path, *, for_people: bool) -> Iterator[None]:
    try:
        jax.profiler.start_trace(str(folder), create_perfetto_trace=for_people)
    except Exception as error:  # another trace active, a backend without a profiler
        raise ProfilerUnavailable(f"the profiler could not start: {first_line(error)}") from None
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the body's error is the one to see
            jax.profiler.stop_trace()  # type: ignore[no-untyped-call]
        raise
    try:
        jax.profiler.stop_trace()  # type: ignore[no-untyped-call]
    except Exception as error:  # the trace could not be collected or written
        raise ProfilerUnavailable(f"the profiler could not write its trace: {first_line(error)}") from None


def _run(call: Callable[[], Any], calls: int) -> None:
    for _ in range(calls):
        jax.block_until_ready(call())  # type: ignore[no-untyped-call]


def op_seconds(call: Callable[[], Any], calls: int) -> dict[str, float]:
    """Each op's time per call (by its instruction name) over ``calls`` profiled calls of ``call``.
    :class:`ProfilerUnavailable` where the profiler cannot start or its trace has no per-op events."""
    folder = Path(tempfile.mkdtemp(prefix="jaxperf-profile-"))
    try:
        with _tracing(folder, for_people=False):
            _run(call, calls)
        totals = _per_op_totals(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {op: seconds / calls for op, seconds in totals.items()}


def write_trace(call: Callable[[], Any], calls: int, folder: Path) -> Path:
    """Profile ``calls`` calls of ``call`` into ``folder`` (XProf's ``plugins/profile/<run>/`` layout and
    a Perfetto ``perfetto_trace.json.gz``); the Perfetto file's path. ProfilerUnavailable as above."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProfilerUnavailable(f"{folder} cannot be made: {error.strerror or error}") from None
    with _tracing(folder, for_people=True):
        _run(call, calls)
    found = sorted(folder.glob("plugins/profile/*/perfetto_trace.json.gz"))
    if not found:
        raise ProfilerUnavailable(f"the profiler wrote no Perfetto trace into {folder}")
    return found[-1]


def _per_op_totals(folder: Path) -> dict[str, float]:
    """Seconds per op over the whole trace in ``folder``: the device's planes where they hold per-op
    events (a GPU's kernels), else the host's (the CPU's thunks)."""
    from jax.profiler import ProfileData

    files = sorted(folder.glob("plugins/profile/*/*.xplane.pb"))
    if not files:
        raise ProfilerUnavailable("the profiler wrote no trace")
    device: dict[str, float] = defaultdict(float)
    host: dict[str, float] = defaultdict(float)
    for plane in ProfileData.from_file(str(files[-1])).planes:
        totals = device if plane.name.startswith("/device:") else host
        for line in plane.lines:
            for event in line.events:
                stats = dict(event.stats)
                op = stats.get("hlo_op")
                if isinstance(op, str) and op:
                    totals[op] += event.duration_ns * 1e-9
    found = dict(device or host)
    if not found:
        raise ProfilerUnavailable(
            f"the trace of this backend ({jax.default_backend()}) holds no per-op events"
        )
    return found
