--[[
settle_claim: end an Idempotency-Key / webhook event claim, but only if this caller still holds it.

A claim is a marker SET NX with a lease by the request that runs; when it is done it either replaces
the marker with its final response (stored for the record TTL) or deletes it (a transient outcome:
429, 5xx, 503, stale read) so that a retry can run. If the lease ran out and another request claimed
the key meanwhile, the value is no longer this caller's marker and nothing is written.

KEYS[1]        the idempotency record (string)

ARGV[1]        this caller's claim marker, exactly as it was SET
ARGV[2]        the final record to store, or '' to release the claim
ARGV[3]        how long to keep the final record, ms (ignored when releasing)

Returns
  1            settled: the record now holds ARGV[2], or the claim was deleted
  0            not settled: the key no longer holds this caller's marker (lease expired)
  {-11, arg}   invalid argument (nothing written)

Invariant: only the holder of a live claim ever writes or deletes the record.
]]

local marker, final, ttl = ARGV[1], ARGV[2], ARGV[3]
if marker == nil or marker == '' then return {-11, 'marker'} end
if final ~= '' and not (ttl and string.match(ttl, '^[1-9][0-9]*$')) then return {-11, 'ttl'} end

if redis.call('GET', KEYS[1]) ~= marker then return 0 end
if final == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], final, 'PX', ttl)
end
return 1
