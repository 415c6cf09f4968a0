-- tokenbroker: store a merged token only if the stored one is unchanged, refreshing the TTL.
--
-- KEYS[1]  the token key
-- ARGV[1]  the value the broker read and merged into
-- ARGV[2]  the merged token (canonical)
-- ARGV[3]  TTL in milliseconds
--
-- Returns 1 when stored, 0 when the value changed since it was read (the broker reads, merges
-- and tries again). The merge itself is done in the broker (crates/session-token), so this
-- script parses nothing: a few microseconds of Redis CPU where the merge script took tens.
-- A key that did not exist is created with SET NX instead, without a script.
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 1
