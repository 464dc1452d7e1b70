--[[
offer_waitlist: hand units set aside for a SKU's waitlist to the buyers at its head, as holds (offers)
with a claim window; drop entries whose time ran out; give back what no waiting buyer wants.
Run by the sweeper for every SKU with a waitlist, and after reads of an entry (lazily).

KEYS[1]        stock hash of the SKU
KEYS[2]        holds zset of the SKU
KEYS[3]        buyers hash of the SKU
KEYS[4]        waitlist zset (user -> join sequence)
KEYS[5]        waitlist entries hash ('u:<user>' -> entry; lua/includes/waitlist.lua)
KEYS[6]        global sale switch ('1' = every sale paused: nothing is offered)
KEYS[7]        the partition's set of SKUs with a waitlist

ARGV[1]        claim window, ms (an offer lapses this long after it is made)
ARGV[2]        sku

Time is Redis's own (now_ms()). Lapsed offers are reclaimed first (their units pass to the next buyer).
Once nobody waits and nothing is set aside, finished entries are cleared (claimed ones whose hold
ended, lapsed offers that lazy expiry reclaimed), and the SKU leaves the set when no offer is open.

Returns
  {0, units_offered, buyers_waiting, units_set_aside}
  {-1, ''}                                 product not found
  {-11, argument}                          invalid argument

Invariant: avail + held + sold == total, each >= 0 (set-aside units and offers are held).
]]
--@include "clock"
--@include "common"
--@include "waitlist"

if not is_count(ARGV[1]) or tonumber(ARGV[1]) < 1 then return {-11, 'claim_window'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, ''} end

local now = now_ms()
reclaim_expired(KEYS[1], KEYS[2], KEYS[3], nil, now, 1000, KEYS[5])
local offered = serve_waitlist(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], redis.call('GET', KEYS[6]), now,
  tonumber(ARGV[1]))
local s = redis.call('HMGET', KEYS[1], 'wn', 'owe')
if to_int(s[1]) == 0 and to_int(s[2]) == 0 then
  local open = false
  local entries = redis.call('HGETALL', KEYS[5])  -- small here: nobody waits, only offers and claims
  for i = 1, #entries, 2 do
    local field = entries[i]
    local state, units, at, _, token = parse_entry(entries[i + 1])
    if state == 'o' and hold_expiry(KEYS[1], KEYS[2], nil, token, units, string.sub(field, 3)) then
      open = true
    elseif state and (state ~= 'c' or now >= at) then
      redis.call('HDEL', KEYS[5], field)
    end
  end
  if not open then redis.call('SREM', KEYS[7], ARGV[2]) end
end
return {0, offered, to_int(s[1]), to_int(s[2])}
