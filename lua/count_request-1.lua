--[[
count_request: count one request in a fixed-window rate-limit bucket (used on Redis Cluster, where
the buckets cannot share the reserve script's slot; on one node reserve counts them itself).

KEYS[1]        counter of the bucket (the API's per-user or per-IP bucket)

ARGV[1]        request limit per window
ARGV[2]        window, seconds
ARGV[3]        the bucket's number j, echoed in the refusal

Returns
  {0, count}                               counted, within the limit
  {-13, j, retry_after_ms}                 over the limit (the request is counted, as reserve counts it)
  {-11, argument}                          invalid argument

Same arithmetic as reserve's buckets: INCR, EXPIRE when the window opens.
]]
--@include "common"

if not (is_count(ARGV[1]) and is_count(ARGV[2])) or tonumber(ARGV[2]) < 1 then return {-11, 'rate_limits'} end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then
  return {-13, tonumber(ARGV[3]) or 1, math.max(redis.call('PTTL', KEYS[1]), 1)}
end
return {0, count}
