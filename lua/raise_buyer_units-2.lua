--[[
raise_buyer_units: raise one user's units of a SKU to at least a count, never lowering it. A split
SKU's quota SKU copies each buyer's units over all buckets with it (inventory/buckets.py), wherever the
quota SKU counts them (its stock hash while light, its buyers hash once busy: lua/includes/common.lua).

KEYS[1]        stock hash of the SKU
KEYS[2]        buyers hash of the SKU (user -> units held or ordered)

ARGV[1]        user id
ARGV[2]        the units the user should count at least (integer)

Returns
  {0, units}     the user's units now
  {-1, sku}      the SKU has no stock hash ('sku' = the key's name)
  {-11, argument}

Invariant: stock counters (avail, held, sold, total) are untouched.
]]
--@include "clock"
--@include "common"

if #KEYS ~= 2 then return {-11, 'keys'} end
local user, want = ARGV[1], ARGV[2]
if user == nil or user == '' then return {-11, 'user'} end
if not is_count(want) then return {-11, 'units'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, KEYS[1]} end
local units = buyer_units(KEYS[1], KEYS[2], user)
if units < tonumber(want) then
  add_buyer_units(KEYS[1], KEYS[2], user, tonumber(want) - units)
  units = tonumber(want)
end
return {0, units}
