-- Healing on the read path, in the stock shell: damage met by an ordinary
-- query through metadwr is healed with no pragma and no function call, the
-- file is repaired on disk (stock SQLite reads it again) and the damaged
-- bytes are quarantined. Page 1 zeroed, a schema leaf zeroed, one bit
-- flipped in a CREATE statement (SQLite sees no error there), a read-only
-- connection (serves the copy, repairs nothing), and mmap.
-- The status is shown up to its first word of detail: `enabled (recovered: ...`.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers, total REAL);
CREATE INDEX orders_customer ON orders(customer);
.output gen.sql
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
SELECT 'CREATE TABLE t' || i || '(id INTEGER PRIMARY KEY, label TEXT, value REAL);'
    || ' INSERT INTO t' || i || '(label, value) VALUES (''row of t' || i || ''', ' || i || '.5);'
  FROM n;
.output stdout
BEGIN;
.read gen.sql
COMMIT;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO customers(name) SELECT 'customer ' || i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO orders(customer, total) SELECT 1 + i % 200, i * 1.25 FROM n;
SELECT count(*), sum(total) FROM orders;
SELECT count(*) FROM dbstat WHERE name = 'sqlite_schema' AND pagetype = 'leaf';
.output damage-leaf.sh
SELECT 'dd if=/dev/zero of=app.db bs=4096 seek=' || (pageno - 1) || ' count=1 conv=notrunc status=none'
  FROM dbstat WHERE name = 'sqlite_schema' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 1;
.output stdout
.output flip.sh
SELECT 'printf o | dd of=app.db bs=1 seek=' || (instr(readfile('app.db'), CAST('name TEXT' AS BLOB)) - 1)
    || ' count=1 conv=notrunc status=none';
.output stdout
.output check.sql
SELECT 'SELECT sum(n) FROM (' || group_concat('SELECT count(*) AS n FROM ' || name, ' UNION ALL ') || ');'
  FROM sqlite_schema WHERE type = 'table';
.output stdout
.output status.sql
SELECT '.output status.txt';
SELECT 'PRAGMA meta_double_write;';
SELECT '.output stdout';
SELECT '.shell sed -E ''s/^(enabled \([^:]*: |disabled \().*/\1.../'' status.txt';
.output stdout
.open other.db
.print -- 1. page 1 zeroed: stock SQLite refuses the file
.shell dd if=/dev/zero of=app.db bs=4096 count=1 conv=notrunc status=none
.shell "$SQLITE3" app.db 'SELECT count(*) FROM customers' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.print -- through metadwr it simply opens
.open app.db
SELECT count(*) FROM customers;
SELECT count(*), sum(total) FROM orders;
.read check.sql
PRAGMA integrity_check;
.read status.sql
.print -- repaired on disk: stock SQLite reads it; the damaged page is quarantined
.shell "$SQLITE3" app.db 'SELECT count(*) FROM orders; PRAGMA integrity_check' 2>&1
.shell ls app.db*
.shell od -A d -t x1 -N 12 app.db-dwr-quarantine
.print -- =enabled answers enabled and resets the status
PRAGMA meta_double_write=enabled;
PRAGMA meta_double_write;
.open other.db
.print -- 2. a schema leaf zeroed
.shell sh damage-leaf.sh
.shell "$SQLITE3" app.db 'SELECT count(*) FROM customers' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.open app.db
.read check.sql
.read status.sql
.shell "$SQLITE3" app.db 'SELECT count(*) FROM t50; PRAGMA integrity_check' 2>&1
.open other.db
.print -- 3. one bit flipped in a CREATE statement: name TEXT becomes oame TEXT
.shell sh flip.sh
.print -- stock SQLite sees no error, and a column renamed
.shell "$SQLITE3" app.db "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%oame TEXT%'" 2>&1
.open app.db
SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%oame TEXT%';
SELECT sql FROM sqlite_schema WHERE name = 'customers';
SELECT name FROM customers WHERE id = 7;
.read status.sql
.open other.db
.shell "$SQLITE3" app.db "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%oame TEXT%'" 2>&1
.print -- 4. page 1 zeroed, opened read-only: the copy is served, the file is left alone
.shell dd if=/dev/zero of=app.db bs=4096 count=1 conv=notrunc status=none
.open --readonly app.db
SELECT count(*) FROM customers;
.read check.sql
.shell "$SQLITE3" app.db 'SELECT count(*) FROM customers' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.print -- the next read-write connection repairs it
.open app.db
SELECT count(*) FROM customers;
.shell "$SQLITE3" app.db 'SELECT count(*) FROM customers; PRAGMA integrity_check' 2>&1
.open other.db
.print -- 5. page 1 zeroed, read with mmap
.shell dd if=/dev/zero of=app.db bs=4096 count=1 conv=notrunc status=none
.open app.db
PRAGMA mmap_size=16777216;
SELECT count(*), sum(total) FROM orders;
.read check.sql
.read status.sql
.open other.db
.shell "$SQLITE3" app.db 'SELECT count(*) FROM orders; PRAGMA integrity_check' 2>&1
.print -- one quarantine record (4116 bytes) per repair: 1, 2, 3, 4 and 5
.shell wc -c < app.db-dwr-quarantine
