--[[
adjust_stock: set a SKU's total or add/remove units, safely while a sale is live.
Open holds and sold units are never touched: only 'avail' absorbs the change.

KEYS[1]        stock hash of the SKU
KEYS[2]        dirty SKU set
KEYS[3]        outbox stream

ARGV[1]        sku
ARGV[2]        mode: 'set' (ARGV[3] is the new total) | 'add' (ARGV[3] is a signed delta)
ARGV[3]        units
ARGV[4]        expected version ('' = no compare-and-set)
ARGV[5]        reason recorded in the ledger event (e.g. 'seed', 'admin')

Returns
  {0, total, available, held, sold, version}   applied (version bumped only if total changed)
  {-1, sku}                                    product not found
  {-9, expected, actual}                       version conflict
  {-10, held_plus_sold, requested_total}       total would drop below held + sold
  {-11, argument}                              invalid argument

Invariant: avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"

local sku, mode, units, expected, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if mode ~= 'set' and mode ~= 'add' then return {-11, 'mode'} end
local magnitude = string.match(units, '^-?(%d+)$')
if not magnitude or string.len(magnitude) > 12 then return {-11, 'units'} end
if mode == 'set' and string.sub(units, 1, 1) == '-' then return {-11, 'units'} end
if expected ~= '' and not is_count(expected) then return {-11, 'expected_version'} end
if reason == '' then return {-11, 'reason'} end

local s = redis.call('HMGET', KEYS[1], 'total', 'avail', 'held', 'sold', 'ver')
if not s[1] then return {-1, sku} end
local total, avail, held, sold, version =
  tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), to_int(s[5])
if expected ~= '' and tonumber(expected) ~= version then return {-9, tonumber(expected), version} end

local new_total = tonumber(units)
if mode == 'add' then new_total = total + new_total end
if new_total < held + sold then return {-10, held + sold, new_total} end

local delta = new_total - total
if delta ~= 0 then
  version = version + 1
  avail = avail + delta
  redis.call('HSET', KEYS[1], 'total', new_total, 'avail', avail, 'ver', version)
  redis.call('SADD', KEYS[2], sku)
  redis.call('XADD', KEYS[3], '*', 'type', 'stock_adjusted', 'sku', sku, 'delta', delta,
    'total', new_total, 'ver', version, 'reason', reason, 'ts', now_ms())
  if delta > 0 then announce_available(KEYS[1]) end
end
return {0, new_total, avail, held, sold, version}
