-- Page 1 zeroed: SQLite without metadwr cannot read the file at all;
-- meta_recover() restores it from the copy and every row is back.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers, total REAL);
CREATE INDEX orders_customer ON orders(customer);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO customers(name) SELECT 'customer ' || i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO orders(customer, total) SELECT 1 + i % 500, i * 1.25 FROM n;
SELECT count(*), sum(total) FROM orders;
.open other.db
.print -- zero page 1 (4096 bytes)
.shell dd if=/dev/zero of=app.db bs=4096 count=1 conv=notrunc status=none
.print -- stock SQLite (the shell without the extension): not a database any more
.shell "$SQLITE3" app.db 'SELECT count(*) FROM customers' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.print -- the plain unix VFS in this shell: the same
.open file:app.db?vfs=unix
SELECT count(*) FROM customers;
.print -- through metadwr
.open app.db
SELECT count(*) FROM customers;
PRAGMA meta_double_write;
SELECT meta_recover();
.shell ls
SELECT count(*) FROM customers;
SELECT count(*), sum(total) FROM orders;
SELECT name FROM sqlite_schema ORDER BY name;
PRAGMA integrity_check;
PRAGMA meta_double_write;
.print -- a second call finds nothing to do
SELECT meta_recover();
.print -- the quarantine file holds the damaged page: DWRQ, page 1, size 4096
.shell od -A d -t x1 -N 12 app.db-dwr-quarantine
.shell wc -c < app.db-dwr-quarantine
.print -- the repaired file reads without metadwr
.shell "$SQLITE3" app.db 'SELECT count(*) FROM orders; PRAGMA integrity_check' 2>&1
