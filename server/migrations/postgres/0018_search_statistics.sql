-- PostgreSQL estimates how many insights a word is in from the most common words it samples; one it has no
-- figure for is guessed at about one insight in a hundred, so a search for a rare word walked the insights newest
-- first and tested each (at 1,000,000 insights, half a million rows for a word in one in ten thousand: 210 ms).
-- Sampling ten times as many rows and words (statistics target 1000) gives rare words their own small figures, and
-- the planner asks the GIN index for them (under a millisecond) while it still walks for common ones
-- (docs/benchmarks.md, issue 18).
ALTER TABLE insights ALTER COLUMN search SET STATISTICS 1000;
ANALYZE insights;
