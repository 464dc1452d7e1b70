--[[
abort_checkout: stop an unfinished checkout of a multi-part reservation at its home.

Called by the sweeper that found a pinned part past its pin window. If the home is not checked out,
its 'abort' count goes up: a checkout that pinned the parts under the old count can no longer
commit (checkout compares it), so the sweeper may unpin the part. If the home is checked out, the
decision was 'commit' and the part must be checked out too.

KEYS[1]        the home reservation record (hash of its own)
KEYS[2]        record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token

Returns
  {0, status}                              aborted (status: the home's, not checked out)
  {1, status}                              the home is checked out: commit the parts
  {-5}                                     no such reservation

Invariant: stock counters are untouched.
]]
--@include "clock"
--@include "common"

local R = open_record(KEYS[1], KEYS[2], ARGV[1])
local st = record_get(R, 'st', 'oid')
if not st[1] then return {-5} end
if st[2] then return {1, st[1]} end
record_incr(R, 'abort', 1)
return {0, st[1]}
