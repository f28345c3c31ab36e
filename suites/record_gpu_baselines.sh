#!/usr/bin/env bash
# Records the GPU baselines: runs the main job on the GPU machine from the working tree (no install: the
# plugin is loaded with -p) with --jaxperf-update-baselines, and leaves in $OUT (default ./gpu-run) the
# log, the results JSON and the new baselines folder as a tarball, to be unpacked into baselines/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-run}
mkdir -p "$out"
export PYTHONPATH=. PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import jax, jaxlib, flax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'flax', flax.__version__, jax.devices())"
} 2>&1 | tee "$out/log.txt"
# A test that takes over 2 minutes (the first run's test_memory.py did, on an H100) fails rather than
# spending the device time of all the others; pytest-timeout is on the GPU machine.
timeout_option=()
python3 -c "import pytest_timeout" 2>/dev/null && timeout_option=(--timeout=120)
before=$(ls baselines)
started=$(date +%s)
python3 -m pytest -p pytest_jaxperf.plugin -p no:cacheprovider --jaxperf suites/ \
    --jaxperf-update-baselines --jaxperf-repeat="${JAXPERF_REPEAT:-2}" \
    --jaxperf-json="$out/results-gpu.json" --durations=0 -rfEsx "${timeout_option[@]}" 2>&1 | tee -a "$out/log.txt"
status=${PIPESTATUS[0]}
echo "main job and recording: $(( $(date +%s) - started )) s, exit $status" | tee -a "$out/log.txt"
new=$(comm -13 <(echo "$before") <(ls baselines))
echo "new baselines folder(s): $new" | tee -a "$out/log.txt"
[ -n "$new" ] && tar czf "$out/baselines-gpu.tar.gz" -C baselines $new
exit "$status"
