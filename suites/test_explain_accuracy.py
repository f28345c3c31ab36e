"""Whether the explanation of a regression names the op that regressed, and what it costs.

Three regressions are injected into the suites' DiT block, each through the activation of its MLP
(``nnx.gelu``, replaced in a fresh process), as a person could have written them:

- **a prevented fusion**: a NaN guard written as a branch (``lax.cond`` on whether the GELU's inner term
  is finite), which makes XLA materialize the term and compute the activation in pieces around the
  conditional;
- **a float32 upcast in the bf16 variant**: the GELU computed in float32 and not cast back, which drags the
  MLP's down projection to a float32 matmul (on a CPU, whose XLA computes bf16 matmuls in float32 anyway,
  what changes is where the activation is converted);
- **a transpose before a matmul**: the hidden activations laid out anew (a swap of two axes of a reshape),
  a real transpose that XLA cannot fold into the down projection's dot.

Baselines are recorded from the unchanged block; each injected run is judged with ``--jaxperf-explain``
(so that the explanation is there whatever the timing tier says on a busy machine). Its top line must name
the op: the split fusion, the upcast, the transpose. The program comparison is exact; the time breakdown
that follows it depends on the machine's load and is reported, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suites.marks import cpu_runner_benchmark, gate_benchmark

pytestmark = [gate_benchmark, cpu_runner_benchmark]

REPOSITORY = Path(__file__).parent.parent

CASES = """
import os

import jax
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf
from suites.models.dit import DiTBlock

INJECT = os.environ.get("INJECT", "")
gelu = nnx.gelu


def injected_gelu(x, approximate=False):
    if INJECT == "fusion":
        inner = x * (1 + 0.044715 * x * x)
        inner = jax.lax.cond(jnp.isfinite(inner).all(), lambda v: v, jnp.nan_to_num, inner)
        return 0.5 * x * (1 + jnp.tanh(0.7978845608 * inner))
    if INJECT == "upcast":
        return gelu(x.astype(jnp.float32), approximate=approximate)
    if INJECT == "transpose":
        b, n, w = x.shape
        x = jnp.swapaxes(x.reshape(b, n, 32, w // 32), 2, 3).reshape(b, n, w)
    return gelu(x, approximate=approximate)


nnx.gelu = injected_gelu


@jaxperf.jit_warm
# The input range suites/test_precision.py checks the block over (its tokens and conditioning are
# embeddings of unit scale).
@jaxperf.dtype("fp32", "bf16", input_scale=(1e-3, 3.0), input_kinds=("gaussian", "positive"))
def test_dit(jaxperf):
    model = DiTBlock(rngs=nnx.Rngs(0))
    key = jax.random.key(0)
    jaxperf.check(model, jax.random.normal(key, (8, 64, 384)), jax.random.normal(key, (8, 384)))
"""

#: The injection, the variant it is judged in, and whether the explanation's top change names its op.
INJECTIONS = {
    "fusion": (
        "fp32",
        # the guard's test named, and the MLP's hidden activation (8×64×1536) fused apart around it
        lambda change: change["kind"] == "kernels"
        and "(is-finite)" in change["description"].split("gone", 1)[0]
        and "(add+multiply) f32[8,64,1536]" in change["description"].split("gone", 1)[0],
    ),
    "upcast": (
        "bf16",
        # a matmul now in float32 (on a GPU, where bf16 matmuls stay bf16); or, on a CPU, whose XLA runs
        # bf16 matmuls in float32 already, the converts of the MLP's hidden activation to float32
        lambda change: (change["kind"] == "dots" and change["description"].startswith("dot f32[")
                        and change["current"] > change["baseline"])
        or (change["kind"] == "converts" and "[8,64,1536] → f32" in change["description"]),
    ),
    "transpose": ("fp32", lambda change: change["kind"] == "transposes"),
}  # fmt: skip


def run(folder: Path, *args: str, inject: str = "") -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "INJECT": inject, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("explain")
    (folder / "test_dit.py").write_text(CASES)
    (folder / "pytest.ini").write_text("[pytest]\njaxperf_budget = 0.5\n")
    done = run(folder, "--jaxperf-update-baselines", "--jaxperf-repeat=1")
    assert done.returncode == 0, done.stdout[-3000:]
    return folder


@pytest.mark.parametrize("inject", list(INJECTIONS))
def test_the_explanation_names_the_injected_op(jaxperf, recorded: Path, inject: str) -> None:
    variant, names_it = INJECTIONS[inject]
    results = f"results-{inject}.json"
    done = run(recorded, "--jaxperf", "--jaxperf-explain", f"--jaxperf-json={results}", inject=inject)
    assert done.returncode in (0, 1), done.stdout[-3000:]
    records = json.loads((recorded / results).read_text())["records"]
    (record,) = [r for r in records if r["kind"] == "check" and f"[{variant}]" in r["nodeid"]]
    explanation = record["explanation"]
    top = explanation["program_changes"][0]
    named = bool(names_it(top))
    slowest = explanation.get("op_times", [{}])[0]
    print(
        f"\n{inject} ({variant}): verdict {record['verdict']['status']}; top line: {explanation['headline']}"
        f"\n    op that added most time: {slowest.get('op')} ({slowest.get('description')}), share "
        f"{slowest.get('share')}; explanation took {explanation['seconds']:.2f} s"
    )
    jaxperf.record(f"{inject}: the explanation's top line names the injected op", int(named), "yes=1")
    jaxperf.record(f"{inject}: seconds the explanation added to the check", explanation["seconds"], "s")
    assert named, explanation["headline"]
