-- Typo-tolerant catalog search (issue 16): trigrams of ticket names beside the
-- full-text index of 0001. `GET /v1/tickets?q=` matches a name when its words
-- match (name_tsv @@ websearch_to_tsquery) OR when the query's trigrams are close
-- to some extent of the name (q <% name, pg_trgm's word similarity, threshold set
-- per query by the api); both arms are served by a GIN index (a BitmapOr).
-- pg_trgm is a trusted extension (Postgres >= 13): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS tickets_name_trgm ON tickets USING gin (name gin_trgm_ops);
