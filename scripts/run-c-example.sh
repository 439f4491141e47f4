#!/usr/bin/env bash
# Builds examples/c/protect.c against include/metadwr.h and libmetadwr.so,
# the way a C user would, and runs it in a scratch directory.
#
#   scripts/run-c-example.sh ROOT
#
# ROOT is the repository root holding include/, examples/ and the built
# libmetadwr.so (make build).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 ROOT" >&2
  exit 2
fi
root=$(cd "$1" && pwd)
if [ ! -f "$root/libmetadwr.so" ]; then
  echo "error: $root/libmetadwr.so not found (run make build)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-c-example.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/run"

passed=0
failed=0
echo "c-example: building examples/c/protect.c"
if cc -Wall -Wextra -Werror -I "$root/include" "$root/examples/c/protect.c" \
  -o "$work/bin/protect" \
  -L "$root" -lmetadwr -lsqlite3 -Wl,-rpath,"$root"; then
  echo "c-example: running it in a scratch directory"
  # The environment must not change what the extension does.
  if (cd "$work/run" && env -u METADWR_ENABLE -u METADWR_SYNC "$work/bin/protect"); then
    echo "ok   protect"
    passed=1
  else
    echo "FAIL protect: exited with status $?"
    failed=1
  fi
else
  echo "FAIL protect: does not compile"
  failed=1
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
