--[[
set_sale_switch: pause (or resume) every sale of one partition, and record it for PostgreSQL.
The caller sets the switch of every partition (the global switch is one copy per partition, so the
reserve and amend scripts read it in their own slot); the outbox entry written with the first
partition's copy makes the switch durable, so a rebuild after Redis lost its data restores it.

KEYS[1]        the partition's copy of the global sale switch ('1' = every sale paused, absent = open)
KEYS[2]        the partition's outbox stream

ARGV[1]        '1' to pause everything, '0' to resume
ARGV[2]        '1' to record the switch in the outbox (first partition), '' to set it only

Returns
  {0, paused}                               applied (paused is 1 or 0); an unchanged switch is
                                            still recorded, so the newest entry always wins
  {-11, argument}                           invalid argument

Invariant: stock counters are untouched.
]]
--@include "clock"
--@include "common"

local paused = ARGV[1]
if paused ~= '1' and paused ~= '0' then return {-11, 'paused'} end
if paused == '1' then
  redis.call('SET', KEYS[1], '1')
else
  redis.call('DEL', KEYS[1])
end
if ARGV[2] == '1' then
  redis.call('XADD', KEYS[2], '*', 'type', 'sale_switch', 'paused', paused, 'ts', now_ms())
end
return {0, tonumber(paused)}
