--[[
leave_waitlist: take a buyer off a SKU's waitlist; an open offer's hold goes back (to the next buyer).

KEYS[1]        stock hash of the SKU
KEYS[2]        holds zset of the SKU
KEYS[3]        buyers hash of the SKU
KEYS[4]        waitlist zset (user -> join sequence)
KEYS[5]        waitlist entries hash ('u:<user>' -> entry; lua/includes/waitlist.lua)
KEYS[6]        global sale switch ('1' = every sale paused)

ARGV[1]        user id
ARGV[2]        claim window of offers, ms (for the buyers the units pass to)

Returns
  {0, state_before}                        left ('waiting' | 'offered' | 'claimed': a claimed offer is a
                                           reservation of its own now and is not touched)
  {-11, argument}                          invalid argument
  {-16}                                    no entry for this user on this waitlist

Invariant: avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"
--@include "waitlist"

local user = ARGV[1]
if user == '' then return {-11, 'user_id'} end
if not is_count(ARGV[2]) or tonumber(ARGV[2]) < 1 then return {-11, 'claim_window'} end

local state, units, _, _, token = parse_entry(redis.call('HGET', KEYS[5], 'u:' .. user))
if not state then return {-16} end
if state == 'w' then
  drop_waiting(KEYS[1], KEYS[4], KEYS[5], user, units)
else
  if state == 'o' then release_hold(KEYS[1], KEYS[2], KEYS[3], nil, token, units, user) end
  redis.call('HDEL', KEYS[5], 'u:' .. user)
end
serve_waitlist(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], redis.call('GET', KEYS[6]), now_ms(),
  tonumber(ARGV[2]))
return {0, ({w = 'waiting', o = 'offered', c = 'claimed'})[state]}
