"""Lua scripts of the paper broker: each is one atomic step in the broker's own Redis.

Fills are not here: their money arithmetic needs ``Decimal``, so they are applied with
WATCH/MULTI from Python (``workers.brokers.paper.ledger``), which is just as atomic. What a fill
reads while watching is one script (``READ_BOOK``): one round trip instead of one per field.
"""

from __future__ import annotations

PLACE = """
-- KEYS: order hash, account order sequence, account open-orders set, instrument resting set
-- ARGV: broker order id prefix, client order id, resting member, field1, value1, ...
local existing = redis.call('HMGET', KEYS[1], 'broker_order_id', 'status')
if existing[1] then
  return {existing[1], existing[2], 1}
end
local broker_order_id = ARGV[1] .. redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'broker_order_id', broker_order_id, 'status', 'working',
           unpack(ARGV, 4))
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
return {broker_order_id, 'working', 0}
"""
"""Create the order unless its client order id exists: ``[broker_order_id, status, duplicate]``."""

CANCEL = """
-- KEYS: order hash, account open-orders set, instrument resting set
-- ARGV: client order id, resting member
local order = redis.call('HMGET', KEYS[1], 'broker_order_id', 'status')
if not order[1] then
  return {'', 'unknown', 0}
end
if order[2] == 'working' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[2])
  return {order[1], 'cancelled', 0}
end
if order[2] == 'cancelled' then
  return {order[1], 'cancelled', 1}
end
return {order[1], order[2], 0}
"""
"""Cancel a working order: ``[broker_order_id, status, duplicate]``; anything else is unchanged."""

ADVANCE = """
-- KEYS: order hash.  ARGV: the stream id scanned up to (inclusive).
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
if redis.call('HGET', KEYS[1], 'status') ~= 'working' then
  return 0
end
local new_ms, new_seq = string.match(ARGV[1], '^(%d+)-(%d+)$')
local current = redis.call('HGET', KEYS[1], 'cursor')
if current and current ~= '' then
  local ms, seq = string.match(current, '^(%d+)-(%d+)$')
  if less(new_ms, ms) or (new_ms == ms and not less(seq, new_seq)) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'cursor', ARGV[1])
return 1
"""
"""Move a working order's market cursor forward (never back): 1 if moved, else 0."""

READ_BOOK = """
-- KEYS: balance hash, positions hash, average prices hash, realized hash[, order hash]
-- ARGV: contract
-- Read-only: what a fill's transaction reads while its keys are watched.
local function flat(key)
  if key == nil then return {} end
  return redis.call('HGETALL', key)
end
return {
  flat(KEYS[1]),
  redis.call('HGET', KEYS[2], ARGV[1]) or '',
  redis.call('HGET', KEYS[3], ARGV[1]) or '',
  redis.call('HGET', KEYS[4], ARGV[1]) or '',
  flat(KEYS[5]),
}
"""
"""The account's balance and its figures for a contract (and an order's fields, given its key):
``[balance fields, position, average price, realized, order fields]``, absent ones empty."""
