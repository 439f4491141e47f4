-- Error messages: every one starts with the name of the pragma or function.
.load ./libmetadwr
.open app.db
CREATE TABLE t(a); INSERT INTO t VALUES (1);
.print -- meta_recover() without a copy
SELECT meta_recover();
SELECT meta_recover('main');
.print -- no such schema
SELECT meta_recover('nosuch');
SELECT meta_recover(NULL);
.print -- the temp schema has no file
CREATE TEMP TABLE scratch(x);
SELECT meta_recover('temp');
.print -- an in-memory attached database has no file
ATTACH ':memory:' AS mem;
SELECT meta_recover('mem');
.print -- bad pragma values
PRAGMA meta_double_write=maybe;
PRAGMA meta_double_write='';
PRAGMA meta_double_write_sync=sometimes;
PRAGMA meta_double_write;
PRAGMA meta_double_write_sync;
.print -- disabling an unprotected database is not an error
PRAGMA meta_double_write=disabled;
.print -- an in-memory main database
.open :memory:
SELECT meta_recover();
.print -- the files are untouched
.shell ls
.open app.db
SELECT * FROM t;
