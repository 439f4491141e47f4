#!/usr/bin/env bash
# Smash a database and watch metadwr bring it back.
#
#   scripts/demo.sh /abs/path/libmetadwr.so      (or: make demo)
#
# Builds a 40-table database through metadwr with protection on, overwrites
# page 1 and every page of sqlite_schema with garbage, shows stock SQLite
# giving up on it, then simply queries it through metadwr: the damaged pages
# are served from the copy and repaired on disk. Everything happens
# in a new temporary directory, left in place for a look afterwards.
# SQLITE3 names the shell to use (default: sqlite3).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 /abs/path/libmetadwr.so" >&2
  exit 2
fi
so=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
sqlite3_bin=${SQLITE3:-sqlite3}
tables=40
rows=1000

dir=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-demo.XXXXXX")
cd "$dir"
# The loader finds the entry point from the file name: keep it libmetadwr.
ln -s "$so" libmetadwr.so
unset METADWR_ENABLE METADWR_SYNC

heading() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
# The shell with metadwr loaded; ~/.sqliterc is skipped.
with_metadwr() { "$sqlite3_bin" -init /dev/null -batch -cmd '.load ./libmetadwr'; }
# The shell as it comes, without the extension.
stock() { "$sqlite3_bin" -init /dev/null -batch "$@"; }
size_of() { stat -c %s "$1"; }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

echo "metadwr demo: $("$sqlite3_bin" -version | cut -d' ' -f1), in $dir"

heading "1. Build app.db through metadwr, protection on"
{
  echo ".open app.db"
  echo "PRAGMA meta_double_write=enabled;"
  echo "BEGIN;"
  for i in $(seq "$tables"); do
    echo "CREATE TABLE t$i(id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount REAL, created TEXT);"
    echo "CREATE INDEX t${i}_customer ON t$i(customer);"
    echo "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < $rows)"
    echo "  INSERT INTO t$i(customer, amount, created)"
    echo "  SELECT 'customer ' || (k % 97), k * 1.5, date('2024-01-01', '+' || (k % 365) || ' days') FROM n;"
  done
  echo "COMMIT;"
} >build.sql
enabled=$(with_metadwr <build.sql)
say "PRAGMA meta_double_write=enabled  ->  $enabled"
say "$tables tables with $(commas "$rows") rows each, and an index on each table"
say "app.db: $(commas "$(size_of app.db)") bytes; its copy app.db-dwr: $(commas "$(size_of app.db-dwr)") bytes"

heading "2. Find page 1 and the sqlite_schema pages (stock sqlite3, dbstat)"
page_size=$(stock app.db 'PRAGMA page_size')
mapfile -t pages < <(stock app.db \
  "SELECT pageno FROM dbstat WHERE name = 'sqlite_schema' ORDER BY pageno")
say "page size $page_size; sqlite_schema lives on pages: ${pages[*]}"

heading "3. Smash them"
# A page of repeated text: easy to recognise, useless to SQLite.
# (Page sizes are powers of two from 512 up: a whole number of 8-byte words.)
# shellcheck disable=SC2046 # one printf argument per repetition
printf 'SMASHED!%.0s' $(seq $((page_size / 8))) >garbage
for p in "${pages[@]}"; do
  dd if=garbage of=app.db bs="$page_size" seek=$((p - 1)) count=1 conv=notrunc status=none
done
say "overwrote ${#pages[@]} page(s) with garbage; app.db now starts with:"
say "$(head -c 32 app.db)"

heading "4. Stock sqlite3, without the extension"
say "\$ sqlite3 app.db 'SELECT count(*) FROM t1'"
if out=$(stock app.db 'SELECT count(*) FROM t1' 2>&1); then
  say "$out"
  echo "demo: the smashed database still answered; something is wrong" >&2
  exit 1
fi
say "$out"

heading "5. sqlite3 with .load ./libmetadwr, then .open app.db and just query it"
count_sql=$(for i in $(seq "$tables"); do printf '(SELECT count(*) FROM t%d)+' "$i"; done)
mapfile -t report < <(with_metadwr <<EOF
.open app.db
SELECT count(*) FROM t1;
PRAGMA integrity_check;
SELECT count(*) FROM sqlite_schema WHERE type = 'table';
SELECT ${count_sql%+};
PRAGMA meta_double_write;
EOF
)
say "SELECT count(*) FROM t1; ->  ${report[0]:-}   (no error: healed on read)"
say "PRAGMA integrity_check;  ->  ${report[1]:-}"
say "tables                   ->  ${report[2]:-}"
say "rows, all tables         ->  $(commas "${report[3]:-}")"
say "PRAGMA meta_double_write ->  ${report[4]:-}"
say "the damaged pages were kept in app.db-dwr-quarantine ($(size_of app.db-dwr-quarantine) bytes)"

heading "6. Stock sqlite3 again: the file itself was repaired"
say "\$ sqlite3 app.db 'SELECT count(*) FROM t1'"
say "$(stock app.db 'SELECT count(*) FROM t1' 2>&1)"

echo
if [ "${report[1]:-}" = ok ] && [ "${report[2]:-}" = "$tables" ] &&
  [ "${report[3]:-}" = $((tables * rows)) ]; then
  echo "All $(commas $((tables * rows))) rows of $tables tables are back. Files: $dir"
else
  echo "demo: recovery did not bring everything back (files left in $dir)" >&2
  exit 1
fi
