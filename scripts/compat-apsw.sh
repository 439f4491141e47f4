#!/usr/bin/env bash
# APSW's own test suite (python -m apsw.tests, shipped in the apsw wheel),
# run twice by a venv of Debian's /usr/bin/python3 with apsw $APSW_VERSION
# from PyPI:
#
#   plain    the suite as is: APSW's bundled SQLite through the unix VFS
#   metadwr  the extension loaded so that metadwr is the default VFS before
#            every test (APSW's tests call apsw.shutdown()/initialize(),
#            which make unix the default again; scripts/apsw-run.py puts
#            metadwr back), with METADWR_ENABLE=1, so every main database
#            the tests open is protected
#
# The metadwr run must give every test the same outcome (pass, fail, error,
# skip, expected failure) as the plain run. Prints both runs' counts, the
# probe (default VFS per test, tests that wrote a -dwr, a new database's
# PRAGMA meta_double_write before and after the suite), every test whose
# outcome differs, and a last line "N passed, M failed": N tests with the
# same outcome in both runs (or a difference in EXPECTED below), M with
# another outcome or missing from one run. Exits non-zero when M > 0 or when
# the probe shows that the metadwr run did not go through metadwr (or the
# plain run did).
#
#   scripts/compat-apsw.sh [SO]       (SO defaults to ./libmetadwr.so)
#
#   APSW_VERSION=X.Y.Z.W   another apsw release than the pinned one
#   COMPAT_APSW_K=PATTERN  only the tests matching PATTERN (unittest's -k)
#   COMPAT_APSW_KEEP=DIR   copy both runs' JSON and logs to DIR
#
# APSW bundles its own SQLite (3.54.1 in apsw 3.54.1.0) and does not use the
# system library, so this runs on the current SQLite only; there is no
# 3.40.1 variant. The pyenv python3 first on PATH in the dev container is
# built without loadable-extension support, hence /usr/bin/python3; the venv
# lives in build/apsw-venv (python3-venv is installed with apt when missing).
set -euo pipefail

APSW_VERSION=${APSW_VERSION:-3.54.1.0}

root=$(cd "$(dirname "$0")/.." && pwd)
so=${1:-$root/libmetadwr.so}
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
syspython=/usr/bin/python3
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ ! -f "$so" ]; then
  echo "error: $so not found (run make build)" >&2
  exit 2
fi

# --- the venv and apsw -------------------------------------------------------
venv=$root/build/apsw-venv
python=$venv/bin/python
if [ ! -x "$python" ]; then
  if ! "$syspython" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "installing python3-venv"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  "$syspython" -m venv "$venv"
fi
have=$("$python" -c 'import apsw; print(apsw.apsw_version())' 2>/dev/null || true)
if [ "$have" != "$APSW_VERSION" ]; then
  echo "installing apsw==$APSW_VERSION from PyPI into build/apsw-venv"
  "$python" -m pip install -q --disable-pip-version-check "apsw==$APSW_VERSION"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/metadwr-apsw.XXXXXX")
trap 'rm -rf "$work"' EXIT
runner=$root/scripts/apsw-run.py
# A private copy of the extension: a rebuild during the run cannot pull it
# from under the interpreter.
cp "$so" "$work/libmetadwr.so"
so=$work/libmetadwr.so
# Each run in its own directory, with TMPDIR below it, so that the probe
# sees every -dwr the tests' databases get, temporary directories included.
for run in plain metadwr; do mkdir -p "$work/$run/tmp"; done

echo "compat-apsw: $("$python" -c 'import apsw, sys; print(f"apsw {apsw.apsw_version()} (SQLite {apsw.sqlite_lib_version()}), Python {sys.version.split()[0]} ({sys.executable})")')"
t0=$(date +%s)
(cd "$work/plain" && env -u METADWR_ENABLE -u METADWR_SYNC TMPDIR="$work/plain/tmp" \
  "$python" "$runner" "$work/plain.json" ${COMPAT_APSW_K:+-k "$COMPAT_APSW_K"})
t1=$(date +%s)
(cd "$work/metadwr" && env -u METADWR_SYNC METADWR_ENABLE=1 TMPDIR="$work/metadwr/tmp" \
  "$python" "$runner" "$work/metadwr.json" --load "$so" ${COMPAT_APSW_K:+-k "$COMPAT_APSW_K"})
t2=$(date +%s)
echo "plain run $((t1 - t0))s, metadwr run $((t2 - t1))s"
if [ -n "${COMPAT_APSW_KEEP:-}" ]; then
  cp "$work"/*.json "$work"/*.log "$COMPAT_APSW_KEEP"/
fi

"$python" - "$work/plain.json" "$work/metadwr.json" "${COMPAT_APSW_K:-}" <<'PY'
import collections, json, sys

plain = json.load(open(sys.argv[1]))
md = json.load(open(sys.argv[2]))
subset = bool(sys.argv[3])
kinds = ["pass", "fail", "error", "skip", "xfail", "xpass"]

# Differences that are not metadwr's to fix, each with its reason:
# {test id: (plain outcome, metadwr outcome, reason)}. Empty: none found.
EXPECTED = {}

def counts(run):
    c = collections.Counter(t["outcome"] for t in run["tests"].values())
    return f"{len(run['tests'])} tests: " + ", ".join(f"{c[k]} {k}" for k in kinds)

print(f"plain:   {counts(plain)}")
print(f"metadwr: {counts(md)}")

# --- the probe ---------------------------------------------------------------
ok = True
for name, run in (("plain", plain), ("metadwr", md)):
    tests = run["tests"]
    start = collections.Counter(t.get("vfs_start") for t in tests.values())
    dwr = [tid for tid, t in tests.items() if t.get("dwr")]
    files = sorted({f for t in tests.values() for f in t.get("dwr", [])})
    left = [tid for tid, t in tests.items() if t.get("vfs_end") != t.get("vfs_start")]
    print(f"{name} probe: default VFS at the start of each test: "
          + ", ".join(f"{v} {n}" for v, n in start.most_common())
          + f"; {len(dwr)} tests created or rewrote a -dwr ({len(files)} distinct files)"
          + (f"; {len(left)} left another default VFS behind: {', '.join(sorted(left))}" if left else ""))
    if name == "plain":
        if start.get("metadwr") or dwr:
            print("error: the plain run went through metadwr")
            ok = False
    else:
        restored = [tid for tid, t in tests.items() if t.get("restored")]
        print(f"metadwr probe: metadwr made the default VFS again before {len(restored)} tests"
              + (f": {', '.join(restored)}" if restored else "")
              + f" (the extension loaded {run['restores']} times in all, with the first load and the final probe)")
        if start.get("metadwr") != len(tests) or not dwr:
            print("error: the metadwr run did not go through metadwr for every test")
            ok = False
        for p in run["probe"]:
            good = p["meta_double_write"] == "enabled" and p["dwr_exists"] and p["vfs"].startswith("metadwr")
            print(f"metadwr probe {p['when']}: vfs {p['vfs']}, PRAGMA meta_double_write = "
                  f"{p['meta_double_write']!r}, -dwr {'exists' if p['dwr_exists'] else 'missing'}")
            ok &= good
        if len(run["probe"]) != 2:
            ok = False
    if len(tests) < (1 if subset else 200) or any(t.startswith("unittest.loader.") for t in tests):
        print(f"error: the {name} run did not load the suite ({len(tests)} tests)")
        ok = False
if not ok:
    print("error: probe failed")
    sys.exit(1)

# --- test by test --------------------------------------------------------------
ids = sorted(set(plain["tests"]) | set(md["tests"]))
same = differ = 0
for tid in ids:
    a = plain["tests"].get(tid, {"outcome": "missing", "detail": ""})
    b = md["tests"].get(tid, {"outcome": "missing", "detail": ""})
    if a["outcome"] == b["outcome"]:
        same += 1
        continue
    exp = EXPECTED.get(tid)
    if exp and exp[:2] == (a["outcome"], b["outcome"]):
        same += 1
        print(f"expected difference {tid}: plain {a['outcome']}, metadwr {b['outcome']}: {exp[2]}")
        continue
    differ += 1
    print(f"DIFF {tid}: plain {a['outcome']}, metadwr {b['outcome']}")
    for line in (b["detail"] or a["detail"]).strip().splitlines()[-15:]:
        print(f"     {line}")
for tid in EXPECTED:
    if tid in plain["tests"] and plain["tests"][tid]["outcome"] == md["tests"].get(tid, {}).get("outcome"):
        print(f"note: {tid} is in EXPECTED but no longer differs")
for tid in ids:
    o = plain["tests"].get(tid, {}).get("outcome")
    if o in ("fail", "error") and md["tests"].get(tid, {}).get("outcome") == o:
        print(f"note: {tid} is a {o} in both runs: {plain['tests'][tid]['detail'].strip().splitlines()[-1]}")
print(f"{same} passed, {differ} failed")
sys.exit(1 if differ else 0)
PY
