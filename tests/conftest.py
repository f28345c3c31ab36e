from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

#: A small Flax NNX decoder (MNIST-sized VAE decoder) written into each pytester directory.
MODELS = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx


    class Decoder(nnx.Module):
        def __init__(self, latent=32, *, rngs):
            self.linear1 = nnx.Linear(latent, 128, rngs=rngs)
            self.linear2 = nnx.Linear(128, 256, rngs=rngs)
            self.head = nnx.Linear(256, 784, rngs=rngs)

        def __call__(self, z):
            h = nnx.relu(self.linear1(z))
            h = nnx.relu(self.linear2(h))
            return nnx.sigmoid(self.head(h))


    def mlp(params, x):
        return jnp.tanh(x @ params["w"] + params["b"])


    def mlp_params():
        key = jax.random.key(0)
        return {"w": jax.random.normal(key, (32, 16)), "b": jnp.zeros((16,))}
    """
)


@pytest.fixture
def jaxperf_pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with ``models.py`` and no cache directory, run in subprocesses."""
    pytester.makepyfile(models=MODELS)
    # A short sampling budget keeps measured runs quick; the gate's logic does not depend on it.
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\njaxperf_budget = 0.3\n")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in a fresh process: jax backends, XLA flags and compile caches are per process."""
    return pytester.runpytest_subprocess(*args)


def globs(*patterns: str) -> list[str]:
    """fnmatch patterns in which ``[`` is literal (shapes such as ``f32[64,32]``), ``*`` still a glob."""
    return [pattern.replace("[", "[[]") for pattern in patterns]


def expect(
    pytester: pytest.Pytester, *args: str, lines: Sequence[str] = (), **outcomes: int
) -> pytest.RunResult:
    """Run pytest in a subprocess, check the outcome counts, then match ``lines`` in order."""
    result = run(pytester, *args)
    result.assert_outcomes(**outcomes)
    if lines:
        result.stdout.fnmatch_lines(globs(*lines))
    return result


def unwrapped(result: pytest.RunResult) -> str:
    """The run's output with its lines joined and its spaces collapsed: a sentence the summary wrapped at
    120 columns reads whole."""
    return " ".join(result.stdout.str().split())


def git(directory: Path, *args: str) -> str:
    """Run git in ``directory``, failing the test on an error; its standard output."""
    done = subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True, text=True)
    return done.stdout
