-- The date index holds only rows with a date (issue 19, docs/benchmarks.md "The date index").
-- Every search row had an entry in (res_type, param, lo, hi), also the nine in ten that are
-- tokens, references or strings with no `lo`: a create wrote one page of this index per
-- parameter it indexes, for entries no date search can reach (a date search names a date
-- parameter, whose rows all have `lo`). Date searches say `lo IS NOT NULL`, so both databases
-- use the partial index for them (`search_sql::filter`).
DROP INDEX search_index_date;
CREATE INDEX search_index_date ON search_index (res_type, param, lo, hi) WHERE lo IS NOT NULL;
