-- Shared helpers, spliced by the loader where a script says: --@include "common" (own line).
-- Nothing here touches a key that the including script did not receive in KEYS.

-- Largest quantity of one line (inventory.validation.MAX_QTY). Lua prints bigger numbers in
-- exponent form ('1e+14'), which a hold member could not be parsed back from.
local MAX_QTY = 1000000

local function is_count(v)
  return v ~= nil and string.match(v, '^%d+$') ~= nil and string.len(v) <= 15
end

-- A line quantity: an integer from low (0 or 1) to MAX_QTY.
local function is_qty(v, low)
  return v ~= nil and string.match(v, '^%d+$') ~= nil and string.len(v) <= 7
    and tonumber(v) >= low and tonumber(v) <= MAX_QTY
end

local function to_int(v)
  return tonumber(v) or 0
end

-- A hold member of a SKU's holds zset is "<reservation token>|<qty>|<user>".
local function hold_member(token, qty, user)
  return token .. '|' .. qty .. '|' .. user
end

local function parse_member(member)
  local token, qty, user = string.match(member, '^([^|]+)|(%d+)|(.*)$')
  return token, tonumber(qty), user
end

-- Adds delta to a user's units of one SKU; drops the field at zero to keep the hash small.
local function add_buyer_units(buyers_key, user, delta)
  local units = redis.call('HINCRBY', buyers_key, user, delta)
  if units <= 0 then redis.call('HDEL', buyers_key, user) end
end

-- Sold-out caches (inventory/soldout.py): every API process forgets what it learned about a SKU when
-- its stock key is announced, so a unit that becomes available again is seen at once. Announced on the
-- key's own name (no key is built here); nothing is announced while no unit is available.
local function announce_available(stock_key)
  if to_int(redis.call('HGET', stock_key, 'avail')) > 0 then redis.call('PUBLISH', stock_key, '1') end
end

-- Waitlist (lua/offer_waitlist, inventory/waitlist.py): while buyers wait for a sold-out SKU (stock
-- hash 'wq' = units they still want), units that come back are set aside for them in the same call
-- that returns them, never made available to the next request: they stay 'held' under the SKU's pool
-- hold (member "~wl|<units>|", never expiring; 'owe' = its units) until offer_waitlist turns them into
-- holds for the buyers at the head of the queue. A bucket of a split SKU flagged 'wl' (its product's
-- waitlist, kept in bucket 0, is open: inventory/bucket_waitlist.py) sets aside every unit it gets back,
-- and the sweeper moves them to bucket 0.
local POOL = '~wl'

local function set_aside_for_waitlist(stock_key, holds_key)
  local s = redis.call('HMGET', stock_key, 'avail', 'wq', 'owe', 'wl')
  local owe = to_int(s[3])
  local want = s[4] and 1e15 or to_int(s[2])
  local units = math.min(to_int(s[1]), want - owe)
  if units <= 0 then return 0 end
  if owe > 0 then redis.call('ZREM', holds_key, hold_member(POOL, owe, '')) end
  redis.call('ZADD', holds_key, '+inf', hold_member(POOL, owe + units, ''))
  redis.call('HINCRBY', stock_key, 'avail', -units)
  redis.call('HINCRBY', stock_key, 'held', units)
  redis.call('HSET', stock_key, 'owe', owe + units)
  return units
end

-- The expiry index (one zset per partition) lists each SKU with open holds once, as member
-- 's:<sku>' (tokens are [0-9a-z] only, so no token can look like one), scored at or before its
-- earliest hold expiry: LT keeps the earliest. The sweeper gives back the SKU's due holds and moves
-- the entry to its next hold (lua/sweep_holds). A score may be early (a hold extended, released or
-- reclaimed lazily since), never late. Tokens are listed there only for payment deadlines, pinned
-- parts and holds taken before this layout.
local function index_hold_expiry(expiries_key, sku, expires)
  redis.call('ZADD', expiries_key, 'LT', expires, 's:' .. sku)
end

-- Gives back every hold of one SKU whose expiry has passed (expired means now >= expiry).
-- The member is removed and its units returned in one step, so a hold is reclaimed exactly once.
-- With waitinfo_key (waitlist scripts), a lapsed offer's entry goes with its hold.
local function reclaim_expired(stock_key, holds_key, buyers_key, now, batch, waitinfo_key)
  local due = redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, batch)
  local freed, holds = 0, 0
  for _, member in ipairs(due) do
    local token, qty, user = parse_member(member)
    if qty then
      redis.call('ZREM', holds_key, member)
      add_buyer_units(buyers_key, user, -qty)
      freed, holds = freed + qty, holds + 1
      if waitinfo_key then
        local entry = redis.call('HGET', waitinfo_key, 'u:' .. user)
        if entry and string.sub(entry, 1, 2) == 'o|' and string.sub(entry, -#token) == token then
          redis.call('HDEL', waitinfo_key, 'u:' .. user)
        end
      end
    end
  end
  if freed > 0 then
    redis.call('HINCRBY', stock_key, 'avail', freed)
    redis.call('HINCRBY', stock_key, 'held', -freed)
    set_aside_for_waitlist(stock_key, holds_key)
    announce_available(stock_key)
  end
  return freed, holds
end

-- Why a SKU cannot be sold now, or nil when its sale is open. `globally` is the global switch.
local function closed_reason(globally, paused, starts, ends, now)
  if paused == 'r' then return 'recovering' end
  if globally == '1' then return 'paused_globally' end
  if paused == '1' then return 'paused' end
  local s, e = to_int(starts), to_int(ends)
  if s > 0 and now < s then return 'not_started' end
  if e > 0 and now >= e then return 'ended' end
  return nil
end

-- Reads a reservation's lines as {sku -> qty} and verifies they are exactly the SKUs in ARGV.
local function lines_match(rkey, count, skus)
  if to_int(count) ~= #skus then return false end
  for _, sku in ipairs(skus) do
    if not redis.call('HGET', rkey, 'l:' .. sku) then return false end
  end
  return true
end

-- "sku:qty:price,..." for the outbox, from parallel arrays.
local function encode_lines(skus, qtys, prices)
  local parts = {}
  for i, sku in ipairs(skus) do
    parts[i] = sku .. ':' .. qtys[i] .. ':' .. prices[i]
  end
  return table.concat(parts, ',')
end

-- Returns a held line's units: removes the hold once, so stock comes back exactly once.
local function release_hold(stock_key, holds_key, buyers_key, token, qty, user)
  if redis.call('ZREM', holds_key, hold_member(token, qty, user)) == 1 then
    redis.call('HINCRBY', stock_key, 'avail', qty)
    redis.call('HINCRBY', stock_key, 'held', -qty)
    add_buyer_units(buyers_key, user, -qty)
    set_aside_for_waitlist(stock_key, holds_key)
    announce_available(stock_key)
    return qty
  end
  return 0
end

-- Line helpers below address the stock/holds/buyers keys of line i as
-- KEYS[first + 3i - 2], KEYS[first + 3i - 1], KEYS[first + 3i].

-- Quantities and unit prices of the named lines, from the reservation record.
local function read_lines(rkey, skus)
  local qtys, prices = {}, {}
  for i, sku in ipairs(skus) do
    local v = redis.call('HMGET', rkey, 'l:' .. sku, 'p:' .. sku)
    qtys[i], prices[i] = tonumber(v[1]), to_int(v[2])
  end
  return qtys, prices
end

-- True while every line's hold is still present (not reclaimed by lazy expiry).
-- A line of quantity 0 (named but not held, as amend's new lines) has no hold to check.
local function holds_intact(first, token, owner, qtys)
  for i = 1, #qtys do
    if qtys[i] > 0 and not redis.call('ZSCORE', KEYS[first + 3 * i - 1], hold_member(token, qtys[i], owner)) then
      return false
    end
  end
  return true
end

local function release_lines(first, dirty_key, token, owner, skus, qtys)
  local returned = 0
  for i = 1, #skus do
    if qtys[i] > 0 then
      local b = first + 3 * i
      returned = returned + release_hold(KEYS[b - 2], KEYS[b - 1], KEYS[b], token, qtys[i], owner)
      redis.call('SADD', dirty_key, skus[i])
    end
  end
  return returned
end

-- held -> sold for every line; callers check holds_intact first.
-- A SKU with a per-user limit keeps the ordered units in the buyer's count (recorded as 'b:<sku>'
-- so a failed payment takes back exactly those); without a limit the count only ever holds open
-- holds, so the buyers hash stays the size of the open work, not of the sale's history.
local function sell_lines(first, dirty_key, rkey, token, owner, skus, qtys)
  for i = 1, #skus do
    local b = first + 3 * i
    redis.call('ZREM', KEYS[b - 1], hold_member(token, qtys[i], owner))
    redis.call('HINCRBY', KEYS[b - 2], 'held', -qtys[i])
    redis.call('HINCRBY', KEYS[b - 2], 'sold', qtys[i])
    if to_int(redis.call('HGET', KEYS[b - 2], 'limit')) > 0 then
      redis.call('HSET', rkey, 'b:' .. skus[i], qtys[i])
    else
      add_buyer_units(KEYS[b], owner, -qtys[i])
    end
    redis.call('SADD', dirty_key, skus[i])
  end
end

-- sold -> available for every line of an order whose payment failed.
local function unsell_lines(first, dirty_key, rkey, owner, skus, qtys)
  for i = 1, #skus do
    local b = first + 3 * i
    redis.call('HINCRBY', KEYS[b - 2], 'sold', -qtys[i])
    redis.call('HINCRBY', KEYS[b - 2], 'avail', qtys[i])
    set_aside_for_waitlist(KEYS[b - 2], KEYS[b - 1])
    announce_available(KEYS[b - 2])
    local counted = to_int(redis.call('HGET', rkey, 'b:' .. skus[i]))
    if counted > 0 then
      add_buyer_units(KEYS[b], owner, -counted)
      redis.call('HDEL', rkey, 'b:' .. skus[i])
    end
    redis.call('SADD', dirty_key, skus[i])
  end
end

-- A held reservation whose time is up (or whose holds were reclaimed): whatever is still held
-- goes back, exactly once, and the record says 'expired' from now on.
local function expire_reservation(first, rkey, expiries_key, dirty_key, token, owner, skus, qtys, now)
  local returned = release_lines(first, dirty_key, token, owner, skus, qtys)
  redis.call('HSET', rkey, 'st', 'expired', 'end', now)
  redis.call('ZREM', expiries_key, token)
  return returned
end

-- A user's order index: newest orders by creation time, trimmed to the retention window and
-- expiring with its newest order, so it never outlives the records it points to.
local function index_order(orders_key, order_id, now, retention)
  redis.call('ZADD', orders_key, now, order_id)
  redis.call('ZREMRANGEBYSCORE', orders_key, '-inf', '(' .. (now - retention))
  redis.call('PEXPIRE', orders_key, retention)
end

-- Transactional outbox: the event is appended in the same script call as the state change.
-- rid is the request id of the call that caused it ('' = none), so one id finds the entry.
local function emit_order_event(outbox_key, kind, order_id, token, owner, lines, now, event_id, rid)
  return redis.call('XADD', outbox_key, '*', 'type', kind, 'order', order_id, 'res', token,
    'user', owner, 'lines', lines, 'event', event_id, 'ts', now, 'rid', rid or '')
end
