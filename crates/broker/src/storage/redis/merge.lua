-- tokenbroker: merge a session token into the stored one, atomically, and refresh the TTL.
--
-- KEYS[1]  the token key
-- ARGV[1]  the token to merge in, canonical (as formatted by the Rust session-token crate)
-- ARGV[2]  TTL in milliseconds
-- ARGV[3]  most segments the stored token may hold
--
-- Returns one of:
--   {"ok", merged, replaced}        replaced = "1" when an unparsable stored value was overwritten
--   {"region_mismatch", range, version, left_regions, right_regions}
--   {"kind_mismatch", range}
--   {"too_many", segments}
--   {"bad_input"}
-- On anything but "ok" the stored value is untouched.
--
-- This is the Rust merge (crates/session-token), rule for rule; a property test runs both on
-- random pairs and requires identical output. Numbers stay strings throughout: Lua numbers are
-- doubles and versions and LSNs are signed 64-bit (any value, negatives included, as in the
-- SDKs), so every comparison is on canonical decimal strings: "0", or an optional "-" and digits
-- without leading zeros, within -9223372036854775808..9223372036854775807 (never "-0").
-- Strings are compared byte by byte, never with '<' (which uses the locale's collation).
-- The script only ever receives tokens formatted by the Rust crate (canonical: one segment per
-- range), so it does not merge repeated ranges; a value that is not canonical does not parse.

local function bytes_lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Compares two canonical numbers (see is_num) as signed 64-bit integers: -1, 0 or 1.
-- A negative is below every non-negative; between two of one sign, the longer magnitude is the
-- larger (no leading zeros), and equal lengths compare byte by byte; negatives reverse that.
local function cmp_num(a, b)
  if a == b then return 0 end
  local a_neg, b_neg = string.byte(a, 1) == 45, string.byte(b, 1) == 45 -- '-'
  if a_neg ~= b_neg then
    if a_neg then return -1 else return 1 end
  end
  local ma, mb = a, b
  if a_neg then ma, mb = string.sub(a, 2), string.sub(b, 2) end
  local c
  if #ma ~= #mb then
    if #ma < #mb then c = -1 else c = 1 end
  elseif bytes_lt(ma, mb) then
    c = -1
  else
    c = 1
  end
  if a_neg then return -c end
  return c
end

local function max_num(a, b)
  if cmp_num(a, b) >= 0 then return a else return b end
end

-- Range id order: numeric ids first in numeric order (ties by bytes), then others by bytes.
-- Sort keys are computed once per id: {is_numeric, digits without leading zeros, id}.
local function range_key(id)
  if string.find(id, "^%d+$") then
    return { true, (string.gsub(id, "^0+", "")), id }
  end
  return { false, id, id }
end

local function range_key_lt(a, b)
  if a[1] ~= b[1] then return a[1] end
  if a[1] then
    if #a[2] ~= #b[2] then return #a[2] < #b[2] end
    if a[2] ~= b[2] then return bytes_lt(a[2], b[2]) end
  end
  return bytes_lt(a[3], b[3])
end

-- A canonical signed 64-bit number: "0", or an optional "-" and digits with no leading zero,
-- not beyond 64 bits. Canonical form is what makes cmp_num's length comparison valid.
local I64_MAX, I64_MIN_MAGNITUDE = "9223372036854775807", "9223372036854775808"
local function is_num(s)
  if s == "0" then return true end
  local neg, digits = false, s
  if string.byte(s, 1) == 45 then neg, digits = true, string.sub(s, 2) end
  if string.find(digits, "^[1-9]%d*$") == nil then return false end
  if #digits ~= 19 then return #digits < 19 end
  local limit = I64_MAX
  if neg then limit = I64_MIN_MAGNITUDE end
  return not bytes_lt(limit, digits)
end

-- Parses a canonical header value: returns (tokens by range id, range ids in order) or nil.
local function parse(s)
  local toks, order = {}, {}
  for seg in string.gmatch(s, "[^,]+") do
    local id, body = string.match(seg, "^([%w_%-]+):(.+)$")
    if not id or toks[id] then return nil end
    local t
    if string.find(body, "#", 1, true) then
      local parts = {}
      for p in string.gmatch(body, "[^#]+") do parts[#parts + 1] = p end
      if #parts < 2 or not is_num(parts[1]) or not is_num(parts[2]) then return nil end
      t = { version = parts[1], global = parts[2], regions = {}, rids = {} }
      for i = 3, #parts do
        local rid, lsn = string.match(parts[i], "^(%d+)=(.+)$")
        if not rid or not is_num(lsn) or t.regions[rid] then return nil end
        t.regions[rid] = lsn
        t.rids[#t.rids + 1] = rid
      end
    else
      if not is_num(body) then return nil end
      t = { simple = body }
    end
    toks[id] = t
    order[#order + 1] = id
  end
  if #order == 0 then return nil end
  return toks, order
end

local function region_list(t)
  return "[" .. table.concat(t.rids, ",") .. "]"
end

local function same_regions(a, b)
  if #a.rids ~= #b.rids then return false end
  for _, r in ipairs(a.rids) do
    if b.regions[r] == nil then return false end
  end
  return true
end

-- Merges the stored token `a` of one range with the incoming `b`.
local function merge_tok(a, b, range)
  if a.simple and b.simple then
    return { simple = max_num(a.simple, b.simple) }
  end
  if a.simple or b.simple then
    return nil, { "kind_mismatch", range }
  end
  local c = cmp_num(a.version, b.version)
  if c == 0 then
    if not same_regions(a, b) then
      return nil, { "region_mismatch", range, a.version, region_list(a), region_list(b) }
    end
    local t = { version = a.version, global = max_num(a.global, b.global), regions = {}, rids = a.rids }
    for _, r in ipairs(a.rids) do
      t.regions[r] = max_num(a.regions[r], b.regions[r])
    end
    return t
  end
  -- Different versions: the higher wins wholesale (its regions, its global LSN even if
  -- smaller); regions it shares with the lower take the maximum.
  local hi, lo = a, b
  if c < 0 then hi, lo = b, a end
  local t = { version = hi.version, global = hi.global, regions = {}, rids = hi.rids }
  for _, r in ipairs(hi.rids) do
    local l = lo.regions[r]
    if l then t.regions[r] = max_num(hi.regions[r], l) else t.regions[r] = hi.regions[r] end
  end
  return t
end

local function format(toks, ids)
  local out, n = {}, 0
  for i, id in ipairs(ids) do
    local t = toks[id]
    if i > 1 then n = n + 1; out[n] = "," end
    if t.simple then
      out[n + 1] = id; out[n + 2] = ":"; out[n + 3] = t.simple
      n = n + 3
    else
      out[n + 1] = id; out[n + 2] = ":"; out[n + 3] = t.version; out[n + 4] = "#"; out[n + 5] = t.global
      n = n + 5
      for _, r in ipairs(t.rids) do
        out[n + 1] = "#"; out[n + 2] = r; out[n + 3] = "="; out[n + 4] = t.regions[r]
        n = n + 4
      end
    end
  end
  return table.concat(out)
end

local stored_raw = redis.call("GET", KEYS[1])

-- Fast path: the stored token is the incoming one (merge is idempotent): refresh the TTL only.
if stored_raw == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return { "ok", stored_raw, "0" }
end

local incoming, incoming_ids = parse(ARGV[1])
if not incoming then
  return { "bad_input" }
end

local result, ids, replaced = incoming, incoming_ids, "0"
if stored_raw then
  local stored, stored_ids = parse(stored_raw)
  if stored then
    result, ids = {}, {}
    for _, id in ipairs(stored_ids) do
      result[id] = stored[id]
      ids[#ids + 1] = id
    end
    local added = false
    for _, id in ipairs(incoming_ids) do
      local s = stored[id]
      if s then
        local merged, err = merge_tok(s, incoming[id], id)
        if not merged then return err end
        result[id] = merged
      else
        result[id] = incoming[id]
        ids[#ids + 1] = id
        added = true
      end
    end
    -- Both inputs are canonical (sorted): only new ranges can put the list out of order.
    if added then
      local keyed = {}
      for i, id in ipairs(ids) do keyed[i] = range_key(id) end
      table.sort(keyed, range_key_lt)
      for i, k in ipairs(keyed) do ids[i] = k[3] end
    end
  else
    replaced = "1"
  end
end

if #ids > tonumber(ARGV[3]) then
  return { "too_many", tostring(#ids) }
end
local merged = format(result, ids)
redis.call("SET", KEYS[1], merged, "PX", ARGV[2])
return { "ok", merged, replaced }
