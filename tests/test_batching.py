"""Buckets, batch sweeps, the dynamic batcher under load and failure, and the pipeline split."""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pytest_jaxperf.core.compiles import watch_compiles
from pytest_jaxperf.core.timing import TimingConfig
from pytest_jaxperf.optimize.batching import BucketedModel, batch_sweep, bucket_for
from pytest_jaxperf.optimize.serving import BatcherClosed, DynamicBatcher

from .conftest import expect


def affine(x):
    return x * 2.0 + 1.0


def test_a_request_of_five_runs_in_the_eight_bucket() -> None:
    model = BucketedModel(jax.jit(affine), buckets=(1, 8, 64))
    for rows in (5, 3, 8, 7, 1, 40):
        x = jnp.arange(rows * 4, dtype=jnp.float32).reshape(rows, 4)
        np.testing.assert_array_equal(model(x), affine(x))
    # Three buckets used (8, 1, 64), each compiled once, whatever the request sizes.
    assert [c.signature["x"].shape for c in model.watched.compiles] == [(8, 4), (1, 4), (64, 4)]
    assert bucket_for(9, (1, 8, 64)) == 64
    with pytest.raises(ValueError, match="a batch of 65 rows exceeds the largest bucket, 64"):
        bucket_for(65, (1, 8, 64))


def test_batch_sweep_compiles_once_per_size_and_finds_saturation() -> None:
    watched = watch_compiles(jax.jit(lambda x: jnp.tanh(x @ jnp.ones((64, 64)))))
    sweep = batch_sweep(
        watched, jnp.ones((2, 64)), sizes=(1, 4, 16, 256), config=TimingConfig(budget_seconds=0.1)
    )
    assert [p.batch for p in sweep.points] == [1, 4, 16, 256]
    assert [p.compiles for p in sweep.points] == [1, 1, 1, 1]
    assert all(p.throughput == pytest.approx(p.batch / p.latency_seconds) for p in sweep.points)
    assert sweep.saturation in (1, 4, 16, 256)
    assert sweep.lines()[-1] == f"throughput saturates at batch {sweep.saturation}"


def test_batcher_answers_a_thousand_concurrent_requests_with_their_own_rows() -> None:
    compiled = watch_compiles(jax.jit(affine))

    async def client(batcher: DynamicBatcher, ids: list[int]) -> list[tuple[int, np.ndarray]]:
        answers = []
        for i in ids:
            await asyncio.sleep(random.random() * 0.001)
            answers.append((i, await batcher.submit(jnp.full((3,), i, jnp.float32))))
        return answers

    async def main() -> DynamicBatcher:
        async with DynamicBatcher(compiled, max_batch_size=32, timeout=0.002) as batcher:
            await batcher.warm_up(jnp.zeros((3,)))
            assert [c.signature["x"].shape[0] for c in compiled.compiles] == [1, 2, 4, 8, 16, 32]
            chunks = [list(range(start, 1000, 50)) for start in range(50)]  # 50 tasks, 20 requests each
            results = await asyncio.gather(*(client(batcher, ids) for ids in chunks))
        answered = dict(pair for chunk in results for pair in chunk)
        assert sorted(answered) == list(range(1000))
        for i, row in answered.items():
            np.testing.assert_array_equal(row, np.full((3,), 2.0 * i + 1.0))
        return batcher

    batcher = asyncio.run(main())
    assert batcher.stats.rows == 1000
    # Warm, serving a thousand requests of every batch size compiled nothing more.
    assert len(compiled.compiles) == 6
    assert batcher.stats.percentile(0.5) <= batcher.stats.percentile(0.99)


def test_a_failing_batch_fails_only_its_requests_and_serving_goes_on() -> None:
    def model(x):
        if bool(jnp.any(x < 0)):
            raise ValueError("negative input")
        return affine(x)

    async def main() -> None:
        async with DynamicBatcher(model, max_batch_size=4, timeout=0.01) as batcher:
            bad = [batcher.submit(jnp.array([-1.0])) for _ in range(2)]
            results = await asyncio.gather(*bad, return_exceptions=True)
            assert all(isinstance(r, ValueError) for r in results)
            assert float((await batcher.submit(jnp.array([3.0])))[0]) == 7.0
            assert batcher.stats.failed_batches == 1

    asyncio.run(main())


def test_cancelling_a_waiting_request_is_safe() -> None:
    async def main() -> None:
        async with DynamicBatcher(affine, max_batch_size=8, timeout=0.05) as batcher:
            waiting = asyncio.ensure_future(batcher.submit(jnp.array([1.0])))
            kept = asyncio.ensure_future(batcher.submit(jnp.array([2.0])))
            await asyncio.sleep(0.001)
            waiting.cancel()
            assert float((await kept)[0]) == 5.0
            assert waiting.cancelled()
        assert batcher.stats.rows == 1

    asyncio.run(main())


def test_close_drains_or_rejects_and_nothing_hangs() -> None:
    async def main() -> None:
        draining = DynamicBatcher(affine, max_batch_size=4, timeout=0.5)
        draining.start()
        pending = [asyncio.ensure_future(draining.submit(jnp.array([float(i)]))) for i in range(6)]
        await asyncio.sleep(0)
        await asyncio.wait_for(draining.close(drain=True), timeout=5)
        assert [float((await p)[0]) for p in pending] == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
        with pytest.raises(BatcherClosed, match="the batcher is closed"):
            await draining.submit(jnp.array([0.0]))

        rejecting = DynamicBatcher(affine, max_batch_size=4, timeout=0.5)
        rejecting.start()
        pending = [asyncio.ensure_future(rejecting.submit(jnp.array([float(i)]))) for i in range(6)]
        await asyncio.sleep(0)
        await asyncio.wait_for(rejecting.close(drain=False), timeout=5)
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        # What the worker had already taken runs; the rest is rejected, none is left waiting.
        assert all(isinstance(o, BatcherClosed | np.ndarray) for o in outcomes)
        assert any(isinstance(o, BatcherClosed) for o in outcomes)

    asyncio.run(main())


class FlagBatcher:
    """The guide's pattern, reduced to its flaw: a ``processing`` flag set inside the task it guards,
    and no handling of a model error, so the batch's futures are never resolved."""

    def __init__(self, model) -> None:
        self.model = model
        self.queue: deque = deque()
        self.processing = False

    async def infer(self, x):
        future = asyncio.get_running_loop().create_future()
        self.queue.append((x, future))
        if not self.processing:
            self.task = asyncio.ensure_future(self._process())
        return await future

    async def _process(self) -> None:
        self.processing = True
        await asyncio.sleep(0.001)
        items = [self.queue.popleft() for _ in range(len(self.queue))]
        outputs = self.model(jnp.stack([x for x, _ in items]))  # raises: flag stays set, futures hang
        for (_, future), row in zip(items, outputs, strict=True):
            future.set_result(row)
        self.processing = False


def test_the_flag_pattern_hangs_on_a_model_error_where_ours_answers() -> None:
    def flaky(x):
        raise RuntimeError("model failed")

    async def main() -> None:
        flag = FlagBatcher(flaky)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flag.infer(jnp.array([1.0])), timeout=0.5)
        assert flag.processing  # stuck: every later request would wait forever too
        with pytest.raises(RuntimeError, match="model failed"):
            await flag.task  # the error went nowhere but into the abandoned task
        async with DynamicBatcher(flaky, max_batch_size=4, timeout=0.001) as ours:
            with pytest.raises(RuntimeError, match="model failed"):
                await asyncio.wait_for(ours.submit(jnp.array([1.0])), timeout=5)

    asyncio.run(main())


def test_pipeline_split_and_sweep_through_the_fixture(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\njaxperf_cpu_devices = 2\n")
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx

        class Encoder(nnx.Module):
            def __init__(self, *, rngs):
                self.linear = nnx.Linear(64, 16, rngs=rngs)

            def __call__(self, x):
                return nnx.relu(self.linear(x))

        class Decoder(nnx.Module):
            def __init__(self, *, rngs):
                self.linear = nnx.Linear(16, 64, rngs=rngs)

            def __call__(self, z):
                return self.linear(z)

        def test_pipeline(jaxperf):
            output, timing = jaxperf.pipeline(
                Encoder(rngs=nnx.Rngs(0)), Decoder(rngs=nnx.Rngs(1)), jnp.ones((32, 64))
            )
            assert output.shape == (32, 64)
            assert {d.id for d in output.sharding.device_set} == {1}
            assert timing.transferred_bytes == 32 * 16 * 4
            assert timing.devices == ("cpu:0", "cpu:1")

        def test_sweep(jaxperf):
            sweep = jaxperf.batch_sweep(Encoder(rngs=nnx.Rngs(0)), jnp.ones((1, 64)), sizes=(1, 8, 64))
            assert [p.compiles for p in sweep.points] == [1, 1, 1]
        """
    )
    expect(
        jaxperf_pytester,
        "--jaxperf",
        "--jaxperf-json=results.json",
        passed=2,
        lines=[
            "*test_pipeline*pipeline transfer cpu:0 → cpu:1*ms",
            "*test_sweep*Encoder batch 64: throughput*items/s",
            "*test_sweep*Encoder: throughput saturates at batch*rows",
        ],
    )
    # Each point of the sweep names its model and batch size: `jaxperf report` draws them as one line.
    records = json.loads((jaxperf_pytester.path / "results.json").read_text())["records"]
    points = [(r["model"], r["batch"]) for r in records if r["kind"] == "figure" and r["unit"] == "items/s"]
    assert points == [("Encoder", 1), ("Encoder", 8), ("Encoder", 64)]


def test_a_sweep_runs_in_the_case_variant_and_a_pipeline_on_one_device_skips(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    # The sweep is built as the case's variant is (its precision), on one device: a batch of one is no
    # batch to shard, so even a d4 case on two devices sweeps. The pipeline's skip is an outcome like any
    # case's, named by the case.
    jaxperf_pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\njaxperf_cpu_devices = 2\n")
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        import pytest
        import pytest_jaxperf as jaxperf

        from flax import nnx

        traced_in = []

        class Layer(nnx.Module):
            def __init__(self):
                self.linear = nnx.Linear(8, 4, rngs=nnx.Rngs(0))

            def __call__(self, x):
                traced_in.append(str(self.linear.kernel[...].dtype))
                return self.linear(x)

        @jaxperf.dtype("fp32", "bf16")
        @jaxperf.devices(1, 4)
        def test_sweep(jaxperf):
            traced_in.clear()
            sweep = jaxperf.batch_sweep(Layer(), jnp.ones((1, 8)), sizes=(1, 2))
            assert [point.compiles for point in sweep.points] == [1, 1]
            assert set(traced_in) == {"float32" if jaxperf.variant.dtype == "float32" else "bfloat16"}

        def test_pipeline(jaxperf, monkeypatch):
            monkeypatch.setattr(jax, "devices", lambda *backend: jax.local_devices()[:1])
            jaxperf.pipeline(lambda x: x + 1, lambda x: x * 2, jnp.ones((4, 8)))
        """
    )
    expect(
        jaxperf_pytester,
        "-rs",
        passed=4,
        skipped=1,
        lines=[
            "*SKIPPED*jaxperf fp32-d1: pipeline needs 2 devices, 1 available (--jaxperf-cpu-devices gives*"
        ],
    )
