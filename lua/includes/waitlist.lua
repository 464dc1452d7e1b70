-- Waitlist helpers, spliced where a script says: --@include "waitlist" (after "clock" and "common").
-- A SKU's waitlist is a zset user -> join sequence (first come, first served) and a hash of entries:
--   'u:<user>' = 'w|<qty>|<expires_ms>|<seq>|<token>'            waiting (token: its offer's, chosen at join)
--              = 'o|<units>|<claim_deadline_ms>|<seq>|<token>'    offered: a hold for the buyer
--              = 'c|<units>|<expires_ms>|<seq>|<token>'           claimed: reservation <token>
-- The stock hash counts the waiting buyers ('wn') and the units they want ('wq'); 'owe' and the pool
-- hold are in common.lua (set_aside_for_waitlist).

local function parse_entry(value)
  if not value then return nil end
  local state, qty, at, seq, token = string.match(value, '^(%a)|(%d+)|(%d+)|(%d+)|?(.*)$')
  return state, tonumber(qty), tonumber(at), seq, token
end

local function drop_waiting(stock_key, queue_key, info_key, user, qty)
  redis.call('ZREM', queue_key, user)
  redis.call('HDEL', info_key, 'u:' .. user)
  redis.call('HINCRBY', stock_key, 'wq', -qty)
  redis.call('HINCRBY', stock_key, 'wn', -1)
end

-- Moves the pool from `from` units to `to` units (held either way).
local function resize_pool(holds_key, from, to)
  if from == to then return end
  if from > 0 then redis.call('ZREM', holds_key, hold_member(POOL, from, '')) end
  if to > 0 then redis.call('ZADD', holds_key, '+inf', hold_member(POOL, to, '')) end
end

-- Units set aside beyond what the waiting buyers still want go back to 'avail'.
local function return_surplus(stock_key, holds_key, queue_key)
  if redis.call('ZCARD', queue_key) == 0 then redis.call('HSET', stock_key, 'wq', 0, 'wn', 0) end
  local s = redis.call('HMGET', stock_key, 'owe', 'wq')
  local owe, want = to_int(s[1]), math.max(to_int(s[2]), 0)
  if owe <= want then return 0 end
  resize_pool(holds_key, owe, want)
  redis.call('HSET', stock_key, 'owe', want)
  redis.call('HINCRBY', stock_key, 'avail', owe - want)
  redis.call('HINCRBY', stock_key, 'held', want - owe)
  announce_available(stock_key)
  return owe - want
end

-- Drops waiting entries at the head whose time ran out (entries expire in join order).
local function drop_expired_head(stock_key, queue_key, info_key, now)
  for _ = 1, 100 do
    local head = redis.call('ZRANGE', queue_key, 0, 0)
    if #head == 0 then return end
    local state, qty, expires = parse_entry(redis.call('HGET', info_key, 'u:' .. head[1]))
    if state == 'w' and now < expires then return end
    if state == 'w' then drop_waiting(stock_key, queue_key, info_key, head[1], qty)
    else redis.call('ZREM', queue_key, head[1]) end
  end
end

-- Turns set-aside units into offers for the buyers at the head of the queue, in join order: each gets
-- a hold of min(wanted, owed, what their per-user limit leaves) that lapses at now + claim_ms, when it
-- comes back through reclaim_expired and passes to the next buyer. Nothing is offered while the sale
-- is closed (paused, globally paused, recovering, outside its window): the units stay set aside.
local function make_offers(stock_key, holds_key, buyers_key, queue_key, info_key, globally, now, claim_ms)
  local s = redis.call('HMGET', stock_key, 'owe', 'limit', 'paused', 'start', 'end')
  if closed_reason(globally, s[3], s[4], s[5], now) then return 0 end
  local owe, limit = to_int(s[1]), to_int(s[2])
  local before, offered = owe, 0
  for _ = 1, 100 do
    if owe <= 0 then break end
    local head = redis.call('ZRANGE', queue_key, 0, 0)
    if #head == 0 then break end
    local user = head[1]
    local state, qty, expires, seq, token = parse_entry(redis.call('HGET', info_key, 'u:' .. user))
    if state ~= 'w' then
      redis.call('ZREM', queue_key, user)
    else
      drop_waiting(stock_key, queue_key, info_key, user, qty)
      local units = math.min(qty, owe)
      if limit > 0 then units = math.min(units, limit - buyer_units(stock_key, buyers_key, user)) end
      if now < expires and units > 0 then
        local deadline = now + claim_ms
        if hold_put(stock_key, holds_key, buyers_key, nil, token, units, user, deadline) then  -- an offer: no bucket
          add_buyer_units(stock_key, buyers_key, user, units)
        end
        redis.call('HSET', info_key, 'u:' .. user, 'o|' .. units .. '|' .. deadline .. '|' .. seq .. '|' .. token)
        owe, offered = owe - units, offered + units
      end
    end
  end
  resize_pool(holds_key, before, owe)
  redis.call('HSET', stock_key, 'owe', owe)
  return offered
end

-- The whole hand-off after anything changed: expired entries out, surplus back, units set aside, offers.
local function serve_waitlist(stock_key, holds_key, buyers_key, queue_key, info_key, globally, now, claim_ms)
  drop_expired_head(stock_key, queue_key, info_key, now)
  return_surplus(stock_key, holds_key, queue_key)
  set_aside_for_waitlist(stock_key, holds_key, buyers_key)
  local offered = make_offers(stock_key, holds_key, buyers_key, queue_key, info_key, globally, now, claim_ms)
  return_surplus(stock_key, holds_key, queue_key)
  return offered
end
