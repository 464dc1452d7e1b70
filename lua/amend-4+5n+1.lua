--[[
amend: change the lines of an open reservation atomically (add, change quantity, remove).
Lines not changed stay as they are; the expiry does not move.

KEYS[1]        reservation record (hash of its own)
KEYS[2]        expiry index (zset)
KEYS[3]        dirty SKU set
KEYS[4]        global sale switch (string; '1' = every sale paused: no line may grow)
KEYS[4+5i-4]   stock hash of line i
KEYS[4+5i-3]   holds zset of line i
KEYS[4+5i-2]   buyers hash of line i
KEYS[4+5i-1]   the token's hold bucket on line i's SKU (hash; lua/includes/common.lua hold_put)
KEYS[4+5i]     index bucket of line i's SKU (zset; 's:<sku>' -> its earliest hold expiry ms)
KEYS[5+5n]     record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token
ARGV[2]        user id ('' = any user)
ARGV[3]        '1' when the caller routed the changes through the current stock-bucket layout
               (inventory/buckets.py), '' otherwise: a line of a split SKU ('bk') or of a bucket that
               needs quota lines ('bq') grows only in a routed call, as in lua/reserve
ARGV[2+2i]     sku of line i: every line the reservation has now, plus the lines being added
ARGV[3+2i]     new quantity of line i (0..MAX_QTY; 0 removes the line), or '' to leave it unchanged

Time is Redis's own (now_ms()). The script acts only while the reservation is unexpired on that
clock AND every one of its holds is still in its SKU's holds index: a hold that another request
reclaimed meanwhile (lazy expiry) makes the whole reservation expired here, its remaining holds go
back exactly once, and nothing is re-held. So a change whose arguments were built before the
reclaim can never re-add or double-return stock.

Returns
  {0, expires_ms, line_count}              amended
  {-1, sku} | {-2, sku, reason} | {-4, sku, limit, already}
  {-3, sku, available, requested, waiting, until_ms, due_bucket}  sold out, as in lua/reserve
  {-5}                                     no such reservation (or another user's)
  {-6}                                     reservation expired (its remaining holds are released)
  {-7, status}                             reservation no longer open ('checking_out': a part pinned by a
                                           checkout in flight)
  {-11, argument}                          invalid argument (empty result, unless other parts remain;
                                           bad quantity, ...)
  {-12}                                    lines in ARGV are stale (a current line is not named): re-read and retry
  {-20, sku, buckets}                      a growing line's stock layout is newer than the caller's routing

Invariant: for every SKU avail + held + sold == total, each >= 0; a buyer's count moves only with
the hold it counts.
]]
--@include "clock"
--@include "common"

line_stride = 5  -- the line helpers (holds_intact, expire_reservation) skip each line's index bucket
local token, user, routed = ARGV[1], ARGV[2], ARGV[3] == '1'
local n = (#ARGV - 3) / 2
if n < 1 or n ~= math.floor(n) or #KEYS ~= 5 + 5 * n then return {-11, 'items'} end
if ARGV[3] ~= '' and not routed then return {-11, 'routed'} end

local skus, news, seen = {}, {}, {}
for i = 1, n do
  local sku, qty = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  if qty ~= '' and not is_qty(qty, 0) then return {-11, 'qty'} end
  if seen[sku] then return {-11, 'duplicate_sku'} end
  seen[sku] = true
  skus[i], news[i] = sku, tonumber(qty)
end

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local rec = record_get(R, 'u', 'st', 'exp', 'n', 'parts', 'pin')
if not rec[1] or (user ~= '' and rec[1] ~= user) then return {-5} end
if rec[2] == 'expired' then return {-6} end
if rec[2] ~= 'held' then return {-7, rec[2]} end
-- A part pinned by a checkout in flight belongs to that checkout: its holds stay at +inf and its lines
-- as pinned until the checkout commits or the sweeper aborts it (lua/pin_part).
if rec[6] then return {-7, 'checking_out'} end
local owner, expires, count = rec[1], tonumber(rec[3]), tonumber(rec[4])

local olds, current = {}, 0
for i = 1, n do
  olds[i] = to_int(R.f['l:' .. skus[i]])
  if olds[i] > 0 then current = current + 1 end
  if news[i] == nil then
    if olds[i] == 0 then return {-12} end
    news[i] = olds[i]
  end
end
if current ~= count then return {-12} end

local now = R.now
if now >= expires or not holds_intact(4, token, owner, olds) then
  expire_reservation(4, R, KEYS[2], KEYS[3], token, owner, skus, olds, now)
  return {-6}
end

for i = 1, n do
  if olds[i] == 0 and news[i] > 0 then count = count + 1 end
  if olds[i] > 0 and news[i] == 0 then count = count - 1 end
end
-- The home of a multi-part reservation may keep no line of its own while its other parts have some.
if count < 1 and (rec[5] or '') == '' then return {-11, 'empty'} end

for i = 1, n do
  local base = 4 + 5 * (i - 1)
  if news[i] > olds[i] then
    reclaim_expired(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4], now, 1000)
    set_aside_for_waitlist(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])  -- buyers waiting come first
  end
end

local globally = redis.call('GET', KEYS[4])
local prices = {}
for i = 1, n do
  local base = 4 + 5 * (i - 1)
  local grow = news[i] - olds[i]
  if grow > 0 then
    local s = redis.call('HMGET', KEYS[base + 1], 'avail', 'limit', 'paused', 'start', 'end', 'price', 'wn',
      'bk', 'bq')
    if not s[1] then return {-1, skus[i]} end
    if (s[8] or s[9] == '1') and not routed then return {-20, skus[i], to_int(s[8])} end
    local reason = closed_reason(globally, s[3], s[4], s[5], now)
    if reason then return {-2, skus[i], reason} end
    if tonumber(s[1]) < grow then
      local true_for, score = -1, first_hold_expiry(KEYS[base + 1], KEYS[base + 2])
      if score and score < math.huge then true_for = math.max(score - now, 0) end
      local due = true_for == 0 and due_bucket(KEYS[base + 2], now) or -1
      return {-3, skus[i], tonumber(s[1]), grow, to_int(s[7]), true_for, due}
    end
    local limit = to_int(s[2])
    if limit > 0 then
      local already = buyer_units(KEYS[base + 1], KEYS[base + 3], owner)
      if already + grow > limit then return {-4, skus[i], limit, already} end
    end
    prices[i] = to_int(s[6])
  end
end

for i = 1, n do
  local base = 4 + 5 * (i - 1)
  local grow = news[i] - olds[i]
  if grow ~= 0 then
    local counted = 0  -- the change to the owner's count: the units of the holds that are in it
    if olds[i] > 0 then
      local _, was = hold_take(KEYS[base + 1], KEYS[base + 2], KEYS[base + 4], token, olds[i], owner)
      if was then counted = -olds[i] end
    end
    redis.call('HINCRBY', KEYS[base + 1], 'avail', -grow)
    redis.call('HINCRBY', KEYS[base + 1], 'held', grow)
    redis.call('SADD', KEYS[3], skus[i])
    if grow < 0 then
      set_aside_for_waitlist(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])
      announce_available(KEYS[base + 1])
    end
    if news[i] > 0 and hold_put(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4], token, news[i],
        owner, expires) then
      counted = counted + news[i]
    end
    add_buyer_units(KEYS[base + 1], KEYS[base + 3], owner, counted)
    if news[i] > 0 then
      index_hold_expiry(KEYS[2], KEYS[base + 5], skus[i], expires)
      record_set(R, 'l:' .. skus[i], news[i])
      if olds[i] == 0 then record_set(R, 'p:' .. skus[i], prices[i]) end
    else
      record_del(R, 'l:' .. skus[i], 'p:' .. skus[i])
    end
  end
end
record_set(R, 'n', count)
return {0, expires, count}
