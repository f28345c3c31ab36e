#!/usr/bin/env bash
# Records the GPU baselines and times the main job on a GPU machine, from the working tree (no install:
# the plugin is loaded with -p). Made for a lent machine with minutes of device time, so in two parts,
# each its own pytest session with its own time limit (a session cut short writes no baseline):
#   1. the measured modules (test_precision.py, test_models.py) with --jaxperf-update-baselines;
#   2. the rest of the suites, measured, not recorded (as on the CPU, where only those two have baselines).
# The main job's time on the GPU is the two parts' sum (one extra process start-up).
# Leaves in $OUT (default ./gpu-run): log.txt, results-*.json, and baselines-gpu.tar.gz with every
# baseline file written, to be unpacked into baselines/.
#
# Environment: PART1_SECONDS (default 330) and TOTAL_SECONDS (default 520) bound the parts;
# JAXPERF_REPEAT (default 1: the noise floor is the run's own spread; 3 processes take 3 times as long).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-run}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH=. PYTHONUNBUFFERED=1
log="$out/log.txt"
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import jax, jaxlib, flax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'flax', flax.__version__, jax.devices())"
} 2>&1 | tee "$log"

# One test over 2 minutes fails (pytest-timeout, on the GPU machine) instead of spending everyone's time.
per_test=()
python3 -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout=120)
stamp="$out/.started"
touch "$stamp"
started=$(date +%s)

run_part() {  # name, seconds, pytest arguments...
    local name=$1 seconds=$2
    shift 2
    local part_started status
    part_started=$(date +%s)
    echo "=== part $name: up to $seconds s: pytest $*" | tee -a "$log"
    # SIGINT, as a Ctrl-C: pytest still prints its summary and the durations.
    timeout -s INT -k 30 "$seconds" python3 -m pytest -p pytest_jaxperf.plugin -p no:cacheprovider \
        --jaxperf --jaxperf-json="$out/results-$name.json" --durations=25 -rfEsx "${per_test[@]}" "$@" \
        2>&1 | tee -a "$log"
    status=${PIPESTATUS[0]}
    echo "=== part $name: $(( $(date +%s) - part_started )) s, exit $status" | tee -a "$log"
    return "$status"
}

run_part recorded "${PART1_SECONDS:-330}" suites/test_precision.py suites/test_models.py \
    --jaxperf-update-baselines --jaxperf-repeat="${JAXPERF_REPEAT:-1}"
status1=$?
left=$(( ${TOTAL_SECONDS:-520} - ($(date +%s) - started) ))
status2=124
if (( left > 30 )); then
    run_part rest "$left" suites/ --ignore=suites/test_precision.py --ignore=suites/test_models.py
    status2=$?
else
    echo "=== part rest: not run, $left s left" | tee -a "$log"
fi
echo "main job on this GPU (both parts): $(( $(date +%s) - started )) s; exits $status1 and $status2" \
    | tee -a "$log"

written=$(cd baselines && find . -name '*.json' -newer "$stamp" | sort)
echo "baseline files written: ${written:-none}" | tee -a "$log"
[ -n "$written" ] && (cd baselines && tar czf "$out/baselines-gpu.tar.gz" $written)
(( status1 == 0 && status2 == 0 ))
