#!/usr/bin/env bash
# Builds SQLite's speedtest1 from Debian's own sqlite3 source package, twice:
#
#   build/speedtest1           test/speedtest1.c linked with the system
#                              libsqlite3 (-lsqlite3), nothing else
#   build/speedtest1-metadwr   the same program plus scripts/speedtest1-metadwr.c,
#                              whose constructor registers sqlite3_metadwr_init
#                              with sqlite3_auto_extension before main runs;
#                              linked with -L. -lmetadwr and an rpath to the
#                              project root
#
#   scripts/build-speedtest1.sh [SO]      (SO defaults to ./libmetadwr.so)
#
# The source comes from `apt-get source sqlite3` into build/sqlite-src/
# (gitignored: none of SQLite's code is committed here) by
# scripts/sqlite-src.sh, which adds a deb822 `Types: deb-src` entry with the
# Debian entry's Signed-By when there is none. Every step is skipped when
# already done.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
so=${1:-$root/libmetadwr.so}
build=$root/build

if [ ! -f "$so" ]; then
  echo "error: $so not found (run make build)" >&2
  exit 2
fi

# --- 1. the source: Debian's sqlite3 source package -------------------------
tree=$("$root/scripts/sqlite-src.sh")
speedtest_c=$tree/test/speedtest1.c
if [ ! -f "$speedtest_c" ]; then
  echo "error: no test/speedtest1.c in $tree" >&2
  exit 1
fi
echo "speedtest1 source: ${speedtest_c#"$root"/}"

# --- 2. the two binaries ---------------------------------------------------
cc=${CC:-cc}
cflags=(-O2 -g0 -w)
plain=$build/speedtest1
shimmed=$build/speedtest1-metadwr
glue=$root/scripts/speedtest1-metadwr.c

if [ ! -x "$plain" ] || [ "$speedtest_c" -nt "$plain" ]; then
  echo "building build/speedtest1"
  "$cc" "${cflags[@]}" -o "$plain" "$speedtest_c" -lsqlite3 -lm
fi
so_dir=$(cd "$(dirname "$so")" && pwd)
so_base=$(basename "$so" .so)
so_base=${so_base#lib}
if [ ! -x "$shimmed" ] || [ "$speedtest_c" -nt "$shimmed" ] || [ "$glue" -nt "$shimmed" ]; then
  echo "building build/speedtest1-metadwr"
  # -L and rpath name the directory of SO (the project root for the default):
  # the binary finds the extension that is built there at run time.
  "$cc" "${cflags[@]}" -I"$root/include" -o "$shimmed" "$speedtest_c" "$glue" \
    -L"$so_dir" -Wl,-rpath,"$so_dir" -Wl,--no-as-needed -l"$so_base" -Wl,--as-needed -lsqlite3 -lm
fi
echo "built: build/speedtest1 build/speedtest1-metadwr ($(ldd "$shimmed" | awk '/metadwr|sqlite3/ {print $1 " -> " $3}' | tr '\n' ' '))"
