-- meta_recover('temp') before the temp schema was ever used: 'temp' always
-- names a schema, so the answer is the same as when it holds a table.
.load ./libmetadwr
.open app.db
SELECT meta_recover('temp');
CREATE TEMP TABLE scratch(x);
SELECT meta_recover('temp');
