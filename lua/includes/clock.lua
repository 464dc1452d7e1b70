-- One clock: Redis's own. Every decision about time (expiry, sale windows, rate-limit windows,
-- sweeps) is taken from here inside the script, never from a time a caller sends, so hosts whose
-- clocks differ, and arguments built before another request ran, cannot disagree about a hold.
-- (Tests load the scripts with a virtual clock in place of this file; production cannot.)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
