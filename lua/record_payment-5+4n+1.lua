--[[
record_payment: apply a payment provider's result ('paid' | 'failed') to a reservation or its order,
once per event id; or ('expire') end an order whose payment deadline has passed.

  status before     paid                                  failed                  expire
  held (open)       checkout + paid in one step           released, stock back    unchanged
                                                          -> payment_failed
  held (expired)    holds released        -> refund_required   holds released -> expired   unchanged
  pending_payment   paid                                  sold units back         unchanged until due
                                                          -> payment_failed
  pending_payment,  sold units back -> payment_expired,   sold units back         sold units back
  deadline passed   then refund_required (never oversells) -> payment_expired      -> payment_expired
  released/expired  refund_required (never oversells)     unchanged               unchanged
  payment_failed    refund_required (its stock went back) unchanged               unchanged
  payment_expired   refund_required (its stock went back) unchanged               unchanged
  paid              unchanged                             unchanged (logged)      unchanged
  refund_required   unchanged                             unchanged               unchanged

A pending order's deadline is its 'pdl' field (set by checkout); an order part without one (a part of
a multi-part order) is expired by 'expire' at once: only its home's deadline decides, and the caller
(inventory/multipart.py) asks only once the home expired. The deadline is enforced lazily here (any
result arriving after it) and by the sweeper ('expire', from the expiry index).

KEYS[1]        reservation record (hash of its own)
KEYS[2]        expiry index (zset)
KEYS[3]        dirty SKU set
KEYS[4]        outbox stream
KEYS[5]        the owner's order index (zset)
KEYS[5+4i-3]   stock hash of line i
KEYS[5+4i-2]   holds zset of line i
KEYS[5+4i-1]   buyers hash of line i
KEYS[5+4i]     the token's hold bucket on line i's SKU (hash; lua/includes/common.lua hold_put)
KEYS[6+4n]     record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token
ARGV[2]        payment event id (ignored for 'expire')
ARGV[3]        result: 'paid' | 'failed' | 'expire'
ARGV[4]        order id to assign if the reservation has none yet
ARGV[5]        order record retention, ms
ARGV[5+i]      sku of line i (must be exactly the reservation's lines)
ARGV[6+n]      request id written to the outbox entries ('' = none; at most 128 visible ASCII characters)

Time is Redis's own (now_ms()). A held reservation counts as open only while it is unexpired on
that clock and every hold is still in its holds index (one truth per hold): a 'paid' for a hold
that lazy expiry already reclaimed becomes refund_required, never a sale of stock that went back.

Returns
  {0, status_after, order_id_or_empty}     applied (status may be unchanged)
  {1, status_now, order_id_or_empty}       this event id was already applied with the same result
  {2, status_now, order_id_or_empty}       'expire' before the deadline: nothing to do yet
  {-5}                                     no such reservation
  {-8}                                     this event id was applied with another result
  {-11, argument}                          invalid argument
  {-12}                                    lines in ARGV are stale: re-read and retry

Invariant: for every SKU avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"

local token, event_id, result, new_order_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retention = tonumber(ARGV[5])
local n = #ARGV - 6
local rid = ARGV[6 + n]
if not is_count(ARGV[5]) then return {-11, 'retention'} end
if n < 0 or #rid > 128 or string.find(rid, '[^!-~]') then return {-11, 'request_id'} end
if result ~= 'paid' and result ~= 'failed' and result ~= 'expire' then return {-11, 'status'} end
if event_id == '' and result ~= 'expire' then return {-11, 'event_id'} end
if new_order_id == '' or #KEYS ~= 6 + 4 * n then return {-11, 'items'} end

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local rec = record_get(R, 'u', 'st', 'exp', 'n', 'oid', 'pdl')
if not rec[1] then
  if result == 'expire' then redis.call('ZREM', KEYS[2], token) end
  return {-5}
end
local prior = result ~= 'expire' and R.f['ev:' .. event_id]
if prior then
  if prior ~= result then return {-8} end
  return {1, rec[2], rec[5] or ''}
end

local skus = {}
for i = 1, n do skus[i] = ARGV[5 + i] end
if not lines_match(R, skus) then return {-12} end
local owner, status, order_id = rec[1], rec[2], rec[5]
local qtys, prices = read_lines(R, skus)
local lines = encode_lines(skus, qtys, prices)
local now = R.now

local function open_order(kind)
  order_id = order_id or new_order_id
  record_set(R, 'oid', order_id)
  index_order(KEYS[5], order_id, now, retention)
  record_keep(R, retention)
  emit_order_event(KEYS[4], kind, order_id, token, owner, lines, now, event_id, rid)
end

local deadline = tonumber(rec[6])
if status == 'pending_payment' and ((deadline and now >= deadline) or (result == 'expire' and not deadline)) then
  unsell_lines(5, KEYS[3], R, owner, skus, qtys)
  emit_order_event(KEYS[4], 'order_payment_expired', order_id, token, owner, lines, now, '', rid)
  record_set(R, 'st', 'payment_expired', 'pexp', now)
  redis.call('ZREM', KEYS[2], token)
  status = 'payment_expired'
end
if result == 'expire' then
  if status == 'pending_payment' then return {2, status, order_id} end
  if status ~= 'held' then redis.call('ZREM', KEYS[2], token) end
  return {0, status, order_id or ''}
end

local after = status
if status == 'held' then
  redis.call('ZREM', KEYS[2], token)
  local open = now < tonumber(rec[3]) and holds_intact(5, token, owner, qtys)
  if open and result == 'paid' then
    sell_lines(5, KEYS[3], R, token, owner, skus, qtys)
    open_order('order_created')
    emit_order_event(KEYS[4], 'order_paid', order_id, token, owner, lines, now, event_id, rid)
    record_set(R, 'co', now)
    after = 'paid'
  else
    release_lines(5, KEYS[3], token, owner, skus, qtys)
    if result == 'paid' then
      open_order('order_refund_required')
      after = 'refund_required'
    else
      after = open and 'payment_failed' or 'expired'
    end
  end
elseif status == 'pending_payment' then
  redis.call('ZREM', KEYS[2], token)
  if result == 'paid' then
    after = 'paid'
  else
    unsell_lines(5, KEYS[3], R, owner, skus, qtys)
    after = 'payment_failed'
  end
  emit_order_event(KEYS[4], 'order_' .. after, order_id, token, owner, lines, now, event_id, rid)
elseif result == 'paid' and (status == 'released' or status == 'expired' or status == 'payment_failed'
    or status == 'payment_expired') then
  open_order('order_refund_required')
  after = 'refund_required'
end

record_set(R, 'ev:' .. event_id, result, 'st', after)
return {0, after, order_id or ''}
