-- tokenbroker: replace a stored token only if it is unchanged, keeping its TTL.
--
-- KEYS[1]  the token key
-- ARGV[1]  the value the caller read
-- ARGV[2]  the new value; "" deletes the key
--
-- Returns 1 when the value was replaced (or deleted), 0 when it had changed since (the caller
-- reads again and retries). A missing key never matches: a token is never "".
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == "" then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], ARGV[2], "KEEPTTL")
end
return 1
