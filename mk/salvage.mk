# Salvage yield lab (issue 12; included by the Makefile): how many rows a
# salvage brings back into their own tables, against SQLite's .recover.
#
#   make salvage-lab          full run: 12 databases of ~29,000 rows (page
#                             sizes 1024/4096/8192 x rollback/WAL x
#                             auto_vacuum none/full), page 1 + the schema +
#                             0/1/5/10 % of the other pages destroyed with
#                             random bytes and with zeros; a few minutes on
#                             2 cores. Report: build/salvage-lab/report.md
#   make salvage-lab-sample   the bounded sample `make test` runs (4
#                             databases of ~10,000 rows, covering every page
#                             size, journal mode and auto_vacuum setting;
#                             well under 60 s).
#                             Report: build/salvage-lab/sample/report.md
#   make salvage-big          a ~1 GB database (rollback, 4096), page 1, the
#                             schema and 1 % destroyed: meta_salvage against
#                             .recover, times and ratio. Not in make test.
#                             Report: build/salvage-lab/big-report.txt
#
# Columns: metadwr's meta_salvage (skipped, with a line saying so, while the
# extension has no such function), .recover of the stock shell, and
# PRAGMA meta_recover followed by .recover of the newest shell the build
# reaches (scripts/build-sqlite-recover.sh -> build/sqlite-recover/).
# The lab fails when meta_salvage puts a row in a wrong table, alters one,
# or changes the damaged file.
#
# SALVAGE_SEED (1) picks other databases and damage; SALVAGE_ARGS passes
# options to scripts/salvage-lab.py (--keep, --rows N, --tables N, ...).

SALVAGE_SEED ?= 1
SALVAGE_ARGS ?=
SALVAGE_SHELL = build/sqlite-recover/sqlite3

.PHONY: salvage-lab salvage-lab-sample salvage-big salvage-shell

salvage-shell:
	@scripts/build-sqlite-recover.sh >/dev/null

salvage-lab: deps build salvage-shell
	$(PYTHON) scripts/salvage-lab.py --so $(CURDIR)/$(SO) --recover-shell $(SALVAGE_SHELL) \
	  --mode full --seed $(SALVAGE_SEED) $(SALVAGE_ARGS)

salvage-lab-sample: deps build salvage-shell
	$(PYTHON) scripts/salvage-lab.py --so $(CURDIR)/$(SO) --recover-shell $(SALVAGE_SHELL) \
	  --mode sample --seed $(SALVAGE_SEED) $(SALVAGE_ARGS)

salvage-big: deps build salvage-shell
	$(PYTHON) scripts/salvage-lab.py --so $(CURDIR)/$(SO) --recover-shell $(SALVAGE_SHELL) \
	  --mode big --seed $(SALVAGE_SEED) $(SALVAGE_ARGS)
