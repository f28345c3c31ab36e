"""One fresh process's time to the first result of a suite model, with JAX's persistent compilation cache
in a given folder. ``python -m suites.first_result CACHE_DIR MODEL`` prints JSON: the seconds from calling
the jitted model to holding its output (trace, compile or cache load, run), and the cache's hits and
misses as jax.monitoring reports them. ``test_models.py::test_persistent_compilation_cache`` runs it twice.
"""

from __future__ import annotations

import json
import sys
import time


def main(cache_dir: str, name: str) -> None:
    import jax

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    # Cache every program, however quick to compile or small: the suite models compile in under a second.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    counts = {"/jax/compilation_cache/cache_hits": 0, "/jax/compilation_cache/cache_misses": 0}

    def count(event: str, **_: object) -> None:
        if event in counts:
            counts[event] += 1

    jax.monitoring.register_event_listener(count)

    from pytest_jaxperf.core.wrap import wrap_model
    from suites.workloads import WORKLOADS

    workload = WORKLOADS[name]
    model, inputs = workload.build(), workload.inputs()
    jax.block_until_ready(inputs)
    forward = wrap_model(model, jit=True)
    start = time.perf_counter()
    jax.block_until_ready(forward(*inputs))
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cache_hits": counts["/jax/compilation_cache/cache_hits"],
                "cache_misses": counts["/jax/compilation_cache/cache_misses"],
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
