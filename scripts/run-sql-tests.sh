#!/usr/bin/env bash
# Runs every sql-tests/NAME.sql through the stock sqlite3 shell and compares
# what it prints (stdout and stderr together) with sql-tests/NAME.expected.
#
#   scripts/run-sql-tests.sh SQLITE3 SO [NAME...]
#
# SQLITE3  the shell to run (a name on PATH or a path), e.g. sqlite3
# SO       absolute path of the built libmetadwr.so
# NAME     run only these tests (default: all)
#
# Each script runs in a fresh temporary directory holding a symlink
# libmetadwr.so -> SO, so scripts start with `.load ./libmetadwr` and use
# relative file names. $SQLITE3 is exported as the shell's absolute path, so
# a script can look at a file the way stock SQLite sees it, without the
# extension: .shell "$SQLITE3" app.db 'SELECT count(*) FROM t'.
# The directory's path in the output is replaced by <tmpdir>, so messages
# that name files compare equal on every machine.
#
# METADWR_UPDATE_EXPECTED=1 rewrites the .expected files from the actual
# output instead of comparing; read the diff before committing it.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 SQLITE3 SO [NAME...]" >&2
  exit 2
fi
sqlite3_bin=$1
so=$2
shift 2

root=$(cd "$(dirname "$0")/.." && pwd)
tests_dir=$root/sql-tests

if [ ! -f "$so" ]; then
  echo "error: extension not found: $so" >&2
  exit 2
fi
case $so in
  /*) ;;
  *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;;
esac
if ! sqlite3_path=$(command -v "$sqlite3_bin"); then
  echo "error: sqlite3 shell not found: $sqlite3_bin" >&2
  exit 2
fi
case $sqlite3_path in
  /*) ;;
  *) sqlite3_path=$(cd "$(dirname "$sqlite3_path")" && pwd)/$(basename "$sqlite3_path") ;;
esac
# Scripts run the same shell *without* the extension with
#   .shell "$SQLITE3" app.db 'SELECT ...'
export SQLITE3=$sqlite3_path

# The environment must not change what the extension does, nor how `ls`
# in a script sorts.
unset METADWR_ENABLE METADWR_SYNC
export LC_ALL=C

names=()
if [ $# -gt 0 ]; then
  names=("$@")
else
  for f in "$tests_dir"/*.sql; do
    [ -e "$f" ] || continue
    names+=("$(basename "$f" .sql)")
  done
fi
if [ ${#names[@]} -eq 0 ]; then
  echo "error: no tests in $tests_dir" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-sql-tests.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "sql-tests: $("$sqlite3_bin" -version | cut -d' ' -f1-2), extension $so"
passed=0
failed=0
failed_names=()
for name in "${names[@]}"; do
  script=$tests_dir/$name.sql
  expected=$tests_dir/$name.expected
  if [ ! -f "$script" ]; then
    echo "FAIL $name: no such script $script"
    failed=$((failed + 1))
    failed_names+=("$name")
    continue
  fi
  dir=$work/$name
  mkdir "$dir"
  ln -s "$so" "$dir/libmetadwr.so"
  physical=$(cd "$dir" && pwd -P)
  # HOME is the test's directory: a ~/.sqliterc must not change the output.
  set +e
  out=$(cd "$dir" && HOME=$dir timeout 120 "$sqlite3_bin" -batch <"$script" 2>&1)
  rc=$?
  set -e
  if [ $rc -ge 124 ]; then
    out+=$'\n'"[sqlite3 exited with status $rc]"
  fi
  out=${out//"$physical"/<tmpdir>}
  out=${out//"$dir"/<tmpdir>}
  actual=$dir.actual
  printf '%s\n' "$out" >"$actual"

  if [ "${METADWR_UPDATE_EXPECTED:-0}" = 1 ]; then
    cp "$actual" "$expected"
    echo "UPDATED $name"
    passed=$((passed + 1))
  elif [ ! -f "$expected" ]; then
    echo "FAIL $name: no $expected; the output was:"
    sed 's/^/    /' "$actual"
    failed=$((failed + 1))
    failed_names+=("$name")
  elif diff -u --label "$name.expected" --label "$name (actual)" "$expected" "$actual" >"$dir.diff"; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    sed 's/^/    /' "$dir.diff"
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
done

if [ $failed -gt 0 ]; then
  echo "failed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
