--[[
claim_offer: turn a waitlist offer (a hold for the buyer, lapsing at its claim deadline) into an
ordinary open reservation under the offer's token, which then checks out and pays like any other.

KEYS[1]        reservation record of the offer's token (hash)
KEYS[2]        expiry index (zset; the SKU's index bucket as 'x:<n>' -> its earliest entry ms)
KEYS[3]        dirty SKU set
KEYS[4]        global sale switch ('1' = every sale paused)
KEYS[5]        stock hash of the SKU
KEYS[6]        holds zset of the SKU
KEYS[7]        buyers hash of the SKU
KEYS[8]        waitlist entries hash ('u:<user>' -> entry; lua/includes/waitlist.lua)
KEYS[9]        index bucket of the SKU (zset; 's:<sku>' -> its earliest hold expiry ms)

ARGV[1]        user id
ARGV[2]        the offer's token (as read from the entry; must still be the entry's)
ARGV[3]        sku
ARGV[4]        hold time after the claim, ms (the reservation expires at now + this)
ARGV[5]        record retention after expiry, ms

Time is Redis's own (now_ms()): an offer past its deadline cannot be claimed; its hold goes back here
(or already went back through lazy expiry) and passes to the next buyer. Pause, global pause, recovery
and the sale window refuse a claim as they refuse a reserve (the offer stays until its deadline).

Returns
  {0, expires_ms, created_ms, price}       claimed now
  {1}                                      already claimed (the same token): the reservation exists
  {-2, sku, reason}                        sale not active
  {-6}                                     the offer lapsed
  {-11, argument}                          invalid argument
  {-16}                                    no offer for this user on this waitlist (or another token)

Invariant: avail + held + sold == total, each >= 0 (the units stay held; only their hold moves).
]]
--@include "clock"
--@include "common"
--@include "waitlist"

if #KEYS ~= 9 then return {-11, 'keys'} end
local user, token, sku = ARGV[1], ARGV[2], ARGV[3]
if user == '' or token == '' or sku == '' then return {-11, 'id'} end
if not (is_count(ARGV[4]) and is_count(ARGV[5])) or tonumber(ARGV[4]) < 1 then return {-11, 'ttl'} end
local ttl, retention = tonumber(ARGV[4]), tonumber(ARGV[5])

local state, units, deadline, seq, entry_token = parse_entry(redis.call('HGET', KEYS[8], 'u:' .. user))
if not state or entry_token ~= token or state == 'w' then return {-16} end
if state == 'c' then return {1} end

local now = now_ms()
if now >= deadline or not hold_expiry(KEYS[5], KEYS[6], nil, token, units, user) then
  release_hold(KEYS[5], KEYS[6], KEYS[7], nil, token, units, user)  -- a no-op if lazy expiry took it already
  redis.call('HDEL', KEYS[8], 'u:' .. user)
  return {-6}
end
local s = redis.call('HMGET', KEYS[5], 'paused', 'start', 'end', 'price')
local reason = closed_reason(redis.call('GET', KEYS[4]), s[1], s[2], s[3], now)
if reason then return {-2, sku, reason} end

local expires = now + ttl
redis.call('HSET', KEYS[1], 'u', user, 'st', 'held', 'exp', expires, 'ct', now, 'fp', 'waitlist', 'n', 1,
  'l:' .. sku, units, 'p:' .. sku, to_int(s[4]))
redis.call('PEXPIRE', KEYS[1], ttl + retention)
hold_retime(KEYS[5], KEYS[6], nil, token, units, user, expires)
index_hold_expiry(KEYS[2], KEYS[9], sku, expires)
redis.call('SADD', KEYS[3], sku)
redis.call('HSET', KEYS[8], 'u:' .. user, 'c|' .. units .. '|' .. expires .. '|' .. seq .. '|' .. token)
return {0, expires, now, to_int(s[4])}
