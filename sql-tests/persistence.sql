-- Protection persists through the -dwr file: reopening protects without the
-- pragma; after =disabled it stays off.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO t(name) VALUES ('kept');
.open other.db
PRAGMA meta_double_write;
.print -- reopen app.db: protected without asking
.open app.db
PRAGMA meta_double_write;
INSERT INTO t(name) VALUES ('added after reopen');
PRAGMA meta_double_write_stats;
SELECT meta_recover();
.print -- another process that loads the extension sees it too
.shell "$SQLITE3" -cmd '.load ./libmetadwr' app.db 'PRAGMA meta_double_write' 2>&1
.print -- disable, reopen: stays disabled
PRAGMA meta_double_write=disabled;
.open other.db
.open app.db
PRAGMA meta_double_write;
.shell "$SQLITE3" -cmd '.load ./libmetadwr' app.db 'PRAGMA meta_double_write' 2>&1
.shell ls
SELECT * FROM t;
