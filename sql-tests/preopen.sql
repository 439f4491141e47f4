-- The database was already open when the extension loaded: .load re-opens
-- it through metadwr in place (it is idle, rollback journal), so the pragma
-- protects it without another .open.
.open pre.db
CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO notes(body) VALUES ('first'), ('second');
.vfsname
.load ./libmetadwr
.vfsname
PRAGMA meta_double_write;
PRAGMA meta_double_write=enabled;
INSERT INTO notes(body) VALUES ('third');
.shell ls
.print -- zero page 1 under the open connection
.shell dd if=/dev/zero of=pre.db bs=4096 count=1 conv=notrunc status=none
SELECT count(*) FROM notes;
SELECT meta_recover();
SELECT * FROM notes;
PRAGMA integrity_check;
PRAGMA meta_double_write;
.print -- and new databases are protected by default through metadwr
.open later.db
.vfsname
