--[[
sweep_holds: give back one SKU's expired holds and move the SKU's entry in its index bucket to its
next hold expiry, and the bucket's entry in the partition's index to the bucket's earliest. The sweeper
calls it for each due 's:<sku>' entry of a due bucket ('x:<n>'), and for each 's:<sku>' entry written in
the partition's index before the buckets, which moves into the SKU's bucket here.

KEYS[1]        expiry index of the SKU's partition (zset; 'x:<n>' -> earliest entry of index bucket n)
KEYS[2]        dirty SKU set
KEYS[3]        stock hash of the SKU
KEYS[4]        holds zset of the SKU
KEYS[5]        buyers hash of the SKU
KEYS[6]        waitlist entries hash of the SKU (a lapsed offer's entry goes with its hold)
KEYS[7]        index bucket of the SKU (zset; 's:<sku>' -> the SKU's earliest hold expiry ms)
KEYS[8]        the SKU's hold bucket to sweep (lua/includes/common.lua hold_put; any of them when the
               caller knows of no due one)

ARGV[1]        sku
ARGV[2]        most holds to give back in this call (1..100000)

Time is Redis's own (now_ms()). A hold is given back once, here or by lazy expiry in the next script
that reads the SKU, whichever comes first; its reservation record then reads as expired (its 'exp' has
passed). The entry is then moved to the SKU's earliest remaining hold with a finite expiry (pinned parts
and the waitlist pool never expire: +inf), or removed when there is none. A reserve that comes later
adds it again.

Returns
  {holds, units, more, due_bucket}         holds given back, their units, 1 if the batch was full, and a
                                           hold bucket of the SKU still due (-1: none) to sweep next
  {-11, argument}                          invalid argument

Invariant: for every SKU avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"

if #KEYS ~= 8 then return {-11, 'keys'} end
local sku = ARGV[1]
if sku == '' then return {-11, 'sku'} end
if not is_count(ARGV[2]) or tonumber(ARGV[2]) < 1 or tonumber(ARGV[2]) > 100000 then return {-11, 'batch'} end
local batch = tonumber(ARGV[2])

local now = now_ms()
local units, holds = reclaim_expired(KEYS[3], KEYS[4], KEYS[5], KEYS[8], now, batch, KEYS[6])
if units > 0 then redis.call('SADD', KEYS[2], sku) end

local at = first_hold_expiry(KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[1], 's:' .. sku)  -- listed before the buckets: from now on in its bucket
if at and at < math.huge then
  redis.call('ZADD', KEYS[7], at, 's:' .. sku)
else
  redis.call('ZREM', KEYS[7], 's:' .. sku)
end
reindex_bucket(KEYS[1], KEYS[7])
return {holds, units, holds >= batch and 1 or 0, due_bucket(KEYS[4], now)}
