--[[
reindex_bucket: move an index bucket's entry in its partition's expiry index to the bucket's earliest
SKU entry, or remove it when the bucket is empty. The sweeper calls it for a due bucket in which no SKU
was due, so that the entry cannot stay due for ever (lua/includes/common.lua, "The expiry index").

KEYS[1]        expiry index of the partition (zset; 'x:<n>' -> earliest entry of index bucket n)
KEYS[2]        index bucket (zset; 's:<sku>' -> the SKU's earliest hold expiry ms)

ARGV           none

Returns
  {0}

Invariant: stock counters are untouched.
]]
--@include "clock"
--@include "common"

if #KEYS ~= 2 then return {-11, 'keys'} end
reindex_bucket(KEYS[1], KEYS[2])
return {0}
