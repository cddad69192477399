"""The Lua scripts of the counter cache: apply a commit's deltas, install a recount, check a
recount against the hashes, release a lease, read both hashes at once.

Each runs atomically in Redis on the keys of one org (one Cluster slot), so a reader never sees
a half-applied step. Why their rules keep the cache exact is argued in ``facets.counts.cache``;
this module only holds the text.
"""

_LUA_HELPERS = """
local cells, totals, pending = KEYS[1], KEYS[2], KEYS[3]

local function bump(key, field, n)
  local value = redis.call('HINCRBY', key, field, n)
  if value == 0 then redis.call('HDEL', key, field) end
  return value >= 0
end

-- the (state, project, n) of "state project n state project n ..." words (project '-' for
-- none): deltas, or a recount's counts
local function words(counts)
  return string.gmatch(counts, '(%S+) (%S+) (%S+)')
end

local function apply(deltas)
  local ok = true
  for state, project, n in words(deltas) do
    n = tonumber(n)
    ok = bump(cells, state .. ':' .. project, n) and ok
    ok = bump(totals, 's:' .. state, n) and ok
    if project ~= '-' then ok = bump(totals, 'p:' .. project, n) and ok end
  end
  return ok
end

-- apply buffered successors of `version`, drop buffered predecessors, label the hashes
local function settle(version, ttl_ms)
  local ok = true
  while true do
    local nxt = redis.call('HGET', pending, tostring(version + 1))
    if not nxt then break end
    ok = apply(nxt) and ok
    version = version + 1
  end
  for _, field in ipairs(redis.call('HKEYS', pending)) do
    if tonumber(field) <= version then redis.call('HDEL', pending, field) end
  end
  if not ok then
    redis.call('DEL', cells, totals)
    return 'corrupt'
  end
  local label = string.format('%d', version)
  redis.call('HSET', cells, 'v', label)
  redis.call('HSET', totals, 'v', label)
  redis.call('PEXPIRE', cells, ttl_ms)
  redis.call('PEXPIRE', totals, ttl_ms)
  return version
end

-- a recount's counts as the fields of both hashes: field -> n
local function counted(counts)
  local c, t = {}, {}
  for state, project, n in words(counts) do
    n = tonumber(n)
    local cell, s = state .. ':' .. project, 's:' .. state
    c[cell] = (c[cell] or 0) + n
    t[s] = (t[s] or 0) + n
    if project ~= '-' then
      local p = 'p:' .. project
      t[p] = (t[p] or 0) + n
    end
  end
  return c, t
end

-- whether a flat HGETALL reply is exactly these fields (zeros absent) labelled `label`
local function holds(flat, fields, label)
  local labelled, seen, wanted = false, 0, 0
  for _, n in pairs(fields) do
    if n ~= 0 then wanted = wanted + 1 end
  end
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    if f == 'v' then
      if v ~= label then return false end
      labelled = true
    else
      local n = fields[f]
      if not n or n == 0 or string.format('%d', n) ~= v then return false end
      seen = seen + 1
    end
  end
  return labelled and seen == wanted
end

-- cold (both hashes absent), same (exactly the counts at `label`), differed, or unreadable
-- (a key of another type)
local function compared(c, t, label)
  local flat_c, flat_t = redis.pcall('HGETALL', cells), redis.pcall('HGETALL', totals)
  if flat_c.err or flat_t.err then return 'unreadable' end
  if #flat_c == 0 and #flat_t == 0 then return 'cold', flat_c, flat_t end
  if holds(flat_c, c, label) and holds(flat_t, t, label) then return 'same', flat_c, flat_t end
  return 'differed', flat_c, flat_t
end

-- HSET of every non-zero field, a bounded number per call (unpack has a stack limit)
local function write(key, fields)
  local args = {}
  for f, n in pairs(fields) do
    if n ~= 0 then
      args[#args + 1] = f
      args[#args + 1] = string.format('%d', n)
      if #args == 1000 then
        redis.call('HSET', key, unpack(args))
        args = {}
      end
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function buffer(version, deltas, pending_ttl_ms, max_pending)
  if redis.call('HLEN', pending) < max_pending then
    redis.call('HSET', pending, version, deltas)
    redis.call('PEXPIRE', pending, pending_ttl_ms)
  end
end
"""

# KEYS: cells, totals, pending. ARGV: version, deltas, ttl_ms, pending_ttl_ms, max_pending,
# and the version notice: the command (PUBLISH, SPUBLISH on a cluster; '' for none) and the
# channel (on the org's slot). The notice goes first, so a failing step below cannot lose it;
# the script is atomic, so no reader sees the notice before the hashes have the version.
APPLY_LUA = (
    _LUA_HELPERS
    + """
if ARGV[6] ~= '' then redis.call(ARGV[6], ARGV[7], ARGV[1]) end
local version = tonumber(ARGV[1])
local current = redis.call('HGET', cells, 'v')
if not current or redis.call('HGET', totals, 'v') ~= current then
  -- one key gone alone (evicted): the pair is no longer a hash to build on
  redis.call('DEL', cells, totals)
  buffer(ARGV[1], ARGV[2], ARGV[4], tonumber(ARGV[5]))
  return 'absent'
end
current = tonumber(current)
if version <= current then return 'stale' end
if version > current + 1 then
  buffer(ARGV[1], ARGV[2], ARGV[4], tonumber(ARGV[5]))
  return 'buffered'
end
if not apply(ARGV[2]) then
  redis.call('DEL', cells, totals)
  return 'corrupt'
end
local settled = settle(version, tonumber(ARGV[3]))
if settled == 'corrupt' then return 'corrupt' end
return 'applied'
"""
)

# KEYS: cells, totals, pending. ARGV: version, counts (the full recount), ttl_ms, force.
# Answers 'installed:' and what the hashes held before (cold, same, differed or unreadable);
# hashes that already held exactly the recount keep their fields (label and expiry renewed).
INSTALL_LUA = (
    _LUA_HELPERS
    + """
local version = tonumber(ARGV[1])
local current = redis.pcall('HGET', cells, 'v')
local label = type(current) == 'string' and tonumber(current)
if label and label > version and ARGV[4] ~= '1' then
  return 'kept:' .. current
end
local c, t = counted(ARGV[2])
local before = compared(c, t, ARGV[1])
if before ~= 'same' then
  redis.call('DEL', cells, totals)
  write(cells, c)
  write(totals, t)
end
local settled = settle(version, tonumber(ARGV[3]))
if settled == 'corrupt' then return 'corrupt' end
return 'installed:' .. before
"""
)

# KEYS: cells, totals. ARGV: version, counts (the full recount). Changes nothing: answers
# 'cold', 'same', 'unreadable', or both hashes as flat field/value lists (read atomically)
# when they differ.
CHECK_LUA = (
    _LUA_HELPERS
    + """
local c, t = counted(ARGV[2])
local outcome, flat_c, flat_t = compared(c, t, ARGV[1])
if outcome == 'differed' then return {flat_c, flat_t} end
return outcome
"""
)

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: cells, totals. Both hashes as flat field/value lists, read atomically on their slot
# (a script, not a MULTI pipeline: the same on one Redis and on a cluster).
SNAPSHOT_LUA = """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""
