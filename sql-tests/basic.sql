-- Enable, query and disable protection; the sync and stats pragmas.
.load ./libmetadwr
.open app.db
.vfsname
PRAGMA meta_double_write;
PRAGMA meta_double_write_stats;
.print -- enable on a new database creates app.db-dwr
PRAGMA meta_double_write=enabled;
.shell ls
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO t(name) VALUES ('one'), ('two'), ('three');
PRAGMA meta_double_write;
PRAGMA meta_double_write_stats;
.print -- enabling again is harmless
PRAGMA meta_double_write=enabled;
.print -- sync policy: periodic by default, off|periodic|full
PRAGMA meta_double_write_sync;
PRAGMA meta_double_write_sync=full;
PRAGMA meta_double_write_sync;
CREATE TABLE u(x);
PRAGMA meta_double_write_stats;
PRAGMA meta_double_write_sync=off;
PRAGMA meta_double_write_sync=periodic;
.print -- nothing is damaged
SELECT meta_recover();
.print -- disable removes app.db-dwr
PRAGMA meta_double_write=disabled;
PRAGMA meta_double_write;
.shell ls
PRAGMA meta_double_write_stats;
SELECT count(*) FROM t;
PRAGMA integrity_check;
