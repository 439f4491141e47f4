#!/usr/bin/env bash
# Prints the reliability table (markdown) from the `RELIABILITY ...` lines
# the crash, kill, fault and concurrency suites print (make reliability,
# make torture write them to build/reliability/*.log).
#
#   scripts/reliability-summary.sh LOG...
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 LOG..." >&2
  exit 2
fi
grep -h '^RELIABILITY ' "$@" | sort -u | awk '
function val(key,   i, kv) {
  for (i = 2; i <= NF; i++) {
    split($i, kv, "=")
    if (kv[1] == key) return kv[2]
  }
  return 0
}
BEGIN {
  n = split("scenarios crash_points faults kills recoveries healed refused refused_plain_first wrong_restores lost sqlite_lost failures", cols, " ")
  printf "| test | scenarios | crash points | faults injected | process kills | recoveries checked | healed exactly | refused | of which plain-first | wrong restores | states lost by metadwr | states lost by SQLite alone | failed checks |\n"
  printf "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
}
{
  test = val("test")
  if (seen[test]++) next
  printf "| %s", test
  for (c = 1; c <= n; c++) {
    v = val(cols[c]); tot[c] += v
    printf " | %s", v
  }
  printf " |\n"
}
END {
  printf "| **total**"
  for (c = 1; c <= n; c++) printf " | **%d**", tot[c]
  printf " |\n"
}'
