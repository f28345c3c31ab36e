"""The compile watch as a library (watch_compiles, CompileWatch) and the signature diff, in process."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pytest_jaxperf as jaxperf
from pytest_jaxperf.core.signature import Leaf, describe_call, explain_difference


def test_watch_records_each_compile_with_its_cause() -> None:
    @functools.partial(jax.jit, static_argnames="n")
    def power(x, n=2):
        return x**n

    watched = jaxperf.watch_compiles(power)
    watched(jnp.ones((4, 3)))
    watched(jnp.ones((4, 3)))  # cache hit: nothing recorded
    watched(jnp.ones((5, 3)))
    watched(jnp.ones((5, 3), jnp.bfloat16))
    watched(jnp.ones((5, 3), jnp.bfloat16), n=3)
    assert watched.calls == 5
    assert [c.call for c in watched.compiles] == [1, 3, 4, 5]
    assert watched.compiles[0].reasons == ("first compile",)
    assert watched.compiles[1].reasons == (
        "x: f32[4,3] on cpu:0 → f32[5,3] on cpu:0 (shape [4, 3] → [5, 3])",
    )
    assert "dtype float32 → bfloat16" in watched.compiles[2].reasons[0]
    assert any("n: value changed int 2 → int 3" in r for r in watched.compiles[3].reasons)
    assert all(c.seconds > 0 for c in watched.compiles)


def test_watch_raises_past_max_compiles_and_keeps_the_error() -> None:
    watched = jaxperf.watch_compiles(jax.jit(lambda x: x + 1), max_compiles=1)
    watched(jnp.ones(3))
    with pytest.raises(jaxperf.RecompileError, match=r"compiled 2 times, more than max_compiles=1") as info:
        watched(jnp.ones(4))
    assert watched.violation is info.value


def test_compile_watch_block_counts_only_named_functions() -> None:
    @jax.jit
    def inside(x):
        return x * 3

    @jax.jit
    def other(x):
        return x - 3

    with jaxperf.CompileWatch(inside, max_compiles=None) as watch:
        inside(jnp.ones(7))
        other(jnp.ones(7))
        jnp.arange(11.0)  # an eager op compiles too, under its own name
    assert watch.count == 1
    assert watch.events[0].fun_name == "jit(inside)"
    with pytest.raises(jaxperf.RecompileError, match="1 compile"), jaxperf.CompileWatch(other):
        other(jnp.ones(8))


def test_explain_weak_type_numpy_and_pytree_changes() -> None:
    def f(params, x):
        return x

    first = describe_call(f, ({"w": jnp.ones((2, 2))}, jnp.ones(3)), {})
    assert first["x"] == Leaf("array", "float32", (3,), False, "cpu:0")
    weak = describe_call(f, ({"w": jnp.ones((2, 2))}, 1.5), {})
    assert explain_difference(weak, [first])[0].startswith("x: Python float 1.5 now, f32[3] on cpu:0 before")
    host = describe_call(f, ({"w": np.ones((2, 2), np.float32)}, jnp.ones(3)), {})
    assert explain_difference(host, [first]) == [
        "params['w']: f32[2,2] on cpu:0 → f32[2,2] numpy array (array → numpy; device/sharding cpu:0 → ?)"
    ]
    grown = describe_call(f, ({"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, jnp.ones(3)), {})
    assert explain_difference(grown, [first]) == [
        "params['b']: new argument leaf f32[2] on cpu:0 (the pytree structure changed)"
    ]
    assert "something outside the arguments changed" in explain_difference(first, [first])[0]


def test_closest_earlier_signature_is_the_reference() -> None:
    def f(x, y):
        return x

    def sig(nx: int, ny: int):
        return describe_call(f, (jnp.ones(nx), jnp.ones(ny)), {})

    # Against (3, 9) only y differs; against (64, 64) both do: the explanation names y alone.
    assert explain_difference(sig(3, 10), [sig(64, 64), sig(3, 9)]) == [
        "y: f32[9] on cpu:0 → f32[10] on cpu:0 (shape [9] → [10])"
    ]
