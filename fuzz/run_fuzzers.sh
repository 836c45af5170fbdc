#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for RUNS executions, one
# process at a time, then prints executions and time per target.
#
#   fuzz/run_fuzzers.sh [RUNS] [TARGET...]      RUNS: default 1000000; TARGET: default all four
#   MAX_TIME=1800 fuzz/run_fuzzers.sh           also stop each target after MAX_TIME seconds
#   BUILD=build-fuzz JOBS=1                     build folder and compile jobs
#
# New inputs go to $BUILD/fuzz-corpus/TARGET (fuzz/corpus/NAME is read as seeds, never
# written); a crash, leak, hang (-timeout=10) or sanitizer report stops that target, leaves
# the input in $BUILD/fuzz-artifacts/TARGET/ and makes the script exit 1.
# Reproduce one: $BUILD/fuzz/TARGET FILE (same ASAN_OPTIONS as below).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_image fuzz_labels_csv fuzz_hdf5 fuzz_checkpoint)
BUILD=${BUILD:-build-fuzz}
JOBS=${JOBS:-1}
MAX_TIME=${MAX_TIME:-0}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DHISTOSCAN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
fi
cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}"

# halt_on_error: a UBSan report stops the run like an ASan one. One thread for OpenMP/BLAS.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1
summary=()
status=0
for t in "${TARGETS[@]}"; do
  name=${t#fuzz_}
  work="$BUILD/fuzz-corpus/$t"
  artifacts="$BUILD/fuzz-artifacts/$t/"
  log="$BUILD/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  export ASAN_OPTIONS=detect_leaks=1
  if [ "$t" = fuzz_checkpoint ]; then
    # A complete seed-cnn checkpoint (3 MB) is written by the target itself, not stored.
    [ -f "$work/seed-cnn-full.pt" ] || HISTOSCAN_FUZZ_WRITE_SEED="$work/seed-cnn-full.pt" "$BUILD/fuzz/$t"
    export ASAN_OPTIONS=detect_leaks=1
  fi
  echo "== $t: $RUNS runs (log: $log)"
  start=$(date +%s)
  rc=0
  "$BUILD/fuzz/$t" "$work" "fuzz/corpus/$name" -runs="$RUNS" -max_total_time="$MAX_TIME" -timeout=10 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FINDING (exit $rc): $(ls "$artifacts" | tail -1)"
    status=1
    tail -40 "$log"
  fi
  summary+=("$(printf '%-16s %10s executions %7ss  %s' "$t" "${execs:-?}" "$secs" "$result")")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
