"""Pure logic of marker validation, byte sizes and variant ids (no jax, no pytester)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_jaxperf.specs import (
    DTYPE_NAMES,
    JitWarmSpec,
    MarkerError,
    TestSpec,
    Variant,
    build_spec,
    parse_bytes,
    parse_dtype,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (2048, 2048),
        ("2048", 2048),
        ("1KB", 1000),
        ("1 KiB", 1024),
        ("512MiB", 512 * 1024**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("2 gb", 2 * 10**9),
    ],
)
def test_parse_bytes(text: object, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", [0, -1, "0MiB", "-5MiB", "12 parsecs", "MiB", "", None, True, 1.5e9])
def test_parse_bytes_rejects_naming_the_value(bad: object) -> None:
    with pytest.raises(
        ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        parse_bytes(bad)


@settings(deadline=None, max_examples=200)
@given(st.integers(min_value=1, max_value=2**50), st.sampled_from(["KiB", "MiB", "GiB", "KB", "MB", "GB"]))
def test_parse_bytes_whole_units(count: int, unit: str) -> None:
    factor = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 10**3, "MB": 10**6, "GB": 10**9}[unit]
    if count * factor < 2**53:  # exact in a float: the parser reads the number as one
        assert parse_bytes(f"{count}{unit}") == count * factor


def test_specs_are_frozen() -> None:
    spec = JitWarmSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.warmup = 3  # type: ignore[misc]


def test_closest_mark_wins_and_unknown_marks_are_ignored() -> None:
    spec = build_spec(
        [
            ("jaxperf_jit_warm", (), {"max_compiles": 3}),
            ("parametrize", ("x", [1]), {}),
            ("jaxperf_jit_warm", (), {"max_compiles": 9}),
        ]
    )
    assert spec == TestSpec(jit_warm=JitWarmSpec(max_compiles=3))


def test_variant_ids() -> None:
    spec = build_spec([("jaxperf_dtype", ("bfloat16", "fp32"), {}), ("jaxperf_devices", (8,), {})])
    assert [v.case_id for v in spec.variants()] == ["bf16-d8", "fp32-d8"]
    assert Variant().id == "fp32-d1"
    assert Variant("int8-dynamic", 2).id == "int8-dynamic-d2"


def test_dtype_aliases_and_sqnr_per_name() -> None:
    spec = parse_dtype(("BF16", "int8"), {"min_sqnr_db": {"bf16": 40, "int8": 25.5}})
    assert spec.names == ("bfloat16", "int8")
    assert spec.min_sqnr_db == {"bfloat16": 40.0, "int8": 25.5}
    assert set(DTYPE_NAMES.values()) == {"float32", "bfloat16", "float16", "int8", "int8-dynamic"}
    with pytest.raises(MarkerError, match=r"min_sqnr_db\['fp8'\]|unknown dtype 'fp8'"):
        parse_dtype(("bf16",), {"min_sqnr_db": {"fp8": 3}})


def test_importing_every_submodule_leaves_the_public_decorators_in_place() -> None:
    # A submodule named like a public function would replace it on the package once imported.
    import importlib
    import pkgutil

    import pytest_jaxperf

    for module in pkgutil.walk_packages(pytest_jaxperf.__path__, "pytest_jaxperf."):
        importlib.import_module(module.name)
    for name in ("jit_warm", "dtype", "devices", "memory", "gate"):
        assert getattr(pytest_jaxperf, name).__module__ == "pytest_jaxperf.markers", name
