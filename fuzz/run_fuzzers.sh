#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for RUNS executions, one
# process at a time, then prints executions, time and findings per target.
#
#   fuzz/run_fuzzers.sh [RUNS] [TARGET...]   RUNS: default 1000000; TARGET: default all five
#   MAX_TIME=1800 fuzz/run_fuzzers.sh        also stop each target after MAX_TIME seconds
#   STOP_ON_FIRST=1 fuzz/run_fuzzers.sh      stop a target at its first finding (no -fork)
#   BUILD=build-fuzz JOBS=1                  build folder and compile jobs
#
# fuzz_image, fuzz_labels_csv and fuzz_hdf5 run under -fork=1 (one child process at a time)
# so a crash inside OpenCV or HDF5 is recorded and fuzzing goes on. fuzz_checkpoint runs in one
# process: LibTorch's crashes are contained in load_checkpoint's probe helper, and each fork
# job would pay LibTorch's start-up (about 90 instead of about 210 executions/s here).
# While fuzzing, sanitizer reports are not symbolised (symbolize=0): each crash that the probe
# helper contains by design (a forked child whose report goes to /dev/null) would otherwise run
# llvm-symbolizer over the binary's debug information. The replay at the end symbolises. Every crash, leak, hang (-timeout=10), OOM,
# escaped exception or sanitizer report leaves its input in $BUILD/fuzz-artifacts/TARGET/;
# each is replayed at the end and summarised as "kind | first frame"; any makes the exit 1.
# New inputs go to $BUILD/fuzz-corpus/TARGET; fuzz/corpus/NAME is read as seeds, never written.
# Replay one input: ASAN_OPTIONS=... $BUILD/fuzz/TARGET FILE (options as set below, symbolize=1).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_image fuzz_labels_csv fuzz_hdf5 fuzz_checkpoint fuzz_annotations)
BUILD=${BUILD:-build-fuzz}
JOBS=${JOBS:-1}
MAX_TIME=${MAX_TIME:-0}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DHISTOSCAN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
fi
cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}"

# Leaks inside libhdf5 on malformed files are HDF5's (fuzz_hdf5 itself checks that histoscan
# closes every HDF5 identifier); fontconfig's is cairo's, at exit.
supp="$PWD/$BUILD/fuzz-lsan.supp"
printf 'leak:libfontconfig.so\nleak:libhdf5_serial.so\n' >"$supp"
export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1  # a UBSan report stops the run too
export OMP_NUM_THREADS=1

asan_options() {
  case $1 in
    # LibTorch 1.13 leaks miniz's reader state on every damaged zip (not histoscan's memory).
    # Sizes in a damaged archive reach malloc inside LibTorch: as in a release build, an
    # impossible size gets NULL (std::bad_alloc, an InputError) instead of an ASan abort,
    # whose symbolised report of LibTorch's stack takes over 10 s.
    fuzz_checkpoint) echo detect_leaks=0:allocator_may_return_null=1 ;;
    # Each input allocates libfccp's 48 MB line buffer; ASan's default 256 MB quarantine of
    # freed memory makes that churn (about 140 executions/s instead of 220).
    fuzz_labels_csv) echo detect_leaks=1:quarantine_size_mb=64 ;;
    # Sizes in a damaged HDF5 header reach malloc inside HDF5; as in a release build, an
    # impossible size gets NULL (HDF5 then reports an error) instead of stopping ASan.
    fuzz_hdf5) echo detect_leaks=1:allocator_may_return_null=1 ;;
    *) echo detect_leaks=1 ;;
  esac
}

# Rewrites each "#N 0x... (module+0xoffset)" frame of a report with llvm-symbolizer's function
# and file:line.
symbolize_report() {
  local line mod off
  while IFS= read -r line; do
    if [[ $line =~ ^(\ +#[0-9]+\ 0x[0-9a-f]+).*\(([^+\ ]+)\+(0x[0-9a-f]+)\) ]]; then
      mod=${BASH_REMATCH[2]} off=${BASH_REMATCH[3]}
      echo "${BASH_REMATCH[1]} $(llvm-symbolizer-14 --obj="$mod" "$off" 2>/dev/null | head -2 | paste -sd' ') ($mod+$off)"
    else
      printf '%s\n' "$line"
    fi
  done <"$1"
}

summary=()
status=0
for t in "${TARGETS[@]}"; do
  name=${t#fuzz_}
  work="$BUILD/fuzz-corpus/$t"
  artifacts="$BUILD/fuzz-artifacts/$t"
  log="$BUILD/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  # Every sanitizer report of the fuzzing processes is also kept in $t.asan.PID: under -fork=1
  # a job's own log is deleted with the job, and a report that does not replay alone (state
  # left by earlier inputs) would otherwise leave only its first line in $log.
  reports="$PWD/$BUILD/fuzz-logs/$t.asan"
  rm -f "$reports".*
  export ASAN_OPTIONS="$(asan_options "$t"):symbolize=0:log_path=$reports"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports"
  args=(-runs="$RUNS" -max_total_time="$MAX_TIME" -timeout=10 -artifact_prefix="$artifacts/" -print_final_stats=1)
  [ "${STOP_ON_FIRST:-0}" = 1 ] || [ "$t" = fuzz_checkpoint ] || args+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
  case $t in
    fuzz_image) args+=(-close_fd_mask=2) ;;  # libpng/libjpeg/OpenCV chatter; sanitizer reports still print
    # HDF5 allocates what a damaged header claims (virtual memory, mostly never touched); the
    # RSS limit (-rss_limit_mb, 2048) still catches real growth, and the probe helper's own
    # memory watch growth there.
    fuzz_hdf5) args+=(-malloc_limit_mb=65536) ;;
    fuzz_checkpoint)
      # A complete seed-cnn checkpoint (3 MB) is written by the target itself, not stored.
      [ -f "$work/seed-cnn-full.pt" ] || HISTOSCAN_FUZZ_WRITE_SEED="$work/seed-cnn-full.pt" "$BUILD/fuzz/$t"
      # Parsing happens in load_checkpoint's probe helper (a fork of the fuzzing process),
      # which watches its own memory; libFuzzer's per-malloc limit there would write a false
      # "oom" artifact for each big allocation it contains. The RSS limit still applies here.
      args+=(-max_len=3300000 -malloc_limit_mb=65536) ;;
  esac
  echo "== $t: $RUNS runs, ASAN_OPTIONS=$ASAN_OPTIONS (log: $log)"
  start=$(date +%s)
  rc=0
  "$BUILD/fuzz/$t" "$work" "fuzz/corpus/$name" "${args[@]}" >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  # Executions: the fork parent's last "#N:" line, else the single process's final stats.
  execs=$(grep -a -o '^#[0-9]*:' "$log" | tail -1 | tr -d '#:' || true)
  [ -n "$execs" ] || execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=$(find "$artifacts" -type f | wc -l)
  summary+=("$(printf '%-16s %9s executions %6ss  exit %s  %s artifacts' "$t" "${execs:-?}" "$secs" "$rc" "$found")")
  if [ "$found" -gt 0 ]; then
    status=1
    echo "-- $t: $found inputs in $artifacts; kind | first frame outside the sanitizer, libc and libstdc++:"
    for f in "$artifacts"/*; do
      out=$(ASAN_OPTIONS="$(asan_options "$t"):symbolize=1" timeout 120 "$BUILD/fuzz/$t" -timeout=10 "$f" 2>&1 || true)
      kind=$(printf '%s\n' "$out" | grep -a -m1 -o -E "throwing an instance of '[^']*'|ERROR: AddressSanitizer: [a-z-]+|runtime error: .*|ERROR: LeakSanitizer|HDF5 objects left open|ERROR: libFuzzer: [a-z-]+" || echo "no repro alone")
      frame=$(printf '%s\n' "$out" | grep -a -E '^ +#[0-9]+ ' |
        grep -a -v -E 'sanitizer|asan|libc\.so|libstdc\+\+|__interceptor|libFuzzer|fuzzer::|operator new|nptl|stdlib|signal/' |
        head -1 | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ (in )?//; s/ \(BuildId.*//' | cut -c1-140 || true)
      echo "$(basename "$f") | $kind | $frame"
    done | sort -t'|' -k2 | tee "$artifacts.summary.txt"
  fi
  # The reports themselves, symbolised now (frames read "(module+0xoffset)" while fuzzing).
  for r in "$reports".*; do
    [ -f "$r" ] && grep -a -q -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$r" || continue
    status=1
    symbolize_report "$r" >"$r.txt"
    echo "-- $t: sanitizer report $r.txt: $(grep -a -m1 -o -E 'ERROR: [A-Za-z]+Sanitizer: [a-z-]+|runtime error: .*' "$r" | cut -c1-100)"
    grep -a -E '^ +#[0-9]+ ' "$r.txt" | grep -a -v -E 'sanitizer|asan|__interceptor|libFuzzer|fuzzer::' | head -3
  done
done
echo
printf '%s\n' "${summary[@]}"
exit $status
