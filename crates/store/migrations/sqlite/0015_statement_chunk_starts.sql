-- The earliest and latest start of each chunk's statements, so that a page of a long
-- session's statements (in the order they started) reads the chunks that may hold it, not
-- every chunk of the session: the index finds them in the order of their earliest start
-- without reading a chunk's body (a long one spills into overflow pages). NULL (a chunk never
-- written since) reads as unknown, and sorts first.
ALTER TABLE statement_chunks ADD COLUMN min_start_us INTEGER;
ALTER TABLE statement_chunks ADD COLUMN max_start_us INTEGER;

UPDATE statement_chunks SET
    min_start_us = (SELECT MIN(json_extract(value, '$[1]')) FROM json_each(statement_chunks.body)),
    max_start_us = (SELECT MAX(json_extract(value, '$[1]')) FROM json_each(statement_chunks.body));

CREATE INDEX statement_chunks_by_start
    ON statement_chunks (org_id, session_id, min_start_us, first_seq, max_start_us);
