--[[
transfer_stock: one half of moving units between two stock buckets of a split SKU (inventory/buckets.py),
and the flags by which a bucket sets its units aside for its product's waitlist (inventory/bucket_waitlist.py).
The buckets live in different slots, so a move is two calls: 'out' (available units) or 'owed' (units
the bucket set aside for the waitlist) on the source takes the units and journals the move in the
source's partition, 'in' on the destination adds them once per move id, 'done' on the source drops the
journal entry. A crash in between leaves the journal entry, and the next rebalance finishes the move
('in' again is a no-op): a unit is never created, and never lost beyond the time until that rebalance.

KEYS[1]        stock hash of this bucket            every key shares the partition's hash tag
KEYS[2]        dirty SKU set
KEYS[3]        outbox stream
KEYS[4]        moves journal of this partition (hash move id -> "<destination sku>|<units>|<ms>")
KEYS[5]        moves applied in this partition (zset move id -> ms; kept a day, pruned here)
KEYS[6]        holds zset of this bucket (its waitlist pool hold, lua/includes/common.lua)
KEYS[7]        buyers hash of this bucket (user -> units held or ordered)
ARGV[1]        this bucket's sku
ARGV[2]        mode: 'out' | 'owed' | 'in' | 'done' | 'flag' | 'unflag' | 'reclaim'
ARGV[3]        move id (1-27 characters: 'move:<id>' is the ledger row's kind; '-' for the other modes)
ARGV[4]        units (out, owed, in); the waitlist epoch (flag, unflag); 1 (reclaim)
ARGV[5]        the other bucket's sku (out, owed: destination, recorded in the journal)

'in' sets the units aside at once where buyers wait (bucket 0's queue, or a bucket flagged for it).
'flag' gives back the bucket's holds whose expiry passed (as any script on it would), raises its 'wl'
to the epoch (never lowers it) and sets aside its available units, those just given back included;
'unflag' drops 'wl' if it is at most the epoch (a later join's flag stays) and makes the units the
bucket set aside available again. 'reclaim' only gives back the holds whose expiry passed, as any
script on the bucket would (before a buyer joins the queue: units that are back mean no queue).

Returns
  {0, units}     applied (out, owed: units taken, at most what the bucket has, 0 = nothing to move;
                 flag: every unit the bucket now holds set aside; unflag: units made available;
                 reclaim: the bucket's available units after it)
  {1}            replay: this move id was already taken out / put in; unflag: a later flag stays
  {-1, sku}      product not found
  {-11, argument} invalid argument
Invariant: avail + held + sold == total in each bucket; a move changes total and avail (or held, for
set-aside units) together, and its two stock_adjusted events carry the move id as their reason, so the
ledger sums to zero per move.
]]
--@include "clock"
--@include "common"

local sku, mode, id, peer = ARGV[1], ARGV[2], ARGV[3], ARGV[5] or ''
local modes = {out = true, owed = true, ['in'] = true, done = true, flag = true, unflag = true, reclaim = true}
if not modes[mode] then return {-11, 'mode'} end
if id == '' or string.len(id) > 27 then return {-11, 'id'} end
if mode == 'done' then
  redis.call('HDEL', KEYS[4], id)
  return {0, 0}
end
if not is_count(ARGV[4]) or tonumber(ARGV[4]) < 1 then return {-11, 'units'} end
local s = redis.call('HMGET', KEYS[1], 'total', 'avail', 'ver', 'owe', 'held', 'wl')
if not s[1] then return {-1, sku} end
local now = now_ms()
local units = tonumber(ARGV[4])

if mode == 'reclaim' then
  reclaim_expired(KEYS[1], KEYS[6], KEYS[7], nil, now, 1000)
  return {0, to_int(redis.call('HGET', KEYS[1], 'avail'))}
elseif mode == 'flag' then
  if to_int(s[6]) < units then redis.call('HSET', KEYS[1], 'wl', units) end
  reclaim_expired(KEYS[1], KEYS[6], KEYS[7], nil, now, 1000)  -- sets their units aside, the bucket being flagged
  set_aside_for_waitlist(KEYS[1], KEYS[6], KEYS[7])
  return {0, to_int(redis.call('HGET', KEYS[1], 'owe'))}
elseif mode == 'unflag' then
  if not s[6] then return {0, 0} end
  if to_int(s[6]) > units then return {1} end
  local owe = to_int(s[4])
  redis.call('HDEL', KEYS[1], 'wl', 'owe')
  if owe > 0 then
    redis.call('ZREM', KEYS[6], hold_member(POOL, owe, ''))
    redis.call('HSET', KEYS[1], 'avail', tonumber(s[2]) + owe, 'held', tonumber(s[5]) - owe)
    announce_available(KEYS[1])
  end
  return {0, owe}
end

local field, have = 'avail', tonumber(s[2])
if mode == 'owed' then field, have = 'held', to_int(s[4]) end
if mode == 'out' or mode == 'owed' then
  if peer == '' then return {-11, 'peer'} end
  if redis.call('HEXISTS', KEYS[4], id) == 1 then return {1} end
  units = math.min(units, have)
  if units <= 0 then return {0, 0} end
  redis.call('HSET', KEYS[4], id, peer .. '|' .. units .. '|' .. now)
  if mode == 'owed' then
    redis.call('ZREM', KEYS[6], hold_member(POOL, have, ''))
    if have > units then redis.call('ZADD', KEYS[6], '+inf', hold_member(POOL, have - units, '')) end
    redis.call('HSET', KEYS[1], 'owe', have - units)
  end
  units = -units
else
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 86400000)
  if redis.call('ZADD', KEYS[5], 'NX', now, id) == 0 then return {1} end
end
local total, version = tonumber(s[1]) + units, to_int(s[3]) + 1
local before = field == 'held' and tonumber(s[5]) or tonumber(s[2])
redis.call('HSET', KEYS[1], 'total', total, field, before + units, 'ver', version)
redis.call('SADD', KEYS[2], sku)
redis.call('XADD', KEYS[3], '*', 'type', 'stock_adjusted', 'sku', sku, 'delta', units, 'total', total,
  'ver', version, 'reason', 'move:' .. id, 'ts', now)
if units > 0 then
  set_aside_for_waitlist(KEYS[1], KEYS[6], KEYS[7])
  announce_available(KEYS[1])
end
return {0, math.abs(units)}
