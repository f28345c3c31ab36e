# ruff: noqa: E501 (HLO lines as XLA prints them)
"""Optimized HLO read as a person reads it, and two programs compared (pure logic, on HLO text as XLA
prints it)."""

from __future__ import annotations

from pytest_jaxperf.core.hlo import array_bytes, inventory, program_changes

BASELINE = """HloModule jit_f, is_scheduled=true

%fused_dot (p0: bf16[64,784], p1: bf16[784,256]) -> bf16[64,256] {
  %p0 = bf16[64,784]{1,0} parameter(0)
  %p1 = bf16[784,256]{1,0} parameter(1)
  ROOT %dot.1 = bf16[64,256]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%fused_gelu (p0.1: bf16[64,256]) -> bf16[64,256] {
  %p0.1 = bf16[64,256]{1,0} parameter(0)
  %c = bf16[] constant(0.5)
  %b = bf16[64,256]{1,0} broadcast(%c), dimensions={}
  %m = bf16[64,256]{1,0} multiply(%p0.1, %b)
  %t = bf16[64,256]{1,0} tanh(%m)
  ROOT %a = bf16[64,256]{1,0} add(%t, %m)
}

%body (state: (s32[], bf16[64,256])) -> (s32[], bf16[64,256]) {
  %state = (s32[], bf16[64,256]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %h = bf16[64,256]{1,0} get-tuple-element(%state), index=1
  %r = bf16[64,256]{1,0} all-reduce(%h), replica_groups={}, to_apply=%sum
  ROOT %out = (s32[], bf16[64,256]{1,0}) tuple(%i, %r)
}

%sum (x: bf16[], y: bf16[]) -> bf16[] {
  %x = bf16[] parameter(0)
  %y = bf16[] parameter(1)
  ROOT %s = bf16[] add(%x, %y)
}

ENTRY %main (x: bf16[64,784], w: bf16[784,256]) -> bf16[64,256] {
  %x = bf16[64,784]{1,0} parameter(0)
  %w = bf16[784,256]{1,0} parameter(1)
  %dot_fusion = bf16[64,256]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_dot, backend_config={"fusion_config":{"kind":"__ynn_fusion"},"outer_dimension_partitions":[]}
  %gelu_fusion = bf16[64,256]{1,0} fusion(%dot_fusion), kind=kLoop, calls=%fused_gelu
  %init = (s32[], bf16[64,256]{1,0}) tuple(%x, %gelu_fusion)
  ROOT %loop = (s32[], bf16[64,256]{1,0}) while(%init), condition=%cond, body=%body
}
"""

# The same program with its matmul upcast to float32: two converts feed an unfused f32 dot.
UPCAST = BASELINE.replace(
    """  %dot_fusion = bf16[64,256]{1,0} fusion(%x, %w), kind=kCustom, calls=%fused_dot, backend_config={"fusion_config":{"kind":"__ynn_fusion"},"outer_dimension_partitions":[]}
  %gelu_fusion = bf16[64,256]{1,0} fusion(%dot_fusion), kind=kLoop, calls=%fused_gelu""",
    """  %cx = f32[64,784]{1,0} convert(%x)
  %cw = f32[784,256]{1,0} convert(%w)
  %dot.9 = f32[64,256]{1,0} dot(%cx, %cw), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %back = bf16[64,256]{1,0} convert(%dot.9)
  %gelu_fusion = bf16[64,256]{1,0} fusion(%back), kind=kLoop, calls=%fused_gelu""",
)


def test_sizes_of_arrays_tuples_and_narrow_floats() -> None:
    assert array_bytes("f32[64,256]{1,0}") == 64 * 256 * 4
    assert array_bytes("(s32[], bf16[3]{0})") == 4 + 6
    assert array_bytes("f8e4m3fn[4,4]{1,0}") == 16
    assert array_bytes("pred[]") == 1


def test_kernels_are_the_fusions_and_unfused_ops_of_the_entry_and_of_loop_bodies() -> None:
    program = inventory(BASELINE)
    assert [(k.name, k.description) for k in program.kernels] == [
        ("dot_fusion", "ynn fusion (dot) bf16[64,256]"),
        # broadcast and constant move data: left out of what the fusion computes
        ("gelu_fusion", "loop fusion (add+multiply+tanh) bf16[64,256]"),
        ("loop", "while (s32[], bf16[64,256])"),
        # the loop body's collective is a kernel; the reducer it applies is not read
        ("r", "all-reduce bf16[64,256]"),
    ]
    assert program.features["dots"] == {"dot bf16[64,784] × bf16[784,256] → bf16[64,256]": 1}
    assert program.features["collectives"] == {"all-reduce bf16[64,256]": 1}
    assert program.counts["ynn fusions"] == 1
    assert program.counts["loop fusions"] == 1
    assert program.counts["kernels"] == 4
    assert program.kernel_named("gelu_fusion") is not None


def test_an_upcast_matmul_is_named_by_its_dtypes_and_converts_largest_first() -> None:
    changes = program_changes(inventory(BASELINE), inventory(UPCAST))
    described = [change.description for change in changes]
    # The matmuls first, whatever the bytes of the converts around them: the f32 dot, then the bf16 dot it
    # replaced; then the upcast of the weights, which touches the most bytes of the rest.
    assert described[:3] == [
        "dot f32[64,784] × f32[784,256] → f32[64,256]: 0 → 1",
        "dot bf16[64,784] × bf16[784,256] → bf16[64,256]: 1 → 0",
        "convert bf16[784,256] → f32: 0 → 1",
    ]
    kernels = next(change for change in changes if change.kind == "kernels")
    assert kernels.description.startswith("kernels 4 → 7: added ")
    assert "gone ynn fusion (dot) bf16[64,256]" in kernels.description
    rest = [change.bytes for change in changes[2:]]
    assert rest == sorted(rest, reverse=True)


def test_the_same_program_has_no_changes_and_byte_changes_are_listed() -> None:
    program = inventory(BASELINE)
    assert program_changes(program, program) == []
    (change,) = program_changes(
        program,
        program,
        baseline_bytes={"temporary bytes": 1024, "parameter bytes": 10},
        current_bytes={"temporary bytes": 3072, "parameter bytes": 10},
    )
    assert (change.kind, change.description, change.bytes) == (
        "temporary bytes",
        "temporary bytes: 1.0 KiB → 3.0 KiB",
        2048,
    )


# As XLA's GPU backend prints a program: kernels inside a command buffer (a call), a Triton GEMM and a
# cuDNN fusion named in fusion_backend_config, a cuBLAS call made asynchronous, a conditional of two
# branches.
GPU = """HloModule jit_f, is_scheduled=true

%triton_gemm (p0: bf16[64,784], p1: bf16[784,256]) -> bf16[64,256] {
  %p0 = bf16[64,784]{1,0} parameter(0)
  %p1 = bf16[784,256]{1,0} parameter(1)
  ROOT %dot.1 = bf16[64,256]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%cudnn (p0.2: bf16[64,256]) -> bf16[64,256] {
  %p0.2 = bf16[64,256]{1,0} parameter(0)
  ROOT %t = bf16[64,256]{1,0} tanh(%p0.2)
}

%command_buffer (x.2: bf16[64,784], w.2: bf16[784,256]) -> bf16[64,256] {
  %x.2 = bf16[64,784]{1,0} parameter(0)
  %w.2 = bf16[784,256]{1,0} parameter(1)
  %gemm_fusion = bf16[64,256]{1,0} fusion(%x.2, %w.2), kind=kCustom, calls=%triton_gemm, backend_config={"operation_queue_id":"0","fusion_backend_config":{"kind":"__triton_gemm","triton_gemm_config":{"block_m":"64"}}}
  ROOT %cudnn_fusion = bf16[64,256]{1,0} fusion(%gemm_fusion), kind=kCustom, calls=%cudnn, backend_config={"fusion_backend_config":{"kind":"__cudnn$fusion"}}
}

%async_gemm (a.3: f32[64,256], b.3: f32[256,256]) -> (f32[64,256], s8[1024]) {
  %a.3 = f32[64,256]{1,0} parameter(0)
  %b.3 = f32[256,256]{1,0} parameter(1)
  ROOT %cublas = (f32[64,256]{1,0}, s8[1024]{0}) custom-call(%a.3, %b.3), custom_call_target="__cublas$gemm"
}

%then (t.4: f32[64,256]) -> f32[64,256] {
  %t.4 = f32[64,256]{1,0} parameter(0)
  ROOT %negate.1 = f32[64,256]{1,0} negate(%t.4)
}

%else (e.4: f32[64,256]) -> f32[64,256] {
  %e.4 = f32[64,256]{1,0} parameter(0)
  ROOT %exp.1 = f32[64,256]{1,0} exponential(%e.4)
}

ENTRY %main (x: bf16[64,784], w: bf16[784,256], a: f32[64,256], b: f32[256,256], i: s32[]) -> f32[64,256] {
  %x = bf16[64,784]{1,0} parameter(0)
  %w = bf16[784,256]{1,0} parameter(1)
  %a = f32[64,256]{1,0} parameter(2)
  %b = f32[256,256]{1,0} parameter(3)
  %i = s32[] parameter(4)
  %call = bf16[64,256]{1,0} call(%x, %w), to_apply=%command_buffer
  %start = ((f32[64,256]{1,0}, f32[256,256]{1,0}), (f32[64,256]{1,0}, s8[1024]{0}), s32[]) async-start(%a, %b), calls=%async_gemm
  %done = (f32[64,256]{1,0}, s8[1024]{0}) async-done(%start)
  %product = f32[64,256]{1,0} get-tuple-element(%done), index=0
  ROOT %branch = f32[64,256]{1,0} conditional(%i, %product, %product), branch_computations={%then, %else}
}
"""


def test_gpu_kernels_inside_command_buffers_async_ops_and_every_branch_are_read() -> None:
    program = inventory(GPU)
    assert [(k.name, k.description, k.container) for k in program.kernels] == [
        ("gemm_fusion", "triton_gemm fusion (dot) bf16[64,256]", False),
        ("cudnn_fusion", "cudnn fusion (tanh) bf16[64,256]", False),
        ("cublas", "custom-call (f32[64,256], s8[1024])", False),
        ("branch", "conditional f32[64,256]", True),
        ("negate.1", "negate f32[64,256]", False),
        ("exp.1", "exponential f32[64,256]", False),
    ]
    assert program.features["dots"] == {"dot bf16[64,784] × bf16[784,256] → bf16[64,256]": 1}
    assert program.features["custom calls"] == {"custom call __cublas$gemm → (f32[64,256], s8[1024])": 1}
