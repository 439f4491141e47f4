-- Damage that keeps page 1 structurally valid: one bit flipped in the
-- CREATE statement stored on page 1 ("CREATE" -> "CRDATE"). SQLite then
-- refuses the schema. Opening and reading the damaged database must not
-- replace the good copy with the damaged page: nothing was written (the
-- change counter on page 1 is the copy's), so meta_recover() restores it.
.load ./libmetadwr
.open app.db
PRAGMA meta_double_write=enabled;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');
SELECT meta_recover();
.output damage.sh
SELECT 'printf D | dd of=app.db bs=1 seek=' || (instr(readfile('app.db'), CAST('CREATE TABLE customers' AS BLOB)) + 1)
    || ' count=1 conv=notrunc status=none';
.output stdout
.open other.db
.shell sh damage.sh
.shell "$SQLITE3" app.db 'SELECT * FROM customers' 2>&1 || echo "(stock sqlite3 exited with status $?)"
.open app.db
SELECT * FROM customers;
PRAGMA meta_double_write_stats;
SELECT meta_recover();
SELECT * FROM customers;
PRAGMA integrity_check;
