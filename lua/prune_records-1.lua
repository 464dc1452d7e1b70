--[[
prune_records: drop the packed reservation records of one record bucket whose retention has passed.

KEYS[1]        record bucket (hash token -> packed record; lua/includes/common.lua, "Reservation records")

ARGV[1]        most records to drop in this call (the rest wait for the bucket's next turn)

A packed record is an open single-line hold. Once its hold expires unseen it reads as expired until
its 'until' (the expiry plus the record retention), as a record key would until its TTL; after that
it is gone. Records in keys of their own expire by their TTL and are not touched here. The sweeper
(inventory/records.py RecordPruner) calls this for every bucket once per round.

Time is Redis's own (now_ms()).

Returns
  {pruned, left}                           records dropped now, records left in the bucket
  {-11, argument}                          invalid argument

Invariant: stock counters are untouched (a packed record's hold, if still there, is the sweeper's).
]]
--@include "clock"
--@include "common"

if not is_count(ARGV[1]) then return {-11, 'batch'} end
local batch = tonumber(ARGV[1])
local now = now_ms()
local flat = redis.call('HGETALL', KEYS[1])
local due = {}
for i = 1, #flat, 2 do
  if #due < batch and packed_until(flat[i + 1]) <= now then due[#due + 1] = flat[i] end
end
for i = 1, #due, 1000 do  -- unpack() takes a bounded number of arguments
  redis.call('HDEL', KEYS[1], unpack(due, i, math.min(i + 999, #due)))
end
return {#due, #flat / 2 - #due}
