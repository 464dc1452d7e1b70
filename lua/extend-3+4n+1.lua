--[[
extend: move an open hold's expiry, or a pending order's payment deadline, later; once per extension id.
Used by the storefront (POST /v1/reservations/<id>/extend) and by the payment provider's
'requires_action' webhook (a buyer in a slow 3-D Secure challenge keeps the hold or the order).

KEYS[1]        reservation record (hash of its own)
KEYS[2]        expiry index (zset)
KEYS[3]        dirty SKU set
KEYS[3+4i-3]   stock hash of line i
KEYS[3+4i-2]   holds zset of line i
KEYS[3+4i-1]   buyers hash of line i
KEYS[3+4i]     the token's hold bucket on line i's SKU (hash; lua/includes/common.lua hold_put)
KEYS[4+4n]     record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token
ARGV[2]        user id ('' = any user)
ARGV[3]        extension id (1-255 characters; the same id again is a replay)
ARGV[4]        the new expiry or deadline is now + this, ms (>= 1)
ARGV[5]        hold lifetime cap, ms: a hold never expires later than its creation + this
ARGV[6]        payment lifetime cap, ms: an order's deadline never passes its checkout + this
ARGV[7]        '1' = clamp to the cap (the provider's extension), '0' = refuse past the cap
ARGV[8]        '0' for a home record (its cap and count decide); for another part of a multi-part
               reservation, the home's new expiry in ms, which the part takes exactly (a part's own
               creation time is that of the amend that added it, so its own cap would be wrong)
ARGV[8+i]      sku of line i (must be exactly the reservation's lines)

Time is Redis's own (now_ms()). Nothing ever gets shorter: a target before the current expiry keeps the
current one (and is not counted as an extension). A hold is extended only while it is unexpired on that
clock and every hold is still in its holds index (otherwise it is expired here, its holds back exactly
once); each hold's score in its SKU's holds zset moves with the record, so lazy expiry agrees. An order
is extended only before its deadline; after it, the sweeper or the next payment result expires it.
A pinned part (a multi-part checkout in progress) is not extended: its home decides.

Returns
  {0, kind, until_ms, count}        extended now ('hold' | 'payment'); count = extensions so far
  {1, kind, until_ms, count}        this extension id was already applied, or the target was not later
  {-5}                              no such reservation (or another user's)
  {-6}                              the hold has expired, or the payment deadline has passed
  {-7, status}                      not extendable in this status (released, paid, checking_out, ...)
  {-11, argument}                   invalid argument
  {-12}                             lines in ARGV are stale: re-read and retry
  {-15, cap_ms, count}              past the cap (or more than MAX_EXTENSIONS extensions)

Invariant: for every SKU avail + held + sold == total, each >= 0 (only expiries move here).
]]
--@include "clock"
--@include "common"

local MAX_EXTENSIONS = 20
local token, user, ext_id = ARGV[1], ARGV[2], ARGV[3]
local n = #ARGV - 8
if n < 0 or #KEYS ~= 4 + 4 * n then return {-11, 'items'} end
if ext_id == '' or #ext_id > 255 then return {-11, 'extension_id'} end
for i = 4, 6 do
  if not is_count(ARGV[i]) or tonumber(ARGV[i]) < 1 then return {-11, ({'seconds', 'hold_cap', 'payment_cap'})[i - 3]} end
end
if ARGV[7] ~= '0' and ARGV[7] ~= '1' then return {-11, 'clamp'} end
if not is_count(ARGV[8]) then return {-11, 'until'} end
local follow = tonumber(ARGV[8])
local by, hold_cap, pay_cap, clamp = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local rec = record_get(R, 'u', 'st', 'exp', 'n', 'ct', 'co', 'pdl', 'pin', 'ext', 'x:' .. ext_id)
if not rec[1] or (user ~= '' and rec[1] ~= user) then return {-5} end
local status, count = rec[2], tonumber(rec[9] or '0')
local kind = status == 'held' and 'hold' or 'payment'
if rec[10] then
  return {1, kind, tonumber(status == 'held' and rec[3] or rec[7]), count}
end
if status == 'expired' then return {-6} end
if status ~= 'held' and not (status == 'pending_payment' and rec[7]) then return {-7, status} end
if rec[8] then return {-7, 'checking_out'} end

local skus = {}
for i = 1, n do skus[i] = ARGV[8 + i] end
if not lines_match(R, skus) then return {-12} end
local owner = rec[1]
local now = R.now

local current, cap
if kind == 'hold' then
  current, cap = tonumber(rec[3]), tonumber(rec[5]) + hold_cap
  local qtys = read_lines(R, skus)
  if now >= current or not holds_intact(3, token, owner, qtys) then
    expire_reservation(3, R, KEYS[2], KEYS[3], token, owner, skus, qtys, now)
    return {-6}
  end
else
  current, cap = tonumber(rec[7]), tonumber(rec[6]) + pay_cap
  if now >= current then return {-6} end
end

local target = follow
if follow == 0 then
  target = now + by
  if target > cap then
    if not clamp or current >= cap then return {-15, cap, count} end
    target = cap
  end
  if count >= MAX_EXTENSIONS then return {-15, cap, count} end
end
if target <= current then return {1, kind, current, count} end

if kind == 'hold' then
  local qtys = read_lines(R, skus)
  for i = 1, n do
    if qtys[i] > 0 then
      hold_retime(KEYS[3 + 4 * i - 3], KEYS[3 + 4 * i - 2], KEYS[3 + 4 * i], token, qtys[i], owner, target)
    end
  end
  record_set(R, 'exp', target)
  redis.call('ZADD', KEYS[2], 'XX', target, token)  -- listed by token only if taken before the per-SKU index
else
  record_set(R, 'pdl', target)
  redis.call('ZADD', KEYS[2], target, token)
end
-- The record outlives what it describes by the same margin as before (its retention), however far
-- extensions move the hold or the deadline.
local left = record_ttl(R)
record_set(R, 'ext', count + 1, 'x:' .. ext_id, target)
if left > 0 then record_keep(R, left + (target - current)) end
return {0, kind, target, count + 1}
