# metadwr benchmarks (included by the Makefile; not part of `make test`).
#
#   make bench         full run, ~10-15 min on 2 cores: interleaved A/B rounds,
#                      -dwr traffic, recovery time, peak RSS, speedtest1
#   make bench-quick   a few rounds of smaller workloads, < 3 min
#   make bench-venv    build/venv with matplotlib, for the plot
#   make bench-profile syscalls and instructions per operation, plain vs metadwr
#                      (strace, valgrind) into build/bench/profile/
#
# Results: docs/bench.md, docs/bench.png, build/bench/results.json (and a
# copy of every run under build/bench/history/).
# BENCH_ROUNDS and BENCH_ARGS pass options to the harness, e.g.
#   make bench BENCH_ROUNDS=9 BENCH_ARGS="--only commit,read"

CARGO ?= cargo
BENCH_BIN := bench/target/release/metadwr-bench
BENCH_VENV := build/venv
BENCH_PYTHON ?= python3
BENCH_ROUNDS ?= 7
BENCH_QUICK_ROUNDS ?= 5
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-build bench-venv bench-profile

bench-build:
	cd bench && $(CARGO) build --release

# matplotlib in a venv of the pyenv python3; a failure (no network) only
# costs the plot, the harness says so in docs/bench.md.
bench-venv:
	@if [ ! -x $(BENCH_VENV)/bin/python ] || ! $(BENCH_VENV)/bin/python -c 'import matplotlib' 2>/dev/null; then \
	  $(BENCH_PYTHON) -m venv $(BENCH_VENV) && \
	  $(BENCH_VENV)/bin/pip install -q matplotlib || \
	  echo "bench-venv: could not install matplotlib; the bench runs without a plot"; \
	fi

bench: build bench-build bench-venv
	$(BENCH_BIN) --root $(CURDIR) --rounds $(BENCH_ROUNDS) $(BENCH_ARGS)

bench-quick: build bench-build bench-venv
	$(BENCH_BIN) --root $(CURDIR) --quick --rounds $(BENCH_QUICK_ROUNDS) $(BENCH_ARGS)

bench-profile: build bench-build
	scripts/profile-bench.sh $(CURDIR)
