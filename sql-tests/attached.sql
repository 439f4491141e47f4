-- An attached database is protected and restored on its own, by schema
-- name: PRAGMA b.meta_double_write, meta_recover('b').
.load ./libmetadwr
.open app.db
CREATE TABLE m(x); INSERT INTO m VALUES ('main row');
ATTACH 'b.db' AS b;
PRAGMA b.meta_double_write;
PRAGMA b.meta_double_write=enabled;
PRAGMA main.meta_double_write;
CREATE TABLE b.items(id INTEGER PRIMARY KEY, label TEXT);
CREATE INDEX b.items_label ON items(label);
INSERT INTO b.items(label) VALUES ('alpha'), ('beta'), ('gamma');
.shell ls
.print -- zero b.db page 1 while it is attached
.shell dd if=/dev/zero of=b.db bs=4096 count=1 conv=notrunc status=none
SELECT count(*) FROM b.items;
.print -- main has no copy; b is restored by name
SELECT meta_recover();
SELECT meta_recover('b');
SELECT * FROM b.items ORDER BY id;
SELECT label FROM b.items WHERE label > 'b' ORDER BY label;
PRAGMA b.integrity_check;
PRAGMA b.meta_double_write;
SELECT meta_recover('b');
SELECT * FROM main.m;
.print -- protection persists for an attached database too
DETACH b;
ATTACH 'b.db' AS again;
PRAGMA again.meta_double_write;
INSERT INTO again.items(label) VALUES ('delta');
SELECT meta_recover('again');
.shell ls
