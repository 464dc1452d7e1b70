--[[
reserve: hold stock for one user on one or more lines, all or nothing.

KEYS[1]        reservation record (hash of its own) every key shares the partition's hash tag
KEYS[2]        expiry index (zset; each line's index bucket as 'x:<n>' -> its earliest entry ms)
KEYS[3]        dirty SKU set (SKUs changed since the last reconcile)
KEYS[4]        global sale switch (string; '1' = every sale paused)
KEYS[4+5i-4]   stock hash of line i              (one slot, so one script on a cluster)
KEYS[4+5i-3]   holds zset of line i (lua/includes/common.lua hold_put: where a SKU's holds live)
KEYS[4+5i-2]   buyers hash of line i (user -> units held or ordered)
KEYS[4+5i-1]   the token's hold bucket on line i's SKU (hash 'h:<token>' -> hold, for a busy SKU)
KEYS[4+5i]     index bucket of line i's SKU (zset; 's:<sku>' -> its earliest hold expiry ms)
KEYS[4+5n+j]   counter of rate-limit bucket j (fixed window; the API's per-user and per-IP buckets)
KEYS[5+5n+m]   record bucket of the token (hash token -> packed record; lua/includes/common.lua open_record)

ARGV[1]        reservation token
ARGV[2]        user id
ARGV[3]        request fingerprint (same token + other fingerprint = conflict); '' for a request without
               an idempotency key, whose random token no other request can carry (not stored then)
ARGV[4]        time to live, ms
ARGV[5]        record retention after expiry, ms
ARGV[6]        m, the number of rate-limit buckets (0 for none)
ARGV[7]        the reservation's other parts: comma-separated partition numbers ('' = none, or this is
               a part); recorded as 'parts' so checkout, payment and release find them
ARGV[8]        how the caller routed each line through the SKUs' stock buckets (inventory/buckets.py): ''
               (no line routed) or one character per line: '0' not, '1' through buckets, '2' through
               buckets with a per-user quota line (and every quota line itself). A SKU split into
               buckets ('bk' in its stock hash) takes only routed lines, and a bucket whose SKU counts
               per-user limits in quotas ('bq' = '1') only lines routed with quotas, so a caller that read
               the layout before a split or a new limit cannot bypass the per-user quota
ARGV[7+2i]     sku of line i
ARGV[8+2i]     quantity of line i (integer 1..MAX_QTY)
ARGV[8+2n+2j-1] request limit of bucket j per window
ARGV[8+2n+2j]   window of bucket j, seconds

Time is Redis's own (now_ms(), from TIME): the hold expires at now + ttl on the server's clock.
Waitlist: while buyers wait for a line's SKU, its available units are set aside for them first
(set_aside_for_waitlist), so a request never takes a unit a waiting buyer is owed.

Returns
  {0, expires_ms, created_ms, price_1, ..., price_n}   held
  {1, status}                              replay of an existing reservation with the same fingerprint
  {-1, sku}                                product not found
  {-2, sku, reason}                        sale not active (paused_globally | paused | recovering | not_started | ended)
  {-3, sku, available, requested, waiting, until_ms, due_bucket}  sold out; waiting = buyers on the SKU's
                                           waitlist; until_ms = ms until its next hold expires (-1 = none
                                           will), so a process caching the refusal knows when it may stop
                                           being true; due_bucket = a hold bucket of the SKU with holds due
                                           that this call could not reach (-1 = none): sweep it, then retry
  {-4, sku, limit, already}                per-user limit exceeded (held + ordered)
  {-8}                                     token reused with a different request
  {-11, argument}                          invalid argument (qty above MAX_QTY included)
  {-13, j, retry_after_ms}                 rate-limit bucket j is over its limit (nothing else changed)
  {-20, sku, buckets}                      the SKU's stock layout is newer than the caller's routing (split,
                                           or quotas now required): route again

Invariant: for every SKU avail + held + sold == total, each >= 0.
Activity: each line also counts the reservation in its stock hash's per-minute window
('rm' = minute number now_ms // 60000, 'rc' = count in that minute, 'rp' = count in the minute before),
so admins can read reservations per minute without another key.
Rate limits: every call counts once in each bucket (INCR; EXPIRE when the window opens), the same
fixed-window counters Flask-Limiter keeps for the other endpoints, so admission and the hold are one
round trip. A call over any bucket's limit is refused before the reservation is looked at.
]]
--@include "clock"
--@include "common"

local token, user, fingerprint = ARGV[1], ARGV[2], ARGV[3]
local ttl, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
if not is_count(ARGV[6]) then return {-11, 'rate_limits'} end
local m = tonumber(ARGV[6])
local parts = ARGV[7] or ''
local routed = ARGV[8]
local n = (#ARGV - 8 - 2 * m) / 2
if #parts > 200 or not string.match(parts, '^[%d,]*$') then return {-11, 'parts'} end

if token == '' or user == '' then return {-11, 'id'} end
if not (is_count(ARGV[4]) and is_count(ARGV[5])) or ttl < 1 then return {-11, 'ttl'} end
if n < 1 or n ~= math.floor(n) or #KEYS ~= 5 + 5 * n + m then return {-11, 'items'} end
if routed ~= '' and (#routed ~= n or not string.match(routed, '^[012]+$')) then return {-11, 'routed'} end

for j = 1, m do
  local limit, window = ARGV[7 + 2 * n + 2 * j], ARGV[8 + 2 * n + 2 * j]
  if not (is_count(limit) and is_count(window)) or tonumber(window) < 1 then return {-11, 'rate_limits'} end
end
local skus, qtys, seen = {}, {}, {}
for i = 1, n do
  local sku, qty = ARGV[7 + 2 * i], ARGV[8 + 2 * i]
  if not is_qty(qty, 1) then return {-11, 'qty'} end
  if seen[sku] then return {-11, 'duplicate_sku'} end
  seen[sku] = true
  skus[i], qtys[i] = sku, tonumber(qty)
end

for j = 1, m do
  local bucket = KEYS[4 + 5 * n + j]
  local count = redis.call('INCR', bucket)
  if count == 1 then redis.call('EXPIRE', bucket, ARGV[8 + 2 * n + 2 * j]) end
  if count > tonumber(ARGV[7 + 2 * n + 2 * j]) then
    return {-13, j, math.max(redis.call('PTTL', bucket), 1)}
  end
end

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local existing = record_get(R, 'fp', 'st')
if existing[2] then
  local fp = existing[1] or ''  -- a packed record keeps the fingerprint's first 16 digits
  if fp ~= fingerprint and not (R.packed and #fp == 16 and string.sub(fingerprint, 1, 16) == fp) then
    return {-8}
  end
  return {1, existing[2]}
end

local now = R.now
local globally = redis.call('GET', KEYS[4])
local prices, windows, buyer_modes, hold_modes = {}, {}, {}, {}
local function read_line(stock_key)
  return redis.call('HMGET', stock_key, 'avail', 'limit', 'paused', 'start', 'end', 'price', 'rm', 'rc', 'wn', 'wq',
    'owe', 'bk', 'bq', 'wl', 'bn', 'hn', 'he')
end
-- Lazy expiry, every line before any is judged: stock of abandoned holds comes back even when no
-- sweeper runs, and whatever this call answers.
local lines = {}
for i = 1, n do
  local base = 4 + 5 * (i - 1)
  lines[i] = read_line(KEYS[base + 1])
  if reclaim_expired(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4], now, 1000, nil, lines[i][17]) > 0 then
    lines[i] = read_line(KEYS[base + 1])
  end
end
for i = 1, n do
  local base = 4 + 5 * (i - 1)
  local s = lines[i]
  if not s[1] then return {-1, skus[i]} end
  local route = routed ~= '' and string.sub(routed, i, i) or '0'
  if (s[12] and route == '0') or (s[13] == '1' and route ~= '2') then return {-20, skus[i], to_int(s[12])} end
  local reason = closed_reason(globally, s[3], s[4], s[5], now)
  if reason then return {-2, skus[i], reason} end
  local avail = tonumber(s[1])
  if avail > 0 and (to_int(s[10]) > to_int(s[11]) or s[14]) then  -- buyers wait: they come first (admin adds,
                                                                     -- resumes; 'wl': in bucket 0's queue)
    avail = avail - set_aside_for_waitlist(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])
  end
  if avail < qtys[i] then
    -- how long this refusal stays true at most: until the SKU's next hold expires (-1: none will)
    local true_for = -1
    local score = first_hold_expiry(KEYS[base + 1], KEYS[base + 2])
    if score and score < math.huge then true_for = math.max(score - now, 0) end
    local due = true_for == 0 and s[16] == 'z' and due_bucket(KEYS[base + 2], now) or -1
    return {-3, skus[i], avail, qtys[i], to_int(s[9]), true_for, due}
  end
  local limit = to_int(s[2])
  if limit > 0 then
    local already = buyer_units(KEYS[base + 1], KEYS[base + 3], user, s[15], s[16])
    if already + qtys[i] > limit then return {-4, skus[i], limit, already} end
  end
  prices[i] = to_int(s[6])
  windows[i] = {to_int(s[7]), to_int(s[8])}
  buyer_modes[i], hold_modes[i] = s[15], s[16]
end

local expires = now + ttl
local minute = math.floor(now / 60000)
local record = {'u', user, 'st', 'held', 'exp', expires, 'ct', now, 'n', n}
if fingerprint ~= '' then  -- only a keyed request can come again under the same token
  record[#record + 1] = 'fp'
  record[#record + 1] = fingerprint
end
if parts ~= '' then
  record[#record + 1] = 'parts'
  record[#record + 1] = parts
end
for i = 1, n do
  local base = 4 + 5 * (i - 1)
  redis.call('HINCRBY', KEYS[base + 1], 'avail', -qtys[i])
  redis.call('HINCRBY', KEYS[base + 1], 'held', qtys[i])
  if hold_put(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4], token, qtys[i], user, expires,
      hold_modes[i]) then
    -- moving light holds out may have counted their buyers, 'bn' with them
    add_buyer_units(KEYS[base + 1], KEYS[base + 3], user, qtys[i], hold_modes[i] == 'z' and buyer_modes[i] or nil)
  end
  index_hold_expiry(KEYS[2], KEYS[base + 5], skus[i], expires)
  redis.call('SADD', KEYS[3], skus[i])
  if windows[i][1] == minute then
    redis.call('HINCRBY', KEYS[base + 1], 'rc', 1)
  else
    local previous = 0
    if windows[i][1] == minute - 1 then previous = windows[i][2] end
    redis.call('HSET', KEYS[base + 1], 'rm', minute, 'rc', 1, 'rp', previous)
  end
  record[#record + 1] = 'l:' .. skus[i]
  record[#record + 1] = qtys[i]
  record[#record + 1] = 'p:' .. skus[i]
  record[#record + 1] = prices[i]
end
local packed = n == 1 and parts == '' and pack_hold(user, expires, now, expires + retention, skus[1], qtys[1],
  prices[1], fingerprint ~= '' and fingerprint or nil)
create_record(R, record, packed, ttl + retention)

local reply = {0, expires, now}
for i = 1, n do reply[#reply + 1] = prices[i] end
return reply
