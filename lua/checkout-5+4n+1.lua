--[[
checkout: turn an open, unexpired reservation into an order awaiting payment.
Stock moves held -> sold and an 'order_created' event is appended to the outbox stream
in this same call, so the order is durable in Redis the moment checkout answers.

KEYS[1]        reservation record (hash)
KEYS[2]        expiry index (zset)
KEYS[3]        dirty SKU set
KEYS[4]        outbox stream
KEYS[5]        the user's order index (zset order id -> created ms)
KEYS[5+4i-3]   stock hash of line i
KEYS[5+4i-2]   holds zset of line i
KEYS[5+4i-1]   buyers hash of line i
KEYS[5+4i]     the token's hold bucket on line i's SKU (hash; lua/includes/common.lua hold_put)
KEYS[6+4n]     record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token
ARGV[2]        user id ('' = any user)
ARGV[3]        order id to assign
ARGV[4]        order record retention, ms
ARGV[4+i]      sku of line i (must be exactly the reservation's lines)
ARGV[5+n]      request id written to the outbox entry ('' = none; at most 128 visible ASCII characters)
ARGV[6+n]      abort generation the caller saw before pinning the other parts of a multi-part
               reservation ('' = single part: not checked); a different 'abort' count means a sweeper
               gave up on that attempt and unpinned them, so this checkout must not commit
ARGV[7+n]      payment window, ms: the order's payment deadline is now + this, and the token stays in the
               expiry index at that score so the sweeper can expire the payment ('0' = no deadline of its
               own: a part of a multi-part reservation, whose home decides)

Time is Redis's own (now_ms()). Checkout acts only while the reservation is unexpired on that clock
and every hold is still in its holds index; otherwise the reservation is expired here (remaining
holds back exactly once). A pinned part of a multi-part reservation (pin_part) is checked out even
past its expiry: its holds were kept for exactly this. The user's order index is trimmed to the retention and expires with it.
The payment deadline ('pdl') is on the same clock; record_payment expires an unpaid order after it.

Returns
  {0, order_id}                            checked out now
  {1, order_id, status}                    already checked out: the existing order
  {-5}                                     no such reservation (or another user's)
  {-6}                                     reservation expired (its remaining holds are released)
  {-7, status}                             reservation released or closed
  {-11, argument}                          invalid argument
  {-12}                                    lines in ARGV are stale: re-read and retry

Invariant: for every SKU avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"

local token, user, order_id = ARGV[1], ARGV[2], ARGV[3]
local retention = tonumber(ARGV[4])
local n = #ARGV - 7
local rid, generation, pay_window = ARGV[5 + n], ARGV[6 + n], tonumber(ARGV[7 + n])
if not is_count(ARGV[4]) then return {-11, 'retention'} end
if n < 0 or not is_count(ARGV[7 + n]) then return {-11, 'payment_window'} end
if n < 0 or #rid > 128 or string.find(rid, '[^!-~]') then return {-11, 'request_id'} end
if order_id == '' or #KEYS ~= 6 + 4 * n then return {-11, 'items'} end

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local rec = record_get(R, 'u', 'st', 'exp', 'n', 'oid', 'pin', 'abort')
if not rec[1] or (user ~= '' and rec[1] ~= user) then return {-5} end
if rec[5] then return {1, rec[5], rec[2]} end
if rec[2] == 'expired' then return {-6} end
if rec[2] ~= 'held' then return {-7, rec[2]} end
if generation ~= '' and (rec[7] or '0') ~= generation then return {-12} end

local skus = {}
for i = 1, n do skus[i] = ARGV[4 + i] end
if not lines_match(R, skus) then return {-12} end
local owner = rec[1]
local qtys, prices = read_lines(R, skus)

local now = R.now
if (now >= tonumber(rec[3]) and not rec[6]) or not holds_intact(5, token, owner, qtys) then
  expire_reservation(5, R, KEYS[2], KEYS[3], token, owner, skus, qtys, now)
  return {-6}
end

sell_lines(5, KEYS[3], R, token, owner, skus, qtys)
emit_order_event(KEYS[4], 'order_created', order_id, token, owner,
  encode_lines(skus, qtys, prices), now, '', rid)
record_set(R, 'st', 'pending_payment', 'oid', order_id, 'co', now)
if rec[6] then record_del(R, 'pin', 'pinx') end
record_keep(R, retention)
index_order(KEYS[5], order_id, now, retention)
if pay_window > 0 then
  record_set(R, 'pdl', now + pay_window)
  redis.call('ZADD', KEYS[2], now + pay_window, token)
else
  redis.call('ZREM', KEYS[2], token)
end
return {0, order_id}
