"""Lua scripts of the tick path. Each runs atomically inside Redis (one round trip)."""

from __future__ import annotations

from models.meta import in_lua

_START_DRAINERS = """
-- Drainers are a sorted set: member = drainer id, score = epoch ms until which it counts as
-- queued or running. A drain task that dies stops counting when its time runs out, so a
-- crash never blocks new drain tasks for long.
local function start_drainers(ready, drainers, now, max_drainers, grace_ms)
  if redis.call('ZCOUNT', ready, '-inf', now) == 0 then return {} end
  redis.call('ZREMRANGEBYSCORE', drainers, '-inf', now)
  local want = max_drainers - redis.call('ZCARD', drainers)
  local ids = {}
  for _ = 1, want do
    local id = 'd' .. redis.call('INCR', drainers .. ':seq')
    redis.call('ZADD', drainers, now + grace_ms, id)
    ids[#ids + 1] = id
  end
  return ids
end
"""

_WAKE_IDLE = """
-- Idle drainers sleep on the wake list (BLPOP) for up to their linger, each listed in
-- ``sleepers`` (score: the epoch ms its wait ends); a drainer in a round is listed in ``awake``
-- (score: until when that counts, renewed by each claim) and claims at its round's end what
-- became ready meanwhile. wake_idle pushes a token for up to ``n`` sleepers (never more tokens
-- than sleepers: a token left over costs its taker one empty claim; the list expires).
local function wake_idle(wake, sleepers, now, n)
  if n <= 0 then return end
  redis.call('ZREMRANGEBYSCORE', sleepers, '-inf', now)
  local want = math.min(n, redis.call('ZCARD', sleepers)) - redis.call('LLEN', wake)
  if want <= 0 then return end
  for _ = 1, want do redis.call('RPUSH', wake, '1') end
  redis.call('PEXPIRE', wake, 2000)
end
local function none_awake(awake, now)
  return redis.call('ZCOUNT', awake, now, '+inf') == 0
end
"""

PUBLISH = (
    _START_DRAINERS
    + _WAKE_IDLE
    + """
-- KEYS: ready, drainers, wake, awake, sleepers, then per instrument: stream, subscribers,
--       source
-- ARGV: maxlen, now_ms, max_drainers, grace_ms, guard,
--       then per instrument: n, source, first, n x (t, p, s, b, a)
-- One call publishes the ticks of any number of instruments, marks their subscribers ready
-- once, wakes one idle drainer for the sessions newly ready when no drainer is in a round
-- (it claims them all: one round for many sessions) and names the drain tasks to start
-- (checked once for the whole call; none when no instrument of the call has a subscriber: a
-- stream nobody reads wakes nothing).
-- source/first: the feed's name and its own number of the batch's first entry (per
-- instrument, one up per entry). The source hash keeps the last feed's name and the number
-- after its last entry; entries of that feed numbered below it were published already (the
-- feed sent the batch again, as after a lost reply) and are skipped: duplicates. Another
-- feed's name starts a new count. An empty source publishes every entry.
-- guard '1': a batch numbered past its feed's first entry whose source hash is missing finds
-- a stream that lost its history (Redis restarted empty, the hash went with it): none of its
-- entries is appended, and its stream is named in the reply, for the feed to publish again
-- from where its sessions will resume (the feed's numbering of it starts over at 0).
-- Returns {sessions newly ready, drainer ids, duplicates skipped, entries appended to streams
-- without a subscriber, streams found lost}.
local ready, drainers, wake, awake, sleepers = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen, now = ARGV[1], tonumber(ARGV[2])
local max_drainers, grace_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local guard = ARGV[5] == '1'
local function last_ms(stream)
  if redis.call('EXISTS', stream) == 0 then return 0 end
  local info = redis.call('XINFO', 'STREAM', stream)
  for j = 1, #info, 2 do
    if info[j] == 'last-generated-id' then
      return tonumber(string.match(info[j + 1], '^(%d+)-'))
    end
  end
  return 0
end
local function append(stream, i, ms)
  local id = string.format('%d-*', ms)
  if ARGV[i + 3] ~= '' or ARGV[i + 4] ~= '' then
    return redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, 't', ARGV[i],
      'p', ARGV[i + 1], 's', ARGV[i + 2], 'b', ARGV[i + 3], 'a', ARGV[i + 4])
  end
  return redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, id, 't', ARGV[i],
    'p', ARGV[i + 1], 's', ARGV[i + 2])
end
local function already_sent(key, source, first, n)
  if source == '' then return 0 end
  local held = redis.call('HMGET', key, 'source', 'next')
  if held[1] ~= source then
    redis.call('HSET', key, 'source', source, 'next', string.format('%d', first + n))
    return 0
  end
  local next_seq = tonumber(held[2])
  if first + n > next_seq then
    redis.call('HSET', key, 'next', string.format('%d', first + n))
  end
  return math.min(n, math.max(0, next_seq - first))
end
local function lost(key, source, first)
  return guard and source ~= '' and first > 0 and redis.call('EXISTS', key) == 0
end
local newly, duplicates, unread, read, gone = 0, 0, 0, false, {}
local i = 6
for k = 6, #KEYS, 3 do
  local stream, subs = KEYS[k], KEYS[k + 1]
  local n = tonumber(ARGV[i])
  local skip = 0
  if lost(KEYS[k + 2], ARGV[i + 1], tonumber(ARGV[i + 2])) then
    gone[#gone + 1] = stream
    skip = n
  else
    skip = already_sent(KEYS[k + 2], ARGV[i + 1], tonumber(ARGV[i + 2]), n)
    duplicates = duplicates + skip
  end
  i = i + 3 + 5 * skip
  n = n - skip
  -- The stream's last id is read only when a tick's time is not past it (XADD refused it):
  -- such a tick gets the last id's time, so ids stay in publishing order. A time that is not
  -- whole milliseconds within the calendar (the sessions cannot read it either) is no id's:
  -- its entry gets the last id's time too.
  local last = nil
  for _ = 1, n do
    local t = nil
    if string.match(ARGV[i], '^%d+$') then t = tonumber(ARGV[i]) end
    local ms = nil
    if t and t >= 1 and t < 253402300800000 then ms = t end
    if ms and (last == nil or ms > last) then
      local reply = append(stream, i, ms)
      if type(reply) == 'table' and reply.err then ms = nil end
    else
      ms = nil
    end
    if ms == nil then
      if last == nil then last = last_ms(stream) end
      ms = last
      local reply = append(stream, i, ms)
      if type(reply) == 'table' and reply.err then return redis.error_reply(reply.err) end
    end
    last = ms
    i = i + 5
  end
  local members = {}
  if n > 0 then members = redis.call('SMEMBERS', subs) end
  if #members == 0 then unread = unread + n else read = true end
  local batch = {}
  for _, m in ipairs(members) do
    batch[#batch + 1] = now
    batch[#batch + 1] = m
    if #batch >= 1000 then
      newly = newly + redis.call('ZADD', ready, 'NX', unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then newly = newly + redis.call('ZADD', ready, 'NX', unpack(batch)) end
end
local started = {}
if read then started = start_drainers(ready, drainers, now, max_drainers, grace_ms) end
if newly > 0 and none_awake(awake, now) then wake_idle(wake, sleepers, now, 1) end
return {newly, started, duplicates, unread, gone}
"""
)

WAKE = (
    _START_DRAINERS
    + _WAKE_IDLE
    + """
-- KEYS: ready, drainers, wake, sleepers   ARGV: now_ms, max_drainers, grace_ms
-- Starts drain tasks for due sessions nobody is draining (after a worker died): a sweep; and
-- wakes an idle drainer when sessions are due (made ready by a roll or a recovery).
local now = tonumber(ARGV[1])
local started = start_drainers(KEYS[1], KEYS[2], now, tonumber(ARGV[2]), tonumber(ARGV[3]))
wake_idle(KEYS[3], KEYS[4], now, math.min(1, redis.call('ZCOUNT', KEYS[1], '-inf', now)))
return started
"""
)

CLAIM = (
    _WAKE_IDLE
    + """
-- KEYS: ready, drainers, backlog, wake, awake, sleepers
-- ARGV: now_ms, lease_ms, count, min_share, backlog_wait_ms, drainer_id, awake_ms
-- Claims up to count due sessions: all of them up to min_share, and beyond that no more than
-- this drainer's share (due sessions / drainers counted, rounded up). A few due sessions with
-- a tick or two each are not split into a round per drainer (each round costs its round
-- trips whatever its size); a backlog is split among the drainers instead of making one long
-- round: more due sessions than the drainers' minimums, a session due for longer than
-- backlog_wait_ms, or the backlog key (set by a drainer whose round read many ticks per
-- session). A claimed session's score moves to now + lease, so a worker that dies holding a
-- claim loses it when the lease runs out. A claim that leaves due sessions behind (its share
-- taken) wakes idle drainers for them. The claiming drainer counts as awake for awake_ms.
local now = ARGV[1]
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
redis.call('ZADD', KEYS[5], tonumber(now) + tonumber(ARGV[7]), ARGV[6])
redis.call('ZREM', KEYS[6], ARGV[6])
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
if due == 0 then return {} end
local drainers = math.max(1, redis.call('ZCARD', KEYS[2]))
local whole = tonumber(ARGV[4])
if whole > 1 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  local waited = tonumber(now) - tonumber(oldest[2])
  if redis.call('EXISTS', KEYS[3]) == 1 or waited > tonumber(ARGV[5]) then
    whole = 1
  end
end
local share = math.max(whole, math.ceil(due / drainers))
local count = math.min(tonumber(ARGV[3]), share)
local claimed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, count)
local until_ms = tonumber(now) + tonumber(ARGV[2])
for _, m in ipairs(claimed) do redis.call('ZADD', KEYS[1], 'XX', until_ms, m) end
wake_idle(KEYS[4], KEYS[6], tonumber(now), math.min(due - #claimed, drainers - 1))
return claimed
"""
)

DRAIN_DONE = """
-- KEYS: ready, drainers, awake, sleepers   ARGV: now_ms, drainer_id, horizon_ms
-- A drain task may stop only when nothing is due, nor due within the horizon (a session put
-- back for a short retry); then it gives up its place.
local horizon = tonumber(ARGV[1]) + tonumber(ARGV[3])
if redis.call('ZCOUNT', KEYS[1], '-inf', horizon) > 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
return 1
"""

SLEEP = """
-- KEYS: ready, awake, sleepers   ARGV: now_ms, drainer_id, until_ms
-- A drainer that claimed nothing goes to sleep on the wake list: unless a session is due now
-- (0: claim again; a publish may have come between its claim and this), it leaves the awake
-- drainers and joins the sleepers until until_ms or the earliest session put back in the
-- ready set (a retry, a lease run out), whichever comes first (returned). Atomic with
-- PUBLISH: a publish either finds the session due here, or this drainer asleep and wakes it.
local now, until_ms = tonumber(ARGV[1]), tonumber(ARGV[3])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first > 0 then
  local due = tonumber(first[2])
  if due <= now then return 0 end
  if due < until_ms then until_ms = due end
end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], until_ms, ARGV[2])
return until_ms
"""

BEGIN_SESSION = in_lua(
    """
-- KEYS: lock, fence, state, ready, lock wanted   ARGV: token, ttl_ms, inline, session_id
-- Takes the lease and a fencing token, and reads the ticks after the session's cursor when
-- they are few, in one step. A lock another worker waits for (``lock wanted``: a fill, a stop
-- sync, a roll) is left to it: busy, the session is tried again after it. The stream is the
-- one named by the session's candle_key. The drainer reads the state fields it needs with a
-- plain HMGET sent right behind this script, under the lease just taken.
-- What passes through a script costs Redis about five times what a command's reply costs
-- (each entry is turned into Lua tables and back): the new entries come back here only when
-- there are fewer than ``inline`` of them (the live case: a tick or two). Read backwards from
-- the stream's end, they cost what they are, where a forward read from the cursor first walks
-- the entries before it in the cursor's stream node. With more (a backlog), none comes back
-- (false), and the drainer reads them with a plain XRANGE from the cursor it got here.
-- Returns {-1} unknown session (dropped from the ready set), {0} busy,
-- {1, fence, {_cursor or false, candle_key}, entries or false, stream}.
local values = redis.call('HMGET', KEYS[3], '$CURSOR_FIELD', 'candle_key')
if not values[2] and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[4], ARGV[4])
  return {-1}
end
if redis.call('EXISTS', KEYS[5]) == 1
    or not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0}
end
local fence = redis.call('INCR', KEYS[2])
local instrument = string.match(cjson.decode(values[2]), '^([^:]+)')
local stream = 'md:{' .. instrument .. '}:ticks'
local cursor = values[1] or '0-0'
local inline = tonumber(ARGV[3])
local entries = redis.call('XREVRANGE', stream, '+', '(' .. cursor, 'COUNT', inline)
if #entries >= inline then
  return {1, fence, values, false, stream}
end
local n = #entries
for j = 1, math.floor(n / 2) do
  entries[j], entries[n + 1 - j] = entries[n + 1 - j], entries[j]
end
return {1, fence, values, entries, stream}
"""
)

END_SESSION = in_lua(
    """
-- KEYS: state, candles, fence, lock, stream, ready
-- ARGV: token, fence, cursor, session_id, now_ms, max_candles, ncandles, candle...,
--       field, value, ...
-- The fenced write of one step: refused (nothing written) when the session is unknown (-1)
-- or a newer fencing token was taken or has written (-2); otherwise the fields, _fence and
-- _cursor are set and the closed candles appended (kept to max_candles), the lease is
-- released, and the session is ready again at once if its stream has entries past the new
-- cursor (2) or leaves the ready set (1; a publisher adds it again).
local fence = tonumber(ARGV[2])
local last = redis.call('HGET', KEYS[1], '$FENCE_FIELD')
if not last and redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= fence or tonumber(last or '0') > fence then
  return -2
end
local ncandles = tonumber(ARGV[7])
local first, stop = 8, 7 + ncandles
while first <= stop do
  local upto = math.min(first + 499, stop)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, first, upto))
  first = upto + 1
end
if ncandles > 0 then
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
end
redis.call('HSET', KEYS[1], '$FENCE_FIELD', ARGV[2], '$CURSOR_FIELD', ARGV[3],
  unpack(ARGV, 8 + ncandles))
if redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('DEL', KEYS[4])
end
if #redis.call('XREVRANGE', KEYS[5], '+', '(' .. ARGV[3], 'COUNT', 1) > 0 then
  redis.call('ZADD', KEYS[6], ARGV[5], ARGV[4])
  return 2
end
redis.call('ZREM', KEYS[6], ARGV[4])
return 1
"""
)


HOLD_AGAIN = """
-- KEYS: lock, fence   ARGV: token, ttl_ms, fence
-- A deciding step, after everything it read and before its order rows are written: its lease
-- is held again for a whole TTL (the rows' transaction and the sends may take long, as with a
-- slow network) if its fencing token is still the session's newest. Returns 1 held again,
-- 0 overtaken (a newer token, or the lease is someone else's), -1 the fencing token is gone
-- (Redis lost the session's keys mid-step).
local fence = redis.call('GET', KEYS[2])
if not fence then return -1 end
if tonumber(fence) ~= tonumber(ARGV[3]) then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

SUBSCRIBE = in_lua(
    """
-- KEYS: state, stream, subscribers   ARGV: session_id
-- A session starts reading its instrument's stream where it stands now (ticks published
-- before it existed are not its own), and is added to the instrument's subscribers.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cursor = '0-0'
if redis.call('EXISTS', KEYS[2]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for j = 1, #info, 2 do
    if info[j] == 'last-generated-id' then cursor = info[j + 1] end
  end
end
redis.call('HSET', KEYS[1], '$CURSOR_FIELD', cursor)
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""
)

SUBSCRIBE_AT = """
-- KEYS: subscribers, stream, ready   ARGV: session_id, cursor, now_ms
-- Feeds the session from its instrument, reading after ``cursor`` (the entry it was warmed
-- up to, or recovery folded up to); ready at once if entries came after it.
redis.call('SADD', KEYS[1], ARGV[1])
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 and last[1][1] ~= ARGV[2] then
  redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[1])
  return 2
end
return 1
"""
