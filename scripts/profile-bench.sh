#!/usr/bin/env bash
# Where metadwr's overhead comes from, in numbers that do not depend on how
# busy the machine is: user-space instructions (valgrind --tool=callgrind)
# and system calls (strace -c -f) per operation, plain SQLite vs metadwr,
# for small runs of the bench workloads.
#
#   scripts/profile-bench.sh [ROOT]        (make bench-profile)
#
# Each workload runs with N operations and with 0 (same setup, no loop), in
# both modes; the per-operation figure is (N-run - 0-run) / N, so loading
# the extension and enabling protection are not counted. Writes
# build/bench/profile/profile.md, the callgrind outputs and the top
# functions of libmetadwr.so per workload.
set -euo pipefail

root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
bin=$root/bench/target/release/metadwr-bench
so=$root/libmetadwr.so
tpl=$root/build/bench/templates
out=$root/build/bench/profile
work=$out/work

for tool in valgrind strace callgrind_annotate; do
  command -v $tool >/dev/null || { echo "profile-bench: $tool is not installed (apt-get install valgrind strace)" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "profile-bench: build the bench first (make bench-build)" >&2; exit 2; }
[ -f "$so" ] || { echo "profile-bench: $so missing (make build)" >&2; exit 2; }
if [ ! -f "$tpl/read.db" ] || [ ! -f "$tpl/big-2000.db" ]; then
  # The harness makes the templates; a run of nothing but templates.
  "$bin" --root "$root" --only none --no-plot --md "$out/.unused.md" >/dev/null 2>&1 || true
fi
mkdir -p "$out"
rm -rf "$work"
# One private copy of the extension for the whole run (a rebuild elsewhere
# must not change it half-way).
cp "$so" "$out/libmetadwr.so"
so=$out/libmetadwr.so
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
if [ -n "$(git -C "$root" status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then commit="$commit (src modified)"; fi

# name | ops | sample arguments
scenarios=(
  "commit, rollback, NORMAL, 10 tables|1000|--kind commit --template $tpl/small-10.db --journal delete --sync normal"
  "commit, WAL, NORMAL, 10 tables|2000|--kind commit --template $tpl/small-10.db --journal wal --sync normal"
  "commit, rollback, NORMAL, 2000 tables|200|--kind commit --template $tpl/big-2000.db --journal delete --sync normal"
  "schema-heavy (3 DDL per op), 2000 tables|10|--kind schema --template $tpl/big-2000.db --journal delete --sync normal"
  "point select, mmap_size=0|20000|--kind point --rows 50000 --mmap 0 --template $tpl/read.db"
  "point select, mmap_size=256M|20000|--kind point --rows 50000 --mmap 268435456 --template $tpl/read.db"
  "full scan, mmap_size=0|3|--kind scan --rows 50000 --mmap 0 --template $tpl/read.db"
  "full scan, mmap_size=256M|3|--kind scan --rows 50000 --mmap 268435456 --template $tpl/read.db"
  "open + first query, 10 tables|100|--kind open --template $tpl/small-10.db"
  "open + first query, 2000 tables|10|--kind open --template $tpl/big-2000.db"
)

results=$out/raw.tsv
: >"$results"
i=0
for sc in "${scenarios[@]}"; do
  IFS='|' read -r name n args <<<"$sc"
  i=$((i + 1))
  for mode in plain metadwr; do
    for ops in "$n" 0; do
      tag="s$i-$mode-$ops"
      # shellcheck disable=SC2086
      valgrind --tool=callgrind --callgrind-out-file="$out/$tag.callgrind" \
        "$bin" __sample $args --n "$ops" --mode "$mode" --dir "$work/$tag" --so "$so" \
        >"$out/$tag.result" 2>"$out/$tag.valgrind"
      ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$out/$tag.callgrind")
      # shellcheck disable=SC2086
      strace -f -c -o "$out/$tag.strace" \
        "$bin" __sample $args --n "$ops" --mode "$mode" --dir "$work/$tag-s" --so "$so" >/dev/null
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$name" "$mode" "$ops" "$ir" "$out/$tag.strace" >>"$results"
    done
    if [ "$mode" = metadwr ]; then
      callgrind_annotate --inclusive=yes "$out/s$i-metadwr-$n.callgrind" 2>/dev/null |
        grep -E 'metadwr::' | grep -vE 'metadwr_bench|rusqlite' | head -12 >"$out/s$i-top-inclusive.txt" || true
      callgrind_annotate "$out/s$i-metadwr-$n.callgrind" 2>/dev/null |
        grep -E 'libmetadwr' | head -12 >"$out/s$i-top-self.txt" || true
    fi
  done
  echo "profiled: $name" >&2
done
rm -rf "$work"

# speedtest1, whole program (build/speedtest1*, from scripts/build-speedtest1.sh).
st_results=$out/speedtest1.tsv
: >"$st_results"
if [ -x "$root/build/speedtest1" ] && [ -x "$root/build/speedtest1-metadwr" ]; then
  for journal in delete wal; do
    for mode in plain metadwr; do
      d=$work/st-$journal-$mode
      mkdir -p "$d"
      if [ $mode = plain ]; then
        cmd=("$root/build/speedtest1"); envs=()
      else
        cmd=("$root/build/speedtest1-metadwr"); envs=(METADWR_ENABLE=1)
      fi
      (cd "$d" && env "${envs[@]}" valgrind --tool=callgrind --callgrind-out-file="$out/st-$journal-$mode.callgrind" \
        "${cmd[@]}" --size 10 --journal $journal st.db >/dev/null 2>"$out/st-$journal-$mode.valgrind")
      ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$out/st-$journal-$mode.callgrind")
      rm -f "$d"/st.db*
      (cd "$d" && env "${envs[@]}" strace -f -c -o "$out/st-$journal-$mode.strace" "${cmd[@]}" --size 10 --journal $journal st.db >/dev/null)
      dwr=no; [ -f "$d/st.db-dwr" ] && dwr=yes
      printf '%s\t%s\t%s\t%s\t%s\n' "$journal" "$mode" "$ir" "$out/st-$journal-$mode.strace" "$dwr" >>"$st_results"
    done
  done
  echo "profiled: speedtest1" >&2
fi
rm -rf "$work"

python3 - "$results" "$out/profile.md" "$commit" "$st_results" <<'EOF'
import collections, re, sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]

def syscalls(path):
    calls = collections.Counter()
    for line in open(path):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] += int(m.group(1))
    return calls

data = collections.defaultdict(dict)
names = {}
for idx, name, mode, ops, ir, st in rows:
    names[idx] = name
    data[(idx, mode)][int(ops)] = (int(ir), syscalls(st))

out = ["# metadwr profile: per-operation cost, plain vs metadwr", "",
       f"Extension at commit {sys.argv[3]}; system SQLite; valgrind/strace counts are deterministic", "",
       "User-space instructions (callgrind Ir) and system calls (strace -c -f) per",
       "operation: (run with N operations - run with 0) / N, same setup in both.", "",
       "| workload | N | Ir/op plain | Ir/op metadwr | extra Ir/op | syscalls/op plain | syscalls/op metadwr | extra syscalls/op (by name) |",
       "|---|--:|--:|--:|--:|--:|--:|---|"]
for idx in sorted(names, key=int):
    p, m = data[(idx, "plain")], data[(idx, "metadwr")]
    n = max(p)
    def per(d):
        (ir_n, sc_n), (ir_0, sc_0) = d[n], d[0]
        sc = collections.Counter(sc_n)
        sc.subtract(sc_0)
        return (ir_n - ir_0) / n, sc
    irp, scp = per(p)
    irm, scm = per(m)
    extra = collections.Counter(scm)
    extra.subtract(scp)
    parts = [f"{k} {v / n:+.2f}" for k, v in sorted(extra.items(), key=lambda kv: -abs(kv[1])) if abs(v / n) >= 0.05]
    out.append(f"| {names[idx]} | {n} | {irp:,.0f} | {irm:,.0f} | {irm - irp:+,.0f} ({irm / irp:.2f}x) | "
               f"{sum(scp.values()) / n:.2f} | {sum(scm.values()) / n:.2f} | {', '.join(parts) or '-'} |")
st_rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[4]) if l.strip()]
if st_rows:
    out += ["", "speedtest1 --size 10, whole program (startup included):", "",
            "| journal | Ir plain | Ir metadwr | ratio | syscalls plain | syscalls metadwr | extra (by name) | -dwr written |",
            "|---|--:|--:|--:|--:|--:|---|---|"]
    by = {(j, m): (int(ir), syscalls(st), dwr) for j, m, ir, st, dwr in st_rows}
    for j in ("delete", "wal"):
        if (j, "plain") in by and (j, "metadwr") in by:
            (ip, sp, _), (im, sm, dwr) = by[(j, "plain")], by[(j, "metadwr")]
            extra = collections.Counter(sm)
            extra.subtract(sp)
            parts = [f"{k} {v:+d}" for k, v in sorted(extra.items(), key=lambda kv: -abs(kv[1])) if v][:6]
            out.append(f"| {j} | {ip:,} | {im:,} | {im / ip:.4f} | {sum(sp.values()):,} | {sum(sm.values()):,} | {', '.join(parts) or '-'} | {dwr} |")
out.append("")
out.append("Top functions of libmetadwr.so (inclusive Ir) per workload: build/bench/profile/s*-top-inclusive.txt.")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
