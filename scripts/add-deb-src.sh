#!/usr/bin/env bash
# Makes `apt-get source` work: when APT has no `deb-src` entry, adds one in
# deb822 form, /etc/apt/sources.list.d/metadwr-deb-src.sources, made of every
# `Types: deb` stanza of /etc/apt/sources.list.d/debian.sources again as
# `Types: deb-src`, with the same URIs, Suites, Components and Signed-By,
# and runs apt-get update. Does nothing when a deb-src entry exists.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
debian_sources=/etc/apt/sources.list.d/debian.sources
src_list=/etc/apt/sources.list.d/metadwr-deb-src.sources

if grep -rqsE '^[[:space:]]*Types:.*deb-src' /etc/apt/sources.list.d/ ||
  grep -qsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list; then
  exit 0
fi
if [ ! -f "$debian_sources" ]; then
  echo "error: no $debian_sources to take the Debian entry from" >&2
  exit 2
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
awk '
  function flush() {
    if (stanza != "" && is_deb) printf "%s\n", stanza
    stanza = ""; is_deb = 0
  }
  /^[[:space:]]*$/ { flush(); next }
  /^[[:space:]]*#/ { next }
  /^Types:/ {
    if ($0 ~ /(^|[[:space:]])deb([[:space:]]|$)/) is_deb = 1
    stanza = stanza "Types: deb-src\n"; next
  }
  { stanza = stanza $0 "\n" }
  END { flush() }
' "$debian_sources" >"$tmp"
if ! grep -q '^Types: deb-src' "$tmp" || ! grep -q '^Signed-By:' "$tmp"; then
  echo "error: no Debian entry with Signed-By in $debian_sources" >&2
  exit 2
fi
{
  echo "# Added by metadwr scripts/add-deb-src.sh: source packages for"
  echo "# apt-get source, with the Debian entry's own Signed-By."
  echo
  cat "$tmp"
} | $SUDO tee "$src_list" >/dev/null
echo "added $src_list" >&2
$SUDO apt-get update -qq >&2
