-- Minimal reserve: KEYS[1] = stock counter, ARGV[1] = qty.
-- Returns the remaining units, or -1 when fewer than qty are left.
local avail = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[1])
if avail < qty then
  return -1
end
return redis.call('DECRBY', KEYS[1], qty)
