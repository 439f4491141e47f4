#!/usr/bin/env bash
# Runs SQLite's speedtest1, unmodified, through metadwr, and checks that the
# database it leaves is sound, protected and healable.
#
#   scripts/compat-speedtest1.sh [SO]        (SO defaults to ./libmetadwr.so)
#
# build/speedtest1-metadwr (scripts/build-speedtest1.sh, run first; it skips
# what is already built) is speedtest1 with metadwr registered as an
# automatic extension before main(). With METADWR_ENABLE=1 every database it
# opens is protected. For each configuration below, in a fresh directory:
#
#   1. speedtest1-metadwr runs the "main" test set on test.db and must
#      complete (exit 0, TOTAL line);
#   2. the stock sqlite3 shell, without the extension, finds
#      PRAGMA integrity_check ok, the page size and journal mode asked for,
#      and test.db-dwr exists;
#   3. the plain build/speedtest1 (system SQLite, no metadwr) runs the same
#      configuration on plain.db: both databases must hold the same content
#      (sha256 of the shell's .dump);
#   4. page 1 and every other page of sqlite_schema (dbstat) are zeroed;
#      the stock shell must now refuse the file;
#   5. the stock shell with `.load SO` then `.open test.db` must answer
#      integrity_check ok and the same row counts as in step 2 (healed on
#      read), and afterwards the stock shell without the extension too (the
#      file was repaired on disk).
#
# SPEEDTEST1_SIZE (default 60) is speedtest1's --size; SQLITE3 the shell.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
so=${1:-$root/libmetadwr.so}
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
size=${SPEEDTEST1_SIZE:-60}
sqlite3_bin=${SQLITE3:-sqlite3}

"$root/scripts/build-speedtest1.sh" "$so" || exit 2
bin=$root/build/speedtest1-metadwr
plain_bin=$root/build/speedtest1

# name | speedtest1 options | expected journal_mode | expected page_size
configs=(
  "rollback||delete|4096"
  "wal|--journal wal|wal|4096"
  "mmap|--mmap 268435456|delete|4096"
  "wal-mmap|--journal wal --mmap 268435456|wal|4096"
  "pagesize-512|--pagesize 512|delete|512"
  "pagesize-65536|--pagesize 65536|delete|65536"
  "wal-pagesize-65536|--journal wal --pagesize 65536|wal|65536"
  "exclusive|--exclusive|delete|4096"
)

work=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-speedtest1.XXXXXX")
keep=0
trap '[ $keep = 1 ] || rm -rf "$work"' EXIT
# A private copy of the extension, found first through LD_LIBRARY_PATH by
# speedtest1-metadwr (its rpath is a DT_RUNPATH) and loaded by the shell:
# a rebuild of SO during the run (cp over a mapped library) cannot crash it.
mkdir "$work/lib"
cp "$so" "$work/lib/libmetadwr.so"
so=$work/lib/libmetadwr.so
export LD_LIBRARY_PATH=$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
unset METADWR_ENABLE METADWR_SYNC
export LC_ALL=C

# Stock shell, without the extension; HOME elsewhere so no ~/.sqliterc.
stock() { HOME=$work "$sqlite3_bin" -batch "$@"; }

# One line "table=rows ..." for every table, through the stock shell.
counts_sql() {
  local db=$1 sql="" t
  while IFS= read -r t; do
    sql+="SELECT '$t=' || count(*) FROM \"$t\";"
  done < <(stock "$db" "SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name")
  printf '%s' "$sql"
}

echo "compat-speedtest1: $("$plain_bin" --help 2>&1 | head -n 1 | sed 's/^-- //'), --size $size, shell $("$sqlite3_bin" -version | cut -d' ' -f1), extension $(ldd "$bin" | awk '/libmetadwr/ {print $3}')"
passed=0
failed=0
failed_names=()
for entry in "${configs[@]}"; do
  IFS='|' read -r name opts want_jm want_ps <<<"$entry"
  dir=$work/$name
  mkdir -p "$dir"
  problems=()
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # opts is a list of options
  (cd "$dir" && METADWR_ENABLE=1 timeout 900 "$bin" $opts --size "$size" test.db >speedtest1.log 2>&1)
  rc=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [ $rc -ne 0 ] || ! grep -q 'TOTAL' "$dir/speedtest1.log"; then
    problems+=("speedtest1-metadwr exited with status $rc: $(tail -n 3 "$dir/speedtest1.log" | tr '\n' ' ')")
  fi
  db=$dir/test.db
  if [ ${#problems[@]} -eq 0 ]; then
    ic=$(stock "$db" 'PRAGMA integrity_check' 2>&1)
    [ "$ic" = ok ] || problems+=("integrity_check after speedtest1: $ic")
    jm=$(stock "$db" 'PRAGMA journal_mode' 2>&1)
    ps=$(stock "$db" 'PRAGMA page_size' 2>&1)
    [ "$jm" = "$want_jm" ] || problems+=("journal_mode is $jm, not $want_jm")
    [ "$ps" = "$want_ps" ] || problems+=("page_size is $ps, not $want_ps")
    [ -f "$db-dwr" ] || problems+=("no test.db-dwr")
    sql=$(counts_sql "$db")
    before=$(stock "$db" "$sql" 2>&1 | tr '\n' ' ')
    tables=$(stock "$db" "SELECT count(*) FROM sqlite_schema WHERE type='table'")
    rows=$(stock "$db" "$sql" 2>/dev/null | awk -F= '{ s += $2 } END { print s + 0 }')

    # The same run without metadwr must leave the same content.
    # shellcheck disable=SC2086
    (cd "$dir" && timeout 900 "$plain_bin" $opts --size "$size" plain.db >plain.log 2>&1) ||
      problems+=("plain speedtest1 failed: $(tail -n 2 "$dir/plain.log" | tr '\n' ' ')")
    h_m=$(stock "$db" .dump | sha256sum | cut -c1-16)
    h_p=$(stock "$dir/plain.db" .dump | sha256sum | cut -c1-16)
    [ "$h_m" = "$h_p" ] || problems+=("content differs from the plain run (.dump $h_m vs $h_p)")
    identical=no
    cmp -s "$db" "$dir/plain.db" && identical=yes

    # Damage: page 1 and every other page of sqlite_schema zeroed. Plain
    # SQLite must now refuse the file.
    pages=$(stock "$db" "SELECT pageno FROM dbstat WHERE name = 'sqlite_schema' ORDER BY pageno" | tr '\n' ' ')
    # shellcheck disable=SC2086 # a list of page numbers
    for p in $pages; do
      dd if=/dev/zero of="$db" bs="$ps" seek=$((p - 1)) count=1 conv=notrunc status=none
    done
    pages=$(printf '%s' "$pages" | xargs | tr ' ' ',')
    if stock "$db" 'SELECT count(*) FROM sqlite_schema' >/dev/null 2>&1; then
      problems+=("the stock shell still reads test.db with pages $pages zeroed")
    fi
    healed=$(cd "$dir" && HOME=$work "$sqlite3_bin" -batch 2>&1 <<SQL
.load $so
.open test.db
PRAGMA integrity_check;
$sql
PRAGMA meta_double_write;
SQL
    )
    ic=$(printf '%s\n' "$healed" | head -n 1)
    after=$(printf '%s\n' "$healed" | sed -n "2,$((tables + 1))p" | tr '\n' ' ')
    status=$(printf '%s\n' "$healed" | tail -n 1)
    [ "$ic" = ok ] || problems+=("integrity_check through metadwr after zeroing pages $pages: $ic")
    [ "$after" = "$before" ] || problems+=("row counts through metadwr: '$after', before: '$before'")
    case $status in
      "enabled (recovered: "*) ;;
      *) problems+=("meta_double_write says: $status") ;;
    esac
    ic2=$(stock "$db" 'PRAGMA integrity_check' 2>&1)
    after2=$(stock "$db" "$sql" 2>&1 | tr '\n' ' ')
    [ "$ic2" = ok ] && [ "$after2" = "$before" ] ||
      problems+=("the file was not repaired on disk: stock integrity_check '$ic2', counts '$after2'")
  fi
  if [ ${#problems[@]} -eq 0 ]; then
    echo "ok   $name ($opts): ${secs}s, journal_mode=$jm page_size=$ps, $tables tables, $rows rows, -dwr $(stat -c %s "$db-dwr") bytes, same .dump as plain (file byte-identical: $identical); schema pages $pages zeroed -> ${status#enabled (}"
    passed=$((passed + 1))
  else
    echo "FAIL $name ($opts): ${secs}s"
    printf '     %s\n' "${problems[@]}"
    echo "     (kept: $dir)"
    keep=1
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
done
[ $failed -eq 0 ] || echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
