--[[
configure_product: create a product or change its catalogue data and sale settings.
A new product starts with zero stock; stock is changed by adjust_stock.

KEYS[1]        stock hash of the SKU
KEYS[2]        catalogue index (zset of SKUs, score 0, lexicographic)
KEYS[3]        dirty SKU set
KEYS[4]        outbox stream

ARGV[1]        sku
ARGV[2]        expected version ('' = no compare-and-set)
ARGV[3]        '1' when the caller is the recovery rebuild, '' otherwise
ARGV[4..]      field, value pairs; fields: name, price (minor units), cur, limit (0 = none),
               start, end (ms since epoch, 0 = open), paused ('0' | '1' | 'r' recovering); and the stock
               buckets' layout, written only by inventory/buckets.py: bk (active buckets, 1..64), bkn
               (buckets ever created, 1..64), bkp (their partitions, comma-separated), bq ('1': per-user
               limits counted in quota SKUs)

Returns
  {0, version}                              applied (version is bumped on every change)
  {-9, expected, actual}                    version conflict
  {-11, argument}                           invalid argument
  {-14, sku}                                the SKU is recovering: only the rebuild may change 'paused'

The outbox event carries the catalogue data and 'bk' ('' when not split), so PostgreSQL knows how
many buckets are active and a rebuild after a data loss restores that layout, not every bucket ever made.

Invariant: stock counters are untouched; start < end whenever both are set; a SKU marked
recovering ('r') leaves that state only through the rebuild, so it never sells before its counters
are rebuilt.
]]
--@include "clock"
--@include "common"

local sku, expected, rebuild = ARGV[1], ARGV[2], ARGV[3] == '1'
if sku == '' then return {-11, 'sku'} end
if ARGV[3] ~= '' and not rebuild then return {-11, 'rebuild'} end
if expected ~= '' and not is_count(expected) then return {-11, 'expected_version'} end
if (#ARGV - 3) % 2 ~= 0 then return {-11, 'fields'} end

local numeric = {price = true, limit = true, start = true, ['end'] = true}
local MAX_BUCKETS = 64  -- inventory.buckets.MAX_BUCKETS
local changes = {}
for i = 4, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  if numeric[field] then
    if not is_count(value) then return {-11, field} end
  elseif field == 'bk' or field == 'bkn' then
    if not is_count(value) or tonumber(value) < 1 or tonumber(value) > MAX_BUCKETS then return {-11, field} end
  elseif field == 'bkp' then
    if string.len(value) > 4 * MAX_BUCKETS or not string.match(value, '^[%d,]*$') then return {-11, field} end
  elseif field == 'bq' then
    if value ~= '1' then return {-11, field} end
  elseif field == 'paused' then
    if value ~= '0' and value ~= '1' and value ~= 'r' then return {-11, field} end
  elseif field == 'name' then
    if value == '' or string.len(value) > 200 then return {-11, field} end
  elseif field == 'cur' then
    if not string.match(value, '^%u%u%u$') then return {-11, 'currency'} end
  else
    return {-11, field}
  end
  changes[field] = value
end

local cur = redis.call('HMGET', KEYS[1], 'ver', 'start', 'end', 'paused')
local version = to_int(cur[1])
if expected ~= '' and tonumber(expected) ~= version then return {-9, tonumber(expected), version} end
if cur[4] == 'r' and changes.paused and changes.paused ~= 'r' and not rebuild then return {-14, sku} end
local starts = to_int(changes.start or cur[2])
local ends = to_int(changes['end'] or cur[3])
if starts > 0 and ends > 0 and ends <= starts then return {-11, 'window'} end

if not cur[1] then
  redis.call('HSET', KEYS[1], 'total', 0, 'avail', 0, 'held', 0, 'sold', 0,
    'name', sku, 'price', 0, 'cur', 'USD', 'limit', 0, 'start', 0, 'end', 0, 'paused', '0')
  redis.call('ZADD', KEYS[2], 0, sku)
end
version = version + 1
local args = {'ver', version}
for field, value in pairs(changes) do
  args[#args + 1] = field
  args[#args + 1] = value
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('SADD', KEYS[3], sku)

local p = redis.call('HMGET', KEYS[1], 'name', 'price', 'cur', 'limit', 'start', 'end', 'paused', 'bk')
redis.call('XADD', KEYS[4], '*', 'type', 'product_configured', 'sku', sku, 'name', p[1],
  'price', p[2], 'cur', p[3], 'limit', p[4], 'start', p[5], 'end', p[6], 'paused', p[7],
  'ver', version, 'ts', now_ms(), 'bk', p[8] or '')
return {0, version}
