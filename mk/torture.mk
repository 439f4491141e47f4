# Crash, process-kill, I/O-fault and concurrency suites (included by the
# Makefile). Their bounded versions are ordinary itest tests, so `make test`
# (make matrix) already runs them; these targets add the counters and the
# long versions.
#
#   make reliability            the bounded suites alone, ~35 s on 2 cores,
#                               with the table of docs/reliability.md
#   make torture                the long versions (and the bounded ones):
#                               SEED=1 COUNT=3000, ~25 min on 2 cores
#                               (COUNT=2000 took 17 min)
#   make torture SEED=7 COUNT=200    another seed, shorter
#
# COUNT is the number of sampled crash points per configuration (16:
# journal x synchronous x -dwr sync x page size, workloads of 60
# transactions), of SIGKILLed writers per journal mode, and /100 the rounds
# of 4 processes x 2 threads per journal mode. The findings' minimal
# reproductions (itest/tests/reliability_findings.rs) run in both, except
# F1's, which show a documented limit and fail by design (run them with
# `cargo test --release --test reliability_findings -- --ignored`).
#
# Every suite prints a `RELIABILITY test=... crash_points=... kills=...`
# line; they are collected in build/reliability/<target>.log and summed by
# scripts/reliability-summary.sh.

SEED ?= 1
COUNT ?= 3000
RELIABILITY_DIR := $(CURDIR)/build/reliability
RELIABILITY_TESTS := --test crash_points --test process_kills --test io_faults \
  --test concurrent_writers --test reliability_findings

.PHONY: reliability torture

reliability: build
	@mkdir -p $(RELIABILITY_DIR)
	@rm -f $(RELIABILITY_DIR)/bounded.log
	cd itest && METADWR_SO=$(CURDIR)/$(SO) \
	  METADWR_RELIABILITY_LOG=$(RELIABILITY_DIR)/bounded.log \
	  $(CARGO) test --release --no-fail-fast $(RELIABILITY_TESTS) -- --test-threads=2; \
	  rc=$$?; cd $(CURDIR) && scripts/reliability-summary.sh $(RELIABILITY_DIR)/bounded.log; exit $$rc

torture: build
	@mkdir -p $(RELIABILITY_DIR)
	@rm -f $(RELIABILITY_DIR)/torture-$(SEED)-$(COUNT).log
	cd itest && METADWR_SO=$(CURDIR)/$(SO) \
	  METADWR_TORTURE_SEED=$(SEED) METADWR_TORTURE_COUNT=$(COUNT) \
	  METADWR_RELIABILITY_LOG=$(RELIABILITY_DIR)/torture-$(SEED)-$(COUNT).log \
	  $(CARGO) test --release --no-fail-fast $(RELIABILITY_TESTS) -- --include-ignored --skip f1_ --test-threads=2; \
	  rc=$$?; cd $(CURDIR) && scripts/reliability-summary.sh $(RELIABILITY_DIR)/torture-$(SEED)-$(COUNT).log; exit $$rc
