#!/usr/bin/env bash
# CPython's own sqlite3 test suite, test.test_sqlite3, run by Debian's
# /usr/bin/python3 twice:
#
#   plain    the system SQLite through the stock unix VFS
#   metadwr  the extension loaded first (a throwaway :memory: connection
#            with enable_load_extension + load_extension makes metadwr the
#            process's default VFS) and METADWR_ENABLE=1, so every file
#            database the tests open is protected
#
# The metadwr run must give every test the same outcome (pass, fail, error,
# skip, expected failure) as the plain run. Prints both runs' counts, every
# test whose outcome differs, and a last line "N passed, M failed": N tests
# of the metadwr run with the plain run's outcome, M with another (or
# missing from one run). Exits non-zero when M > 0.
#
#   scripts/compat-cpython.sh [SO]       (SO defaults to ./libmetadwr.so)
#
# Where the tests come from: Debian's libpython3.11-testsuite is installed
# when missing (apt-get), but CPython 3.11.2's `make install` leaves
# Lib/test/test_sqlite3 out (it is missing from TESTSUBDIRS in
# Makefile.pre.in), so Debian's package does not ship it. When the installed
# test package has no test_sqlite3, it is taken from the orig tarball of
# Debian's python3.11 source package (apt-get source --tar-only, hash-checked
# by apt; scripts/add-deb-src.sh adds a deb-src entry when there is none)
# whose upstream version is the interpreter's, into build/cpython-tests/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
so=${1:-$root/libmetadwr.so}
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
python=${PYTHON:-/usr/bin/python3}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ ! -f "$so" ]; then
  echo "error: $so not found (run make build)" >&2
  exit 2
fi

pyver=$("$python" -c 'import platform; print(platform.python_version())')
pyxy=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
has_system_tests() {
  "$python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("test.test_sqlite3") is None)' 2>/dev/null
}

# --- where test_sqlite3 comes from ------------------------------------------
pkg=libpython$pyxy-testsuite
if ! has_system_tests && ! dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
  echo "installing $pkg"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null
fi
tests_arg=()
if has_system_tests; then
  tests_from="the installed test package"
else
  tests_dir=$root/build/cpython-tests/$pyver
  # As DIR/test/test_sqlite3: unittest's discovery (load_package_tests) wants
  # the package two levels below its top-level directory.
  if [ ! -f "$tests_dir/test/test_sqlite3/__init__.py" ]; then
    echo "$pkg has no test_sqlite3 (CPython $pyver does not install it); taking it from Debian's python$pyxy source"
    "$root/scripts/add-deb-src.sh"
    dl=$root/build/cpython-src
    mkdir -p "$dl"
    tarball=$dl/python${pyxy}_$pyver.orig.tar.gz
    if [ ! -f "$tarball" ]; then
      (cd "$dl" && apt-get source -q --download-only --tar-only "python$pyxy" >/dev/null 2>&1) || true
    fi
    if [ ! -f "$tarball" ]; then
      $SUDO apt-get update -qq
      (cd "$dl" && apt-get source -q --download-only --tar-only "python$pyxy" >/dev/null)
    fi
    if [ ! -f "$tarball" ]; then
      echo "error: Debian's python$pyxy source has no $pyver orig tarball ($(ls "$dl"))" >&2
      exit 1
    fi
    mkdir -p "$tests_dir"
    tar -xzf "$tarball" -C "$tests_dir" --strip-components=2 "Python-$pyver/Lib/test/test_sqlite3"
  fi
  tests_arg=(--tests "$tests_dir/test")
  tests_from="CPython $pyver's Lib/test/test_sqlite3 (Debian source), build/cpython-tests/$pyver/test"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-cpython.XXXXXX")
trap 'rm -rf "$work"' EXIT
runner=$root/scripts/cpython-sqlite3-run.py
# A private copy of the extension: a rebuild during the run cannot pull it
# from under the interpreter.
cp "$so" "$work/libmetadwr.so"
so=$work/libmetadwr.so
mkdir "$work/plain" "$work/metadwr"

echo "compat-cpython: $python $pyver, SQLite $("$python" -c 'import sqlite3; print(sqlite3.sqlite_version)'), test_sqlite3 from $tests_from"
t0=$(date +%s)
(cd "$work/plain" && env -u METADWR_ENABLE -u METADWR_SYNC "$python" "$runner" "$work/plain.json" "${tests_arg[@]}")
t1=$(date +%s)
(cd "$work/metadwr" && env -u METADWR_SYNC METADWR_ENABLE=1 "$python" "$runner" "$work/metadwr.json" "${tests_arg[@]}" --load "$so")
t2=$(date +%s)
echo "plain run $((t1 - t0))s, metadwr run $((t2 - t1))s"
if [ -n "${COMPAT_CPYTHON_KEEP:-}" ]; then
  cp "$work"/*.json "$work"/*.log "$COMPAT_CPYTHON_KEEP"/
fi

# Files the tests left in their working directory: the tests unlink the
# databases they create, which leaves a -dwr sidecar behind (informational).
for run in plain metadwr; do
  left=$(cd "$work/$run" && LC_ALL=C ls -A --quoting-style=escape | tr '\n' ' ')
  echo "left in the working directory by the $run run: ${left:-nothing}"
done

"$python" - "$work/plain.json" "$work/metadwr.json" <<'PY'
import collections, json, sys

plain = json.load(open(sys.argv[1]))
md = json.load(open(sys.argv[2]))
kinds = ["pass", "fail", "error", "skip", "xfail", "xpass"]

def counts(run):
    c = collections.Counter(t["outcome"] for t in run["tests"].values())
    return f"{len(run['tests'])} tests: " + ", ".join(f"{c[k]} {k}" for k in kinds)

print(f"plain:   {counts(plain)}")
print(f"metadwr: {counts(md)}")
ok = True
for p in md["probe"]:
    good = p["meta_double_write"] == "enabled" and p["dwr_exists"]
    print(f"metadwr probe {p['when']}: PRAGMA meta_double_write = {p['meta_double_write']!r}, -dwr {'exists' if p['dwr_exists'] else 'missing'}")
    ok &= good
if len(md["probe"]) != 2 or not ok:
    print("error: the metadwr run did not go through metadwr")
    sys.exit(1)

for name, run in (("plain", plain), ("metadwr", md)):
    broken = [t for t in run["tests"] if t.startswith("unittest.loader.")]
    if broken or len(run["tests"]) < 100:
        print(f"error: the {name} run did not load the suite: {broken or len(run['tests'])}")
        sys.exit(1)

ids = sorted(set(plain["tests"]) | set(md["tests"]))
same = differ = 0
for tid in ids:
    a = plain["tests"].get(tid, {"outcome": "missing", "detail": ""})
    b = md["tests"].get(tid, {"outcome": "missing", "detail": ""})
    if tid not in md["tests"]:
        differ += 1
    elif a["outcome"] == b["outcome"]:
        same += 1
        continue
    else:
        differ += 1
    print(f"DIFF {tid}: plain {a['outcome']}, metadwr {b['outcome']}")
    for line in (b["detail"] or a["detail"]).strip().splitlines()[-15:]:
        print(f"     {line}")
for tid in ids:
    o = plain["tests"].get(tid, {}).get("outcome")
    if o in ("fail", "error") and md["tests"].get(tid, {}).get("outcome") == o:
        print(f"note: {tid} is a {o} in both runs: {plain['tests'][tid]['detail'].strip().splitlines()[-1]}")
print(f"{same} passed, {differ} failed")
sys.exit(1 if differ else 0)
PY
