#!/usr/bin/env bash
# The sql-tests on the current SQLite: the stock shell's program rebuilt on
# it (scripts/build-sqlite-current.sh), through scripts/run-sql-tests.sh
# unchanged.
#
#   scripts/sql-tests-current.sh [SO] [NAME...]    (SO: ./libmetadwr.so)
#
# The .expected files were recorded with SQLite 3.40.1. Where a current
# SQLite answers differently for a documented reason, the answer expected
# from it is in scripts/sql-tests-current/NAME.expected and replaces
# sql-tests/NAME.expected for this run (in a scratch copy of the suite):
#
#   refuse_wrong_copy  SQLite 3.46 and later read the schema before they
#                      prepare a SELECT: `SELECT meta_recover()` on a
#                      database whose page 1 is destroyed and whose copy
#                      cannot be used fails at prepare time with
#                      "file is not a database" instead of reaching
#                      meta_recover's own refusal (README, "Using it").
#   schema_leaf        the same schema read, on a damaged schema leaf whose
#                      copy is good, heals the leaf on read before
#                      meta_recover() runs, which then has nothing to restore;
#                      the status names the heal instead of the restore.
#   salvage            the same schema read again: `SELECT meta_salvage()` on
#                      the damaged file fails at prepare time; the pragma
#                      form, which the script uses first, works on both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
so=$root/libmetadwr.so
if [ $# -gt 0 ] && [[ $1 == *.so ]]; then
  so=$1
  shift
fi
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
dir=$("$root/scripts/build-sqlite-current.sh")

copy=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-sql-tests-current.XXXXXX")
trap 'rm -rf "$copy"' EXIT
mkdir "$copy/scripts"
cp "$root/scripts/run-sql-tests.sh" "$copy/scripts/"
cp -r "$root/sql-tests" "$copy/sql-tests"
for f in "$root"/scripts/sql-tests-current/*.expected; do
  [ -e "$f" ] || continue
  cp "$f" "$copy/sql-tests/"
  echo "expected output for SQLite $("$dir/sqlite3" -version | cut -d' ' -f1): $(basename "$f" .expected) (scripts/sql-tests-current/)"
done
# A private copy of the extension: a rebuild during the run cannot pull it
# from under the shell.
cp "$so" "$copy/libmetadwr.so"
"$copy/scripts/run-sql-tests.sh" "$dir/sqlite3" "$copy/libmetadwr.so" "$@"
