"""Nothing lost, nothing silently wrong: the baseline store under concurrent recorders, bad contents, write
errors and interrupts. Each case was reproduced against the store before it was mended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Eight measured checks in one module: each recorder records its own share of them into the same file.
EIGHT = """
import jax
import jax.numpy as jnp
import pytest


@pytest.mark.parametrize("n", range(8))
def test_scaled(jaxperf, n):
    jaxperf.measure(jax.jit(lambda x: x * n), jnp.ones((256,)), name=f"scaled{n}")
"""


def baseline_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def records_in(directory: Path) -> dict[str, dict[str, object]]:
    """Every record of every baseline file under ``directory`` (each file must be valid JSON)."""
    found: dict[str, dict[str, object]] = {}
    for path in directory.rglob("*.json"):
        found.update(json.loads(path.read_text(encoding="utf-8"))["records"])
    return found


@pytest.mark.parametrize("recorders", [2, 4])
def test_concurrent_recorders_keep_every_record(jaxperf_pytester: pytest.Pytester, recorders: int) -> None:
    jaxperf_pytester.makepyfile(test_eight=EIGHT)
    shares = [[n for n in range(8) if n % recorders == i] for i in range(recorders)]
    recording = [sys.executable, "-m", "pytest", "test_eight.py", "-q", "--jaxperf-update-baselines"]
    commands = [
        [*recording, "--jaxperf-repeat=1", "-k", " or ".join(f"test_scaled[{n}]" for n in share)]
        for share in shares
    ]
    processes = [
        jaxperf_pytester.popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        for command in commands
    ]
    outputs = [process.communicate(timeout=600)[0].decode() for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    recorded = records_in(jaxperf_pytester.path / "baselines")
    assert sorted(recorded) == sorted(f"test_scaled[{n}]::scaled{n}" for n in range(8)), outputs
    # Nothing but the baselines is left in the folder a user commits.
    assert [p.suffix for p in baseline_files(jaxperf_pytester.path / "baselines")] == [".json"], outputs
