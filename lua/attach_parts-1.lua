--[[
attach_parts: record at a reservation's home its other parts after an amend reserved new ones (or
before it releases one whose every line went to 0).

KEYS[1]        the home reservation record (hash)

ARGV[1]        reservation token (for the log only)
ARGV[2]        user id ('' = any user)
ARGV[3]        every other part's partition number, comma-separated (the new 'parts'; '' = none)

Time is Redis's own (now_ms()): an expired home takes no new parts (the caller releases them).

Returns
  {0}                                      recorded
  {-5}                                     no such reservation (or another user's)
  {-6}                                     reservation expired
  {-7, status}                             reservation no longer held
  {-11, argument}                          invalid argument

Invariant: stock counters are untouched.
]]
--@include "clock"
--@include "common"

local user, parts = ARGV[2], ARGV[3]
if #parts > 200 or not string.match(parts, '^[%d,]*$') then return {-11, 'parts'} end
local rec = redis.call('HMGET', KEYS[1], 'u', 'st', 'exp')
if not rec[1] or (user ~= '' and rec[1] ~= user) then return {-5} end
if rec[2] ~= 'held' then return {-7, rec[2]} end
if now_ms() >= tonumber(rec[3]) then return {-6} end
redis.call('HSET', KEYS[1], 'parts', parts)
return {0}
