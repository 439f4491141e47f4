# metadwr — build, test and demo targets.
#
#   make          build the release extension, leave ./libmetadwr.so here
#   make test     everything CI runs: unit tests, corruption matrix,
#                 sql-tests through the stock shell, the C example, Python,
#                 the salvage lab's bounded sample (mk/salvage.mk)
#   make demo     smash a database and watch metadwr bring it back
#   make lint     cargo fmt --check and clippy

CARGO ?= cargo
SO := libmetadwr.so
PYTHON ?= /usr/bin/python3
SQLITE3 ?= sqlite3

.PHONY: all build test unit matrix sql-tests c-example python-test demo lint clean deps fuzz

all: build

build: $(SO)

$(SO): Cargo.toml $(wildcard src/*.rs src/*/*.rs)
	$(CARGO) build --release
	# Replace, never overwrite in place: a running program has it mapped.
	cp target/release/libmetadwr.so $(SO).tmp && mv -f $(SO).tmp $(SO)

# Tools the tests need; present on a stock machine, installed when missing.
deps:
	@scripts/ensure-deps.sh

test: deps build unit matrix sql-tests c-example python-test salvage-lab-sample
	@echo "make test: all suites passed"

# Unit tests, plus the bounded property tests of the -dwr reader
# (tests/dwr_fuzz.rs) and the salvage's database reader (tests/salvage_fuzz.rs).
unit:
	$(CARGO) test --release --lib --tests

# The same property tests, long: FUZZ_ITERATIONS mutated files from FUZZ_SEED.
FUZZ_ITERATIONS ?= 200000
FUZZ_SEED ?= 1
fuzz:
	METADWR_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) METADWR_FUZZ_SEED=$(FUZZ_SEED) \
	  $(CARGO) test --release --test dwr_fuzz --test salvage_fuzz -- --nocapture

# The extension with the test-only panic hook (cargo feature test-hooks) that
# itest/tests/panic_guard.rs loads; a target directory of its own, so that it
# never stands in for the real one.
HOOKS_SO := target/test-hooks/release/libmetadwr.so

$(HOOKS_SO): Cargo.toml $(wildcard src/*.rs src/*/*.rs)
	$(CARGO) build --release --features test-hooks --target-dir target/test-hooks

matrix: build $(HOOKS_SO)
	cd itest && METADWR_SO=$(CURDIR)/$(SO) METADWR_TEST_HOOKS_SO=$(CURDIR)/$(HOOKS_SO) \
	  $(CARGO) test --release --no-fail-fast -- --test-threads=2

sql-tests: build
	scripts/run-sql-tests.sh $(SQLITE3) $(CURDIR)/$(SO)

c-example: build
	scripts/run-c-example.sh $(CURDIR)

python-test: build
	$(PYTHON) scripts/test-python.py $(CURDIR)/$(SO)

demo: build
	scripts/demo.sh $(CURDIR)/$(SO)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# Longer suites live in their own fragments: make compat, make torture,
# make bench, make salvage-lab (see mk/).
-include mk/*.mk

clean:
	$(CARGO) clean
	rm -f $(SO)
	rm -rf build
