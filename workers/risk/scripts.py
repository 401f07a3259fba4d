"""The one Lua script that checks and reserves (or sets, or releases) a session's open risk.

All keys of one account live in ``tf:acct:{<account>}:risk`` (a hash, one hash tag):

- ``r:<session>``  the session's reserved open risk, integer cents
- ``d:<session>``  its per-contract risk at its last entry (cents), used when a fill has no stop
- ``equity``       the account's equity in cents (the broker's cash)
- ``warn_ppm`` / ``block_ppm`` / ``hyst_ppm``  levels (parts per million of equity); absent:
  the defaults passed in ARGV (``workers.settings``)
- ``warned`` / ``blocked``  flags (0/1) as of the last change
- ``halted``       1 while ``tradefleet halt`` holds the account
- ``loss_day``     the trade date (``YYYY-MM-DD``) on which the daily loss limit was reached
- ``rejected``     how many entries were refused

Integer arithmetic only (doubles hold integers exactly up to 2^53: cents x ppm stays far
below for any real account). The rules are ``trading.risk``'s ``entry_fits``, ``next_warned``
and ``is_blocked``.
"""

from __future__ import annotations

RISK = """
-- KEYS[1] account risk hash
-- ARGV: 1 mode (entry | position | refresh), 2 session id,
--       3 entry: the session's new total risk (cents); position: |quantity|
--       4 per-contract risk (cents) or '' (position: use the stored one)
--       5 equity (cents) or '' ; 6 equity is authoritative ('1') or a fallback ('0')
--       7 default warn ppm, 8 default block ppm, 9 default hysteresis ppm, 10 today (YYYY-MM-DD)
-- returns {accepted 1/0, reason, total, equity, warned, blocked, warn change (1 / -1 / 0),
--          warn ppm, block ppm}
local key = KEYS[1]
local mode, sid = ARGV[1], ARGV[2]
local h = {}
local flat = redis.call('HGETALL', key)
for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
local function int(x) return string.format('%.0f', x) end
local function num(v, default) if v == nil or v == '' then return default end return tonumber(v) end
if ARGV[5] ~= '' and (ARGV[6] == '1' or h['equity'] == nil) then
  h['equity'] = ARGV[5]
  redis.call('HSET', key, 'equity', ARGV[5])
end
local equity = num(h['equity'], -1)
local warn = num(h['warn_ppm'], tonumber(ARGV[7]))
local block = num(h['block_ppm'], tonumber(ARGV[8]))
local hyst = num(h['hyst_ppm'], tonumber(ARGV[9]))
local others = 0
for name, value in pairs(h) do
  if string.sub(name, 1, 2) == 'r:' and name ~= 'r:' .. sid then
    others = others + tonumber(value)
  end
end
local current = num(h['r:' .. sid], 0)
local accepted, reason = 1, ''
local new = current
if mode == 'entry' then
  new = tonumber(ARGV[3])
  if new > current then
    if h['halted'] == '1' then accepted, reason = 0, 'halted'
    elseif h['loss_day'] ~= nil and h['loss_day'] == ARGV[10] then
      accepted, reason = 0, 'daily_loss'
    elseif equity < 0 then accepted, reason = 0, 'no_equity'
    elseif equity == 0 or (others + new) * 1000000 > block * equity then
      accepted, reason = 0, 'heat'
    end
  end
  if accepted == 1 then
    if ARGV[4] ~= '' then redis.call('HSET', key, 'd:' .. sid, ARGV[4]) end
  else
    new = current
    if reason ~= 'no_equity' then redis.call('HINCRBY', key, 'rejected', 1) end
  end
elseif mode == 'position' then
  local per = num(ARGV[4], num(h['d:' .. sid], 0))
  if ARGV[4] ~= '' then redis.call('HSET', key, 'd:' .. sid, ARGV[4]) end
  new = tonumber(ARGV[3]) * per
end
if new > 0 then redis.call('HSET', key, 'r:' .. sid, int(new))
elseif h['r:' .. sid] ~= nil then redis.call('HDEL', key, 'r:' .. sid) end
local total = others + new
local warned = h['warned'] == '1'
local now_warned
if equity <= 0 then
  now_warned = total > 0 or warned
elseif not warned then
  now_warned = total > 0 and total * 1000000 >= warn * equity
else
  now_warned = total * 1000000 >= (warn - hyst) * equity
end
local change = 0
if now_warned and not warned then change = 1 elseif warned and not now_warned then change = -1 end
local blocked
if equity <= 0 then blocked = total > 0
else blocked = total > 0 and total * 1000000 >= block * equity end
redis.call('HSET', key, 'warned', now_warned and '1' or '0', 'blocked', blocked and '1' or '0')
return {accepted, reason, int(total), int(equity), now_warned and 1 or 0,
        blocked and 1 or 0, change, int(warn), int(block)}
"""
