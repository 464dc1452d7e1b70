--[[
set_sale_switch: pause (or resume) every sale at once, and record it for PostgreSQL.
The reserve and amend scripts read the switch themselves; the outbox entry written in this same call
makes the switch durable, so a rebuild after Redis lost its data restores it.

KEYS[1]        global sale switch (string; '1' = every sale paused, absent = open)
KEYS[2]        outbox stream

ARGV[1]        '1' to pause everything, '0' to resume

Returns
  {0, paused}                               applied (paused is 1 or 0); an unchanged switch is
                                            still recorded, so the newest entry always wins

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
redis.call('XADD', KEYS[2], '*', 'type', 'sale_switch', 'paused', paused, 'ts', now_ms())
return {0, tonumber(paused)}
