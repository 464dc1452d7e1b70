--[[
attach_parts: record at a reservation's home its other parts after an amend reserved new ones (or
before it releases one whose every line went to 0).

KEYS[1]        the home reservation record (hash of its own)
KEYS[2]        record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token
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

local token, user, parts = ARGV[1], ARGV[2], ARGV[3]
if #parts > 200 or not string.match(parts, '^[%d,]*$') then return {-11, 'parts'} end
local R = open_record(KEYS[1], KEYS[2], token)
local rec = record_get(R, 'u', 'st', 'exp')
if not rec[1] or (user ~= '' and rec[1] ~= user) then return {-5} end
if rec[2] ~= 'held' then return {-7, rec[2]} end
if R.now >= tonumber(rec[3]) then return {-6} end
record_set(R, 'parts', parts)
return {0}
