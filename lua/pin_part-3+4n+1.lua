--[[
pin_part: keep (or stop keeping) one part of a multi-part reservation for its checkout.

A reservation whose lines live in several partitions has a home record (the partition its id names)
and one part record per other partition. Checkout pins every part first, then checks out the home
(the decision), then the parts. A pinned part cannot expire or be reclaimed: its holds' scores are
+inf (lazy expiry never reaches them) and the sweeper that finds it due asks its home instead
(inventory/parts.py): checked out there -> the part is checked out; not -> the home's 'abort' count
goes up (so that attempt can no longer commit) and the part is unpinned.

KEYS[1]        the part's reservation record (hash)
KEYS[2]        expiry index of the part's partition (zset token -> expiry ms)
KEYS[3]        dirty SKU set of the part's partition
KEYS[3+4i-3]   stock hash of line i
KEYS[3+4i-2]   holds zset of line i
KEYS[3+4i-1]   buyers hash of line i
KEYS[3+4i]     the token's hold bucket on line i's SKU (hash; lua/includes/common.lua hold_put)
KEYS[4+4n]     record bucket of the token (lua/includes/common.lua open_record)

ARGV[1]        reservation token
ARGV[2]        mode: 'pin' | 'unpin'
ARGV[3]        pin window, ms (the sweeper resolves the part after it)
ARGV[3+i]      sku of line i (must be exactly the part's lines)

Time is Redis's own (now_ms()).

Returns
  {0}                                      pinned (again: the window restarts) or unpinned now
  {1}                                      'unpin' of a part that is not pinned: nothing to do
  {-5}                                     no such part
  {-6}                                     part expired (its remaining holds are released)
  {-7, status}                             part not held (released, expired, checked out)
  {-11, argument}                          invalid argument
  {-12}                                    lines in ARGV are stale: re-read and retry

Invariant: for every SKU avail + held + sold == total, each >= 0 (no counter changes here, except
when an expired part is released).
]]
--@include "clock"
--@include "common"

local token, mode = ARGV[1], ARGV[2]
local n = #ARGV - 3
if mode ~= 'pin' and mode ~= 'unpin' then return {-11, 'mode'} end
if not is_count(ARGV[3]) or tonumber(ARGV[3]) < 1 then return {-11, 'pin_ms'} end
if n < 0 or #KEYS ~= 4 + 4 * n then return {-11, 'items'} end

local R = open_record(KEYS[1], KEYS[#KEYS], token)
local rec = record_get(R, 'u', 'st', 'exp', 'n', 'pin')
if not rec[1] then return {-5} end
if mode == 'unpin' and not rec[5] then return {1} end
if rec[2] ~= 'held' then return {-7, rec[2]} end

local skus = {}
for i = 1, n do skus[i] = ARGV[3 + i] end
if not lines_match(R, skus) then return {-12} end
local owner, expires = rec[1], tonumber(rec[3])
local qtys = read_lines(R, skus)
local now = R.now

if mode == 'unpin' then
  for i = 1, n do
    hold_retime(KEYS[3 + 4 * i - 3], KEYS[3 + 4 * i - 2], KEYS[3 + 4 * i], token, qtys[i], owner, expires)
  end
  record_del(R, 'pin', 'pinx')
  redis.call('ZADD', KEYS[2], expires, token)
  return {0}
end

if (now >= expires and not rec[5]) or not holds_intact(3, token, owner, qtys) then
  expire_reservation(3, R, KEYS[2], KEYS[3], token, owner, skus, qtys, now)
  return {-6}
end
local until_ms = now + tonumber(ARGV[3])
for i = 1, n do
  hold_retime(KEYS[3 + 4 * i - 3], KEYS[3 + 4 * i - 2], KEYS[3 + 4 * i], token, qtys[i], owner, '+inf')
end
record_set(R, 'pin', '1', 'pinx', until_ms)
redis.call('ZADD', KEYS[2], until_ms, token)
return {0}
