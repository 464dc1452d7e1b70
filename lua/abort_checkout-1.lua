--[[
abort_checkout: stop an unfinished checkout of a multi-part reservation at its home.

Called by the sweeper that found a pinned part past its pin window. If the home is not checked out,
its 'abort' count goes up: a checkout that pinned the parts under the old count can no longer
commit (checkout compares it), so the sweeper may unpin the part. If the home is checked out, the
decision was 'commit' and the part must be checked out too.

KEYS[1]        the home reservation record (hash)

ARGV[1]        reservation token (for the log only)

Returns
  {0, status}                              aborted (status: the home's, not checked out)
  {1, status}                              the home is checked out: commit the parts
  {-5}                                     no such reservation

Invariant: stock counters are untouched.
]]

local st = redis.call('HMGET', KEYS[1], 'st', 'oid')
if not st[1] then return {-5} end
if st[2] then return {1, st[1]} end
redis.call('HINCRBY', KEYS[1], 'abort', 1)
return {0, st[1]}
