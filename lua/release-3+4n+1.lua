--[[
release: give back every held unit of a reservation, exactly once.
Used by the buyer (cancel) and by the expiry sweep (expire, only once the expiry has passed).

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
ARGV[3]        mode: 'cancel' | 'expire'
ARGV[4]        record retention after release, ms
ARGV[4+i]      sku of line i (must be exactly the reservation's lines)

Time is Redis's own (now_ms()): 'expire' acts only once the expiry has passed on that clock, so a
sweeper whose host clock runs ahead cannot cut a hold short. Each hold returns its units only if it
is still in its SKU's holds index (removed in the same step), so stock comes back exactly once even
when lazy expiry reclaimed some of the holds first.

Returns
  {0, status, units_returned}              released now ('released' or 'expired')
  {1, status}                              already released or expired: nothing to do
  {2}                                      mode 'expire' but not due yet
  {3}                                      mode 'expire' on a pinned part of a multi-part checkout past
                                           its pin window: its home decides (inventory/multipart.py)
  {-5}                                     no such reservation (or another user's)
  {-7, status}                             already checked out or paid: not releasable
  {-11, argument}                          invalid argument
  {-12}                                    lines in ARGV are stale: re-read and retry

Invariant: for every SKU avail + held + sold == total, each >= 0.
]]
--@include "clock"
--@include "common"

local token, user, mode = ARGV[1], ARGV[2], ARGV[3]
local retention = tonumber(ARGV[4])
local n = #ARGV - 4
if not is_count(ARGV[4]) then return {-11, 'retention'} end
if mode ~= 'cancel' and mode ~= 'expire' then return {-11, 'mode'} end
if #KEYS ~= 4 + 4 * n then return {-11, 'items'} end

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local rec = record_get(R, 'u', 'st', 'exp', 'n', 'pin', 'pinx')
if not rec[1] then
  redis.call('ZREM', KEYS[2], token)
  return {-5}
end
if user ~= '' and rec[1] ~= user then return {-5} end
if rec[2] == 'released' or rec[2] == 'expired' or rec[2] == 'payment_failed' or rec[2] == 'payment_expired' then
  return {1, rec[2]}
end
if rec[2] ~= 'held' then return {-7, rec[2]} end
local now = R.now
local expired = now >= tonumber(rec[3])
if mode == 'expire' and rec[5] then
  if now >= tonumber(rec[6]) then return {3} end
  return {2}
end
if mode == 'expire' and not expired then return {2} end

local skus = {}
for i = 1, n do skus[i] = ARGV[4 + i] end
if not lines_match(R, skus) then return {-12} end

local qtys = read_lines(R, skus)
local returned = release_lines(3, KEYS[3], token, rec[1], skus, qtys)
local status = expired and 'expired' or 'released'
record_set(R, 'st', status, 'end', now)
if rec[5] then record_del(R, 'pin', 'pinx') end
record_keep(R, retention)
redis.call('ZREM', KEYS[2], token)
return {0, status, returned}
