--[[
transfer_stock: one half of moving available units between two stock buckets of a split SKU
(inventory/buckets.py). The buckets live in different slots, so a move is two calls: 'out' on the
source takes the units and journals the move in the source's partition, 'in' on the destination adds
them once per move id, 'done' on the source drops the journal entry. A crash in between leaves the
journal entry, and the next rebalance finishes the move ('in' again is a no-op): a unit is never
created, and never lost beyond the time until that rebalance.

KEYS[1]        stock hash of this bucket            every key shares the partition's hash tag
KEYS[2]        dirty SKU set
KEYS[3]        outbox stream
KEYS[4]        moves journal of this partition (hash move id -> "<destination sku>|<units>|<ms>")
KEYS[5]        moves applied in this partition (zset move id -> ms; kept a day, pruned here)
ARGV[1]        this bucket's sku
ARGV[2]        mode: 'out' | 'in' | 'done'
ARGV[3]        move id (1-27 characters: 'move:<id>' is the ledger row's kind)
ARGV[4]        units (out, in)
ARGV[5]        the other bucket's sku (out: destination, recorded in the journal)

Returns
  {0, units}     applied (out: units taken, at most the bucket's available units, 0 = nothing to move)
  {1}            replay: this move id was already taken out / put in
  {-1, sku}      product not found
  {-11, argument} invalid argument
Invariant: avail + held + sold == total in each bucket; a move changes total and avail together, and
its two stock_adjusted events carry the move id as their reason, so the ledger sums to zero per move.
]]
--@include "clock"
--@include "common"

local sku, mode, id, peer = ARGV[1], ARGV[2], ARGV[3], ARGV[5] or ''
if mode ~= 'out' and mode ~= 'in' and mode ~= 'done' then return {-11, 'mode'} end
if id == '' or string.len(id) > 27 then return {-11, 'id'} end
if mode == 'done' then
  redis.call('HDEL', KEYS[4], id)
  return {0, 0}
end
if not is_count(ARGV[4]) or tonumber(ARGV[4]) < 1 then return {-11, 'units'} end
local s = redis.call('HMGET', KEYS[1], 'total', 'avail', 'ver')
if not s[1] then return {-1, sku} end
local now = now_ms()
local units = tonumber(ARGV[4])
if mode == 'out' then
  if peer == '' then return {-11, 'peer'} end
  if redis.call('HEXISTS', KEYS[4], id) == 1 then return {1} end
  units = math.min(units, tonumber(s[2]))
  if units <= 0 then return {0, 0} end
  redis.call('HSET', KEYS[4], id, peer .. '|' .. units .. '|' .. now)
  units = -units
else
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 86400000)
  if redis.call('ZADD', KEYS[5], 'NX', now, id) == 0 then return {1} end
end
local total, version = tonumber(s[1]) + units, to_int(s[3]) + 1
redis.call('HSET', KEYS[1], 'total', total, 'avail', tonumber(s[2]) + units, 'ver', version)
redis.call('SADD', KEYS[2], sku)
redis.call('XADD', KEYS[3], '*', 'type', 'stock_adjusted', 'sku', sku, 'delta', units, 'total', total,
  'ver', version, 'reason', 'move:' .. id, 'ts', now)
if units > 0 then announce_available(KEYS[1]) end
return {0, math.abs(units)}
