-- meta_salvage: when data pages are damaged as well as page 1, the rows
-- still readable go back into their own tables in a new database, and the
-- damaged file is left as it is.
.load ./libmetadwr
.open app.db
PRAGMA page_size=1024;
PRAGMA meta_double_write=enabled;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INT, total REAL);
CREATE INDEX orders_customer ON orders(customer);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO customers(name) SELECT 'customer number ' || i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 900)
INSERT INTO orders(customer, total) SELECT i % 300 + 1, i * 1.25 FROM n;
SELECT rootpage FROM sqlite_schema WHERE name = 'orders';
.open other.db
.print -- destroy page 1 and the root of orders (page 3), an interior page
.shell dd if=/dev/urandom of=app.db bs=1024 seek=0 count=1 conv=notrunc status=none
.shell dd if=/dev/zero of=app.db bs=1024 seek=2 count=1 conv=notrunc status=none
.shell sha256sum app.db > before.sha
.open app.db
.once /dev/null
PRAGMA meta_salvage='saved.db';
.shell sha256sum -c --quiet before.sha && echo the damaged file is unchanged
.print -- an output that exists is never overwritten
PRAGMA meta_salvage='saved.db';
SELECT meta_salvage('saved.db');
.open saved.db
SELECT count(*), min(id), max(id) FROM customers;
SELECT count(*), sum(total) FROM orders;
SELECT name, rows_salvaged, rows_from_orphan_pages, rows_lost FROM metadwr_salvage_report;
SELECT key, value FROM metadwr_salvage_info WHERE key IN ('schema_source', 'rows_in_lost_and_found', 'freelist_complete') ORDER BY key;
PRAGMA integrity_check;
