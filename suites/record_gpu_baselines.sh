#!/usr/bin/env bash
# Records the GPU baselines and times the main job on a GPU machine, from the working tree (no install:
# the plugin is loaded with -p). Made for a lent machine with minutes of device time, so in three parts,
# each its own pytest session with its own time limit (a session cut short writes no baseline):
#   1. test_precision.py, recorded (no GPU baseline yet);
#   2. test_models.py, recorded again (its GPU baselines came from an earlier jax run of one process);
#   3. the rest of the suites, measured, not recorded (as on the CPU, where only those two have baselines).
# The main job's time on the GPU is the parts' sum (two extra process start-ups).
# Leaves in $OUT (default ./gpu-run): log.txt, results-*.json, and baselines-gpu.tar.gz with every
# baseline file written, to be unpacked into baselines/.
#
# Environment: TOTAL_SECONDS (default 540) bounds the three; PRECISION_SECONDS (default 270) and
# MODELS_SECONDS (default 200) the first two; JAXPERF_REPEAT (default 1: the noise floor is the run's own
# spread; 3 processes take about 3 times as long).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-run}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Absolute: some suites start child processes in other directories.
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
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

total=${TOTAL_SECONDS:-540}
left() { echo $(( total - ($(date +%s) - started) )); }
record=(--jaxperf-update-baselines --jaxperf-repeat="${JAXPERF_REPEAT:-1}")
statuses=()
run_part precision "${PRECISION_SECONDS:-270}" suites/test_precision.py "${record[@]}"
statuses+=($?)
seconds=$(( $(left) - 60 ))  # a minute kept for the rest of the suites
(( seconds > ${MODELS_SECONDS:-200} )) && seconds=${MODELS_SECONDS:-200}
if (( seconds > 30 )); then
    run_part models "$seconds" suites/test_models.py "${record[@]}"
    statuses+=($?)
else
    echo "=== part models: not run, $seconds s left for it" | tee -a "$log"
    statuses+=(124)
fi
seconds=$(left)
if (( seconds > 30 )); then
    run_part rest "$seconds" suites/ --ignore=suites/test_precision.py --ignore=suites/test_models.py
    statuses+=($?)
else
    echo "=== part rest: not run, $seconds s left" | tee -a "$log"
    statuses+=(124)
fi
echo "main job on this GPU (the three parts): $(( $(date +%s) - started )) s; exits ${statuses[*]}" \
    | tee -a "$log"

written=$(cd baselines && find . -name '*.json' -newer "$stamp" | sort)
echo "baseline files written: $(echo ${written:-none})" | tee -a "$log"
[ -n "$written" ] && (cd baselines && tar czf "$out/baselines-gpu.tar.gz" $written)
[ "${statuses[*]}" = "0 0 0" ]
