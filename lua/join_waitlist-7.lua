--[[
join_waitlist: put a buyer on a sold-out SKU's waitlist (one entry per user and SKU, first come first
served), or answer the entry they already have.

KEYS[1]        stock hash of the SKU
KEYS[2]        holds zset of the SKU
KEYS[3]        buyers hash of the SKU (user -> units held or ordered)
KEYS[4]        waitlist zset (user -> join sequence)
KEYS[5]        waitlist entries hash ('u:<user>' -> entry; lua/includes/waitlist.lua)
KEYS[6]        global sale switch ('1' = every sale paused)
KEYS[7]        the partition's set of SKUs with a waitlist (the sweeper serves them)

ARGV[1]        sku
ARGV[2]        user id
ARGV[3]        quantity wanted (1..MAX_QTY; with a per-user limit, at most what the limit leaves)
ARGV[4]        entry lifetime, ms (not offered anything by then, the entry leaves the queue)
ARGV[5]        the most buyers one waitlist takes
ARGV[6]        claim window of offers, ms
ARGV[7]        token of the offer this entry may become (a new reservation token in the SKU's partition)

Time is Redis's own (now_ms()). Joining is for a SKU that cannot serve the quantity now: if 'avail'
covers it (after lazy expiry and what earlier buyers in the queue are owed), the buyer should reserve.
The sale must be open (pause, global pause, recovery and the sale window apply as to reserves).

Returns
  {0, state, position, length, at_ms, units, token}   joined (state 'waiting', or 'offered' at once)
  {1, state, position, length, at_ms, units, token}   already on this waitlist with this quantity
      state 'waiting': position (1 = next), at_ms = when the entry expires, token ''
      state 'offered' | 'claimed': position 0, at_ms = claim deadline | hold expiry, token = its hold
  {-1, sku}                                product not found
  {-2, sku, reason}                        sale not active
  {-4, sku, limit, already}                the per-user limit leaves less than the quantity
  {-11, argument}                          invalid argument
  {-17, sku, available}                    not sold out: the quantity can be reserved now
  {-18, sku, qty}                          already waiting for another quantity (leave first)
  {-19, sku, length}                       the waitlist is full

Invariant: avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"
--@include "waitlist"

local sku, user, qty, ttl, max_length, claim, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if sku == '' or user == '' or string.find(user, '|', 1, true) then return {-11, 'user_id'} end
if not is_qty(qty, 1) then return {-11, 'qty'} end
if not (is_count(ttl) and is_count(max_length) and is_count(claim)) or tonumber(ttl) < 1
    or tonumber(max_length) < 1 or tonumber(claim) < 1 then
  return {-11, 'settings'}
end
if not string.match(token or '', '^[%d%l]+$') or #token > 64 then return {-11, 'token'} end
qty, ttl, max_length, claim = tonumber(qty), tonumber(ttl), tonumber(max_length), tonumber(claim)

local s = redis.call('HMGET', KEYS[1], 'avail', 'limit', 'paused', 'start', 'end')
if not s[1] then return {-1, sku} end
local now = now_ms()
local globally = redis.call('GET', KEYS[6])
local reason = closed_reason(globally, s[3], s[4], s[5], now)
if reason then return {-2, sku, reason} end
reclaim_expired(KEYS[1], KEYS[2], KEYS[3], nil, now, 1000, KEYS[5])

local function answer(code)
  local state, units, at, _, token = parse_entry(redis.call('HGET', KEYS[5], 'u:' .. user))
  local names = {w = 'waiting', o = 'offered', c = 'claimed'}
  local rank = redis.call('ZRANK', KEYS[4], user)
  if state == 'w' then token = '' end
  return {code, names[state], rank and rank + 1 or 0, redis.call('ZCARD', KEYS[4]), at, units, token or ''}
end

local state, units, at = parse_entry(redis.call('HGET', KEYS[5], 'u:' .. user))
if (state == 'w' or state == 'o') and now < at then
  if state == 'w' and units ~= qty then return {-18, sku, units} end
  return answer(1)
end
if state == 'w' then drop_waiting(KEYS[1], KEYS[4], KEYS[5], user, units) end
if state then redis.call('HDEL', KEYS[5], 'u:' .. user) end  -- lapsed offer, old claim, expired entry

serve_waitlist(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], globally, now, claim)
local avail = to_int(redis.call('HGET', KEYS[1], 'avail'))
if avail >= qty then return {-17, sku, avail} end
local limit = to_int(s[2])
if limit > 0 then
  local already = buyer_units(KEYS[1], KEYS[3], user)
  if already + qty > limit then return {-4, sku, limit, already} end
end
local length = redis.call('ZCARD', KEYS[4])
if length >= max_length then return {-19, sku, length} end

local seq = redis.call('HINCRBY', KEYS[5], 'seq', 1)
redis.call('ZADD', KEYS[4], seq, user)
redis.call('HSET', KEYS[5], 'u:' .. user, 'w|' .. qty .. '|' .. (now + ttl) .. '|' .. seq .. '|' .. token)
redis.call('HINCRBY', KEYS[1], 'wq', qty)
-- The waitlist epoch ('wle', one more per entry) and the epoch at which the queue last formed ('wlf'): a
-- split SKU's other buckets are flagged with 'wlf' and unflagged up to a 'wle' read while nobody waited
-- (inventory/bucket_waitlist.py), so only the join that forms a queue has them flagged again.
local epoch = redis.call('HINCRBY', KEYS[1], 'wle', 1)
if redis.call('HINCRBY', KEYS[1], 'wn', 1) == 1 then redis.call('HSET', KEYS[1], 'wlf', epoch) end
redis.call('SADD', KEYS[7], sku)
serve_waitlist(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], globally, now, claim)
return answer(0)
