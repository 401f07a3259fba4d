"""Lua sources of the state store. Each runs atomically inside Redis (one step, all or nothing).

Every script receives only keys of one session (one hash tag), so it is valid on Redis Cluster.
Variable-length argument lists are passed as a count followed by the items; pushes are chunked
so that no single ``unpack`` exceeds Lua's stack limit.
"""

from __future__ import annotations

from models.meta import in_lua

HELPERS = """
local CHUNK = 500
local function hset_pairs(key, argv, first, npairs)
  local i = 0
  while i < npairs do
    local n = math.min(CHUNK, npairs - i)
    local args = {}
    for j = 0, n - 1 do
      args[#args + 1] = argv[first + 2 * (i + j)]
      args[#args + 1] = argv[first + 2 * (i + j) + 1]
    end
    redis.call('HSET', key, unpack(args))
    i = i + n
  end
end
local function rpush_items(key, argv, first, count)
  local i = 0
  while i < count do
    local n = math.min(CHUNK, count - i)
    redis.call('RPUSH', key, unpack(argv, first + i, first + i + n - 1))
    i = i + n
  end
end
"""

CREATE = in_lua(
    HELPERS
    + """
-- KEYS: state, candles, trades, fence
-- ARGV: npairs, field, value, ..., ncandles, candle..., ntrades, trade...
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[4], 0, 'NX')
local pos = 1
local npairs = tonumber(ARGV[pos])
hset_pairs(KEYS[1], ARGV, pos + 1, npairs)
pos = pos + 1 + 2 * npairs
redis.call('HSET', KEYS[1], '$FENCE_FIELD', redis.call('GET', KEYS[4]))
local ncandles = tonumber(ARGV[pos])
rpush_items(KEYS[2], ARGV, pos + 1, ncandles)
pos = pos + 1 + ncandles
local ntrades = tonumber(ARGV[pos])
rpush_items(KEYS[3], ARGV, pos + 1, ntrades)
return 1
"""
)

ACQUIRE = """
-- KEYS: lock, fence, state, lock wanted
-- ARGV: token, ttl_ms, want_state (0/1), wanted_ms
-- Returns {0, pttl} when busy, {-1} when the session does not exist,
-- {1, fence} or {1, fence, field, value, ...} when taken.
-- A caller that will try again (wanted_ms > 0) marks the lock wanted while it is busy: the
-- tick path's drainers take a session's lock many times a second and leave it for at most a
-- round trip, so a waiter that only polled could wait through many of their steps (with a
-- network between the hosts, seconds). They do not take a wanted lock (BEGIN_SESSION); the
-- mark goes when the lock is taken, or expires after wanted_ms.
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {-1}
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local wanted_ms = tonumber(ARGV[4])
  if wanted_ms > 0 then
    redis.call('SET', KEYS[4], '1', 'PX', wanted_ms)
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('DEL', KEYS[4])
local fence = redis.call('INCR', KEYS[2])
local out = {1, fence}
if ARGV[3] == '1' then
  local flat = redis.call('HGETALL', KEYS[3])
  for i = 1, #flat do
    out[#out + 1] = flat[i]
  end
end
return out
"""

RENEW = """
-- KEYS: lock; ARGV: token, ttl_ms. Returns 1 if the lease was extended, 0 if not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
-- KEYS: lock; ARGV: token. Returns 1 if our lease was deleted, 0 if it was not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

WRITE_BODY = in_lua(
    """
-- KEYS: state, candles, trades, fence, lock
-- ARGV: token, fence, release (0/1), replace_lists (0/1), max_candles, max_trades,
--       npairs, field, value, ..., ncandles, candle..., ntrades, trade...
-- Returns 1 written, -1 unknown session, -2 stale fence (nothing written in either case).
local fence = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local current = tonumber(redis.call('GET', KEYS[4]) or '0')
local last = tonumber(redis.call('HGET', KEYS[1], '$FENCE_FIELD') or '0')
if current ~= fence or last > fence then
  return -2
end
local pos = 7
local npairs = tonumber(ARGV[pos])
hset_pairs(KEYS[1], ARGV, pos + 1, npairs)
pos = pos + 1 + 2 * npairs
redis.call('HSET', KEYS[1], '$FENCE_FIELD', ARGV[2])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2], KEYS[3])
end
local ncandles = tonumber(ARGV[pos])
rpush_items(KEYS[2], ARGV, pos + 1, ncandles)
if ncandles > 0 then
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
end
pos = pos + 1 + ncandles
local ntrades = tonumber(ARGV[pos])
rpush_items(KEYS[3], ARGV, pos + 1, ntrades)
if ntrades > 0 then
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)
end
if ARGV[3] == '1' and redis.call('GET', KEYS[5]) == ARGV[1] then
  redis.call('DEL', KEYS[5])
end
return 1
"""
)

WRITE = HELPERS + WRITE_BODY

DELETE = """
-- KEYS: state, candles, trades, lock. The fence counter is kept on purpose (see store.delete).
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
"""
