#!/usr/bin/env bash
# clang-tidy (.clang-tidy, Debian clang-tidy 14) over the C++ sources a build compiles, two at a
# time; fails on any finding. Needs a configured build (compile_commands.json, which CMake always
# writes). No arguments: every source; or the .cpp files given.
#   scripts/lint.sh [--build DIR] [FILE.cpp...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ "${1:-}" = "--build" ]; then build=$2; shift 2; fi
command -v clang-tidy >/dev/null || { echo "lint: clang-tidy is missing; run make deps" >&2; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "lint: $build/compile_commands.json is missing; configure first (make build)" >&2; exit 1; }
# gcc's precompiled header means nothing to clang, which rejects the .gch beside it: a copy of the
# compile commands includes the header it was made from (torch/torch.h) as text instead.
db=$(mktemp -d)
log=$db/findings.log
trap 'rm -rf "$db"' EXIT
/usr/bin/python3 - "$build/compile_commands.json" "$db/compile_commands.json" <<'PY'
import json, re, sys
entries = json.load(open(sys.argv[1]))
for e in entries:
    e["command"] = re.sub(r"-include \S*cmake_pch\.hxx", "-include torch/torch.h", e["command"]).replace("-Winvalid-pch", "")
json.dump(entries, open(sys.argv[2], "w"))
PY
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(/usr/bin/python3 -c 'import json,sys; [print(e["file"]) for e in json.load(open(sys.argv[1]))]' \
    "$db/compile_commands.json" | grep -v '/build' | sort -u)
fi
printf '%s\n' "${files[@]}" | xargs -P 2 -I{} sh -c \
  'clang-tidy -quiet -p "$0" --extra-arg=-Wno-unknown-warning-option "{}" >>"$1" 2>/dev/null || echo "FAILED {}" >>"$1"' \
  "$db" "$log" || true
if grep -q "FAILED" "$log"; then
  grep -E "warning:|error:" "$log" | sort -u >&2
  echo "lint: $(grep -c FAILED "$log") of ${#files[@]} files have findings (above)" >&2
  exit 1
fi
echo "lint: ${#files[@]} files clean"
