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

local LIGHT_FIELD_MAX = 64  -- hash-max-listpack-value: a longer field turns the stock hash into a hash table

-- An expiry as text: whole ms, or 'inf' for a hold that never expires (a pinned part, the waitlist pool).
local function as_score(v)
  if v == math.huge then return 'inf' end
  return string.format('%.0f', v)
end

-- A SKU's open holds live in one of three places. A SKU with few holds ("light") keeps each as a field
-- 'h:<token>' = '<expires ms | inf>|<qty>|<owner>' of its stock hash, with 'hn' = how many and 'he' = a
-- bound at or before the earliest one's expiry (exact after a scan): a holds key of its own would cost
-- ~140-170 B more per SKU, paid by every SKU with one hold. The (LIGHT_HOLDS + 1)-th hold, a value too
-- long for a listpack, or the waitlist's pool moves every hold to the holds zset for good ('hn' = 'z').
-- From then on ("busy") a hold taken by a reservation (reserve, amend) goes to the hold bucket its token
-- picks (inventory/keys.py): a hash of nothing but such 'h:<token>' fields, few enough to stay a listpack
-- (~90 B a hold where a zset member costs ~180), listed in the holds zset as 'k:<n>' at or before its
-- earliest expiry while it holds any (so a bucket needs no bound of its own). Every other hold of a busy
-- SKU (moved out of the stock hash, a waitlist offer, the pool, holds from before the buckets) is a zset
-- member '<token>|<qty>|<user>' scored by its expiry. A script reaches only the bucket its caller names
-- (the token's, or the due one the sweeper names; inventory/holds.py reads them all). A SKU whose holds
-- zset the older version filled (no 'hn') moves to 'z' at its next hold. Only the helpers below touch
-- holds.
-- A hold's units count as its user's (buyer_units below). A light hold's owner part says how: '~<user>',
-- or '_' and a lower-case UUID's 16 bytes in base64url (22 characters), is a hold whose units are in no
-- buyer count, buyer_units adding them from the hold itself (a 'b:<user>' count beside it would cost a
-- SKU with one hold ~45 B more); a bare user (a light hold taken before that, user ids start with a
-- letter or digit) and every hold elsewhere are counted in the buyer's count as well. Moving light holds
-- out counts them there.
local LIGHT_HOLDS = 16
local HOLD_PREFIX = 'h:'
local BUCKET_PREFIX = 'k:'
local OWN_MARK, UUID_MARK = '~', '_'
local UUID = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

local function is_lower_uuid(user)
  return #user == 36 and string.find(user, UUID) ~= nil and not string.find(user, '[A-F]')
end

-- A lower-case UUID's 128 bits in base64url without padding: three hex digits make two characters.
local function uuid_to_b64(user)
  local hex = string.gsub(user, '-', '') .. '0'  -- 33 digits: the last pair's padding bits
  local out = {}
  for i = 1, 31, 3 do
    local n = tonumber(string.sub(hex, i, i + 2), 16)
    out[#out + 1] = string.sub(B64, math.floor(n / 64) + 1, math.floor(n / 64) + 1)
    out[#out + 1] = string.sub(B64, n % 64 + 1, n % 64 + 1)
  end
  return table.concat(out)
end

local function b64_to_uuid(b64)
  local hex = {}
  for i = 1, 21, 2 do
    local n = (string.find(B64, string.sub(b64, i, i), 1, true) - 1) * 64
      + string.find(B64, string.sub(b64, i + 1, i + 1), 1, true) - 1
    hex[#hex + 1] = string.format('%03x', n)
  end
  local h = string.sub(table.concat(hex), 1, 32)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-' .. string.sub(h, 13, 16) .. '-'
    .. string.sub(h, 17, 20) .. '-' .. string.sub(h, 21, 32)
end

local function hold_value(expires, qty, user)
  return as_score(expires) .. '|' .. qty .. '|' .. user
end

-- The owner part of a light hold that carries its user's units, and such a hold's value.
local function own_owner(user)
  if is_lower_uuid(user) then return UUID_MARK .. uuid_to_b64(user) end
  return OWN_MARK .. user
end

local function own_value(expires, qty, user)
  return hold_value(expires, qty, own_owner(user))
end

-- expires (ms or math.huge), qty and the owner part as stored of a hold field's value ('<expires>|<qty>|
-- <owner>', the form of a zset member with the expiry for the token).
local function hold_parts(value)
  local expires, qty, owner = parse_member(value)
  return expires == 'inf' and math.huge or tonumber(expires), qty, owner
end

-- The user of an owner part, and whether the hold's units are counted in the buyer's count (false for
-- a light hold that carries them itself).
local function owner_user(owner)
  local mark = string.sub(owner, 1, 1)
  if mark == UUID_MARK then return b64_to_uuid(string.sub(owner, 2)), false end
  if mark == OWN_MARK then return string.sub(owner, 2), false end
  return owner, true
end

-- expires, qty, user of a hold field's value, and whether its units are counted in the buyer's count.
local function light_hold(value)
  local expires, qty, owner = hold_parts(value)
  local user, counted = owner_user(owner)
  return expires, qty, user, counted
end

local function holds_mode(stock_key, hn)
  if hn == nil then return redis.call('HGET', stock_key, 'hn') end
  return hn
end

-- Units of `user` in light holds that carry them themselves (none once the holds are in the zset).
local function own_light_units(stock_key, user, hn)
  if to_int(holds_mode(stock_key, hn)) <= 0 then return 0 end
  local owner, fields, units = own_owner(user), redis.call('HGETALL', stock_key), 0
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == HOLD_PREFIX then
      local _, qty, part = hold_parts(fields[i + 1])
      if part == owner then units = units + qty end  -- compared as stored: nothing decoded
    end
  end
  return units
end

-- A user's units of one SKU (held, plus ordered where the SKU has a per-user limit) are counted in one
-- of two places, besides the light holds that carry their own. A SKU with few buyers ("light") counts
-- each as a field 'b:<user>' of its stock hash, with 'bn' = how many: a buyers key of its own would cost
-- ~100 B more per SKU. The (LIGHT_BUYERS + 1)-th buyer, or a field too long for a listpack, moves every
-- count to the buyers hash for good ('bn' = 'h'), where a hot SKU's thousands of buyers belong. A SKU
-- counted before light buyers existed (buyers hash, no 'bn') moves to 'h' at its next new buyer.
-- inventory/buyers.py reads all three. `bn` is the stock hash's 'bn' when the caller read it already
-- (false = absent), nil to read it here; `hn` likewise.
local LIGHT_BUYERS = 16

local function buyers_mode(stock_key, bn)
  if bn == nil then return redis.call('HGET', stock_key, 'bn') end
  return bn
end

local function buyer_units(stock_key, buyers_key, user, bn, hn)
  local units = to_int(redis.call('HGET', buyers_key, user)) + own_light_units(stock_key, user, hn)
  if buyers_mode(stock_key, bn) ~= 'h' then units = units + to_int(redis.call('HGET', stock_key, 'b:' .. user)) end
  return units
end

-- Every light count into the buyers hash; the SKU counts there from now on.
local function move_buyers_out(stock_key, buyers_key)
  local fields = redis.call('HGETALL', stock_key)
  local moved = {}
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == 'b:' then
      redis.call('HINCRBY', buyers_key, string.sub(fields[i], 3), fields[i + 1])
      moved[#moved + 1] = fields[i]
    end
  end
  if #moved > 0 then redis.call('HDEL', stock_key, unpack(moved)) end
  redis.call('HSET', stock_key, 'bn', 'h')
end

-- Adds delta to a user's count of one SKU; a count that reaches zero goes, to keep the hash small.
-- Units taken back come off the buyers hash first (an older count), then off the light field.
local function add_buyer_units(stock_key, buyers_key, user, delta, bn)
  if delta == 0 then return end
  bn = buyers_mode(stock_key, bn)
  local field = 'b:' .. user
  if delta < 0 then
    if bn == 'h' or redis.call('HEXISTS', buyers_key, user) == 1 then
      local units = redis.call('HINCRBY', buyers_key, user, delta)
      if units <= 0 then redis.call('HDEL', buyers_key, user) end
      return
    end
    local units = to_int(redis.call('HGET', stock_key, field)) + delta
    if units > 0 then
      redis.call('HSET', stock_key, field, units)
    elseif redis.call('HDEL', stock_key, field) == 1 and redis.call('HINCRBY', stock_key, 'bn', -1) <= 0 then
      redis.call('HDEL', stock_key, 'bn')
    end
    return
  end
  if bn ~= 'h' then
    if redis.call('HEXISTS', stock_key, field) == 1 then
      redis.call('HINCRBY', stock_key, field, delta)
      return
    end
    if to_int(bn) < LIGHT_BUYERS and #field <= LIGHT_FIELD_MAX and redis.call('EXISTS', buyers_key) == 0 then
      redis.call('HSET', stock_key, field, delta)
      redis.call('HINCRBY', stock_key, 'bn', 1)
      return
    end
    move_buyers_out(stock_key, buyers_key)
  end
  redis.call('HINCRBY', buyers_key, user, delta)
end

-- Lowers a hash's earliest-expiry bound ('he') to `expires` if it is earlier.
local function lower_light_bound(hash_key, expires)
  if expires == math.huge then return end
  local bound = tonumber(redis.call('HGET', hash_key, 'he'))
  if not bound or expires < bound then redis.call('HSET', hash_key, 'he', as_score(expires)) end
end

-- The holds-zset member listing a hold bucket: 'k:<n>', n read off the bucket key's name.
local function bucket_member(bucket_key)
  return BUCKET_PREFIX .. string.match(bucket_key, ':(%d+)$')
end

-- Every light hold into the holds zset, its units into its buyer's count where the hold carried them;
-- the SKU keeps its holds there (and in buckets) from now on.
local function move_holds_out(stock_key, holds_key, buyers_key)
  local fields = redis.call('HGETALL', stock_key)
  local moved = {'hn', 'he'}
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == HOLD_PREFIX then
      local expires, qty, user, counted = light_hold(fields[i + 1])
      redis.call('ZADD', holds_key, as_score(expires), hold_member(string.sub(fields[i], 3), qty, user))
      if not counted then add_buyer_units(stock_key, buyers_key, user, qty) end
      moved[#moved + 1] = fields[i]
    end
  end
  redis.call('HDEL', stock_key, unpack(moved))
  redis.call('HSET', stock_key, 'hn', 'z')
end

local function holds_in_zset(stock_key, holds_key, buyers_key)
  if holds_mode(stock_key) ~= 'z' then move_holds_out(stock_key, holds_key, buyers_key) end
end

-- The stock hash's 'hk' is the number of holds in hold buckets minus the buckets listed in the holds
-- zset, so that ZCARD + 'hk' counts a busy SKU's holds (inventory/sale_status.py) in one read.
local function count_bucket_holds(stock_key, delta)
  if delta ~= 0 then redis.call('HINCRBY', stock_key, 'hk', delta) end
end

-- A new hold (the token holds nothing on this SKU yet). `bucket_key` is the token's hold bucket, or
-- nil for a hold that is no reservation's own (a waitlist offer). `hn` as in holds_mode.
-- True when the caller is to count its units in the buyer's count (a light hold carries them itself).
local function hold_put(stock_key, holds_key, buyers_key, bucket_key, token, qty, user, expires, hn)
  hn = holds_mode(stock_key, hn)
  if hn ~= 'z' then
    local field, value = HOLD_PREFIX .. token, own_value(expires, qty, user)
    if to_int(hn) < LIGHT_HOLDS and #value <= LIGHT_FIELD_MAX and #field <= LIGHT_FIELD_MAX
        and redis.call('EXISTS', holds_key) == 0 then
      redis.call('HSET', stock_key, field, value)
      redis.call('HINCRBY', stock_key, 'hn', 1)
      lower_light_bound(stock_key, expires)
      return false
    end
    move_holds_out(stock_key, holds_key, buyers_key)
  end
  if bucket_key then
    redis.call('HSET', bucket_key, HOLD_PREFIX .. token, hold_value(expires, qty, user))
    -- an entry that was there already lists a bucket that held something: one hold more, no entry more
    if redis.call('ZADD', holds_key, 'LT', expires, bucket_member(bucket_key)) == 0 then
      count_bucket_holds(stock_key, 1)
    end
    return true
  end
  redis.call('ZADD', holds_key, expires, hold_member(token, qty, user))
  return true
end

-- The hold field of token in a hash if it is exactly (qty, user): its field, expiry and whether its
-- units are counted in the buyer's count; else nil.
local function find_hold_field(hash_key, token, qty, user)
  local field = HOLD_PREFIX .. token
  local value = redis.call('HGET', hash_key, field)
  if not value then return nil end
  local expires, q, u, counted = light_hold(value)
  if q ~= qty or u ~= user then return nil end
  return field, expires, counted
end

-- When the hold (token, qty, user) expires (math.huge: never), or nil when it is not held.
local function hold_expiry(stock_key, holds_key, bucket_key, token, qty, user)
  local score = redis.call('ZSCORE', holds_key, hold_member(token, qty, user))
  if score then return tonumber(score) end
  if bucket_key then
    local _, expires = find_hold_field(bucket_key, token, qty, user)
    if expires then return expires end
  end
  local _, expires = find_hold_field(stock_key, token, qty, user)
  return expires
end

-- Removes a light hold's field from the stock hash, and its count and bound with the last one.
local function drop_light(stock_key, field)
  redis.call('HDEL', stock_key, field)
  if redis.call('HINCRBY', stock_key, 'hn', -1) <= 0 then redis.call('HDEL', stock_key, 'hn', 'he') end
end

local function drop_bucket_hold(stock_key, holds_key, bucket_key, field)
  redis.call('HDEL', bucket_key, field)
  if redis.call('EXISTS', bucket_key) == 0 then
    redis.call('ZREM', holds_key, bucket_member(bucket_key))
  else
    count_bucket_holds(stock_key, -1)
  end
end

-- Removes the hold (token, qty, user) once: 1 if it was held, 0 if not; and whether its units are
-- counted in the buyer's count (the caller takes them off there where they were).
local function hold_take(stock_key, holds_key, bucket_key, token, qty, user)
  if redis.call('ZREM', holds_key, hold_member(token, qty, user)) == 1 then return 1, true end
  if bucket_key then
    local field = find_hold_field(bucket_key, token, qty, user)
    if field then
      drop_bucket_hold(stock_key, holds_key, bucket_key, field)
      return 1, true
    end
  end
  local field, _, counted = find_hold_field(stock_key, token, qty, user)
  if not field then return 0, false end
  drop_light(stock_key, field)
  return 1, counted
end

-- Moves an existing hold's expiry (expires: ms or '+inf'); a hold not held stays absent.
local function hold_retime(stock_key, holds_key, bucket_key, token, qty, user, expires)
  local member = hold_member(token, qty, user)
  if redis.call('ZSCORE', holds_key, member) then
    redis.call('ZADD', holds_key, 'XX', expires, member)
    return
  end
  local at = expires == '+inf' and math.huge or tonumber(expires)
  local field = bucket_key and find_hold_field(bucket_key, token, qty, user)
  if field then
    redis.call('HSET', bucket_key, field, hold_value(at, qty, user))
    redis.call('ZADD', holds_key, 'LT', at, bucket_member(bucket_key))
    return
  end
  local light, _, counted = find_hold_field(stock_key, token, qty, user)
  if not light then return end
  redis.call('HSET', stock_key, light, counted and hold_value(at, qty, user) or own_value(at, qty, user))
  lower_light_bound(stock_key, at)
end

-- Takes up to `batch` - #taken hold fields of a hash expired at `now` into `taken` and returns the
-- earliest remaining expiry (math.huge: none that expires); `counted` for the stock hash, which
-- counts its holds ('hn') and keeps that bound ('he'), not for a hold bucket.
local function take_due_fields(hash_key, now, batch, taken, counted)
  local fields = redis.call('HGETALL', hash_key)
  local bound = math.huge
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 2) == HOLD_PREFIX then
      local expires, qty, owner = hold_parts(fields[i + 1])
      if expires <= now and #taken < batch then
        if counted then drop_light(hash_key, fields[i]) else redis.call('HDEL', hash_key, fields[i]) end
        local user, in_count = owner_user(owner)  -- decoded only for the holds taken
        taken[#taken + 1] = {string.sub(fields[i], 3), qty, user, in_count}
      elseif expires < bound then
        bound = expires
      end
    end
  end
  if not counted then return bound end
  if bound < math.huge then redis.call('HSET', hash_key, 'he', as_score(bound))
  else redis.call('HDEL', hash_key, 'he') end
  return bound
end

-- Removes up to `batch` holds expired at `now` and returns them as {token, qty, user, counted in the
-- buyer's count}: due zset members, then the due holds of `bucket_key` (nil: none reachable), then a
-- light SKU's. `he` is the stock hash's 'he' when the caller read it already (false = absent), nil to
-- read it here.
local function take_due_holds(stock_key, holds_key, bucket_key, now, batch, he)
  local taken, mine, scan = {}, bucket_key and bucket_member(bucket_key), false
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, batch)) do
    if member == mine then
      scan = true
    else
      local token, qty, user = parse_member(member)
      if qty then
        redis.call('ZREM', holds_key, member)
        taken[#taken + 1] = {token, qty, user, true}
      end
    end
  end
  if scan then
    local before = #taken
    local bound = take_due_fields(bucket_key, now, batch, taken, false)
    if redis.call('EXISTS', bucket_key) == 1 then
      redis.call('ZADD', holds_key, bound, mine)
      count_bucket_holds(stock_key, before - #taken)
    else
      redis.call('ZREM', holds_key, mine)
      count_bucket_holds(stock_key, before - #taken + 1)
    end
  end
  if #taken > 0 or scan then return taken end  -- holds in the zset: none in the stock hash (hold_put)
  if he == nil then he = redis.call('HGET', stock_key, 'he') end  -- absent once every hold is in the zset
  local due_at = tonumber(he or '')
  if not due_at or due_at > now then return taken end
  take_due_fields(stock_key, now, batch, taken, true)
  return taken
end

-- The number of a hold bucket with holds due at `now` (one take_due_holds could not reach), or -1.
local function due_bucket(holds_key, now)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, 16)) do
    if string.sub(member, 1, 2) == BUCKET_PREFIX then return tonumber(string.sub(member, 3)) end
  end
  return -1
end

-- The earliest hold expiry of a SKU (math.huge for a pinned hold or the pool), or nil with no hold.
-- A light SKU's may be early (the bound); the sweeper then finds nothing due and makes it exact.
local function first_hold_expiry(stock_key, holds_key)
  local first = redis.call('ZRANGE', holds_key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end  -- holds in the zset: none in the stock hash (hold_put)
  local s = redis.call('HMGET', stock_key, 'he', 'hn')
  if s[1] then return tonumber(s[1]) end
  if to_int(s[2]) > 0 then return math.huge end  -- only pinned light holds
  return nil
end

-- Reservation records live in one of two places; scripts read and write them only through the
-- record helpers below, so no script sees which. An open single-line hold whose record packs into
-- PACKED_MAX bytes is one field of its partition's record bucket (hash token -> packed record, the
-- bucket chosen from the token by inventory/keys.py): a listpack entry of ~90 bytes where a key with a
-- TTL costs ~230. Every other record (orders, closed, multi-line or multi-part reservations, records
-- with pins, extensions or long ids) is a hash key of its own with a TTL, as it always was. A packed
-- record that stops fitting moves to its own key for good, keeping its retention.
-- Packed form: a 15-byte header, the fingerprint's first 16 hex digits as 8 bytes when flag 1 is set,
-- then "<qty> US <price> US <sku> US <user>" (US = byte 31). Header: flags (1 = fingerprint, 2 = the user
-- is a lower-case UUID kept as its 16 bytes), then big-endian: exp (6 bytes), exp - ct (4), until - exp (4).
-- 'until' is when the record may go (a key's TTL; lua/prune_records drops packed ones past it). The user
-- comes last, so its bytes need no escaping. inventory/records.py decodes the same form.
local PACKED_MAX = 64  -- hash-max-listpack-value: one longer value turns the whole bucket into a hash table
local US = '\31'
local SPAN = 4294967296  -- 2^32: the 4-byte fields hold less
-- An integer as Redis would store it (never '1e+14').
local function as_text(v)
  if type(v) == 'number' then return string.format('%.0f', v) end
  return v
end

local function be6(n)  -- n < 2^48
  local lo = n % SPAN
  local hi = (n - lo) / SPAN
  return string.char(math.floor(hi / 256), hi % 256, math.floor(lo / 16777216), math.floor(lo / 65536) % 256,
    math.floor(lo / 256) % 256, lo % 256)
end

local function be4(n)  -- n < 2^32
  return string.char(math.floor(n / 16777216), math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

local function from_be(packed, from, width)
  local n = 0
  for i = from, from + width - 1 do n = n * 256 + string.byte(packed, i) end
  return n
end

local function hex_to_bytes(h)
  return (string.gsub(h, '%x%x', function(c) return string.char(tonumber(c, 16)) end))
end

local function bytes_to_hex(b)
  return (string.gsub(b, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

-- The packed form of an open single-line hold's record (numbers as numbers), or nil when it does not fit.
local function pack_hold(user, exp, ct, keep, sku, qty, price, fp)
  local ttl, left = exp - ct, keep - exp
  if ttl < 0 or ttl >= SPAN or left < 0 or left >= SPAN or exp >= 281474976710656 then return nil end
  local flags, head = 0, ''
  if fp then
    if #fp < 16 or string.find(fp, '[^0-9a-f]') then return nil end
    flags, head = 1, hex_to_bytes(string.sub(fp, 1, 16))
  end
  if is_lower_uuid(user) then
    flags, user = flags + 2, hex_to_bytes((string.gsub(user, '-', '')))
  end
  local packed = string.char(flags) .. be6(exp) .. be4(ttl) .. be4(left) .. head .. as_text(qty) .. US
    .. as_text(price) .. US .. sku .. US .. user
  if #packed > PACKED_MAX then return nil end
  return packed
end

local function whole(v)
  local n = tonumber(v)
  if n and n >= 0 and n == math.floor(n) then return n end
  return nil
end

local PACKED_FIELDS = {u = true, st = true, exp = true, ct = true, n = true, fp = true, ['~until'] = true}

-- The packed form of a record's fields, or nil when they are not an open single-line hold's or do not fit.
local function pack_record(f)
  if f.st ~= 'held' or as_text(f.n) ~= '1' or not f.u then return nil end
  local sku, count = nil, 0
  for name in pairs(f) do
    count = count + 1
    if string.sub(name, 1, 2) == 'l:' then
      sku = string.sub(name, 3)
    elseif not PACKED_FIELDS[name] and string.sub(name, 1, 2) ~= 'p:' then
      return nil
    end
  end
  if not sku or count ~= (f.fp and 9 or 8) then return nil end
  local exp, ct, keep = whole(f.exp), whole(f.ct), whole(f['~until'])
  local qty, price = whole(f['l:' .. sku]), whole(f['p:' .. sku])
  if not (exp and ct and keep and qty and price) then return nil end
  return pack_hold(f.u, exp, ct, keep, sku, qty, price, f.fp)
end

local function unpack_record(packed)
  local flags = string.byte(packed, 1)
  local exp = from_be(packed, 2, 6)
  local f = {st = 'held', n = '1', exp = as_text(exp), ct = as_text(exp - from_be(packed, 8, 4)),
             ['~until'] = exp + from_be(packed, 12, 4)}
  local from = 16
  if flags % 2 == 1 then
    f.fp = bytes_to_hex(string.sub(packed, 16, 23))
    from = 24
  end
  local a = string.find(packed, US, from, true)
  local b = string.find(packed, US, a + 1, true)
  local c = string.find(packed, US, b + 1, true)
  local sku = string.sub(packed, b + 1, c - 1)
  f['l:' .. sku], f['p:' .. sku] = string.sub(packed, from, a - 1), string.sub(packed, a + 1, b - 1)
  local user = string.sub(packed, c + 1)
  if flags >= 2 then
    local h = bytes_to_hex(user)
    user = string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-' .. string.sub(h, 13, 16) .. '-'
      .. string.sub(h, 17, 20) .. '-' .. string.sub(h, 21, 32)
  end
  f.u = user
  return f
end

-- When a packed record may go (its 'until').
local function packed_until(packed)
  return from_be(packed, 2, 6) + from_be(packed, 12, 4)
end

local function flat_fields(f)
  local out = {}
  for name, value in pairs(f) do
    if string.sub(name, 1, 1) ~= '~' then
      out[#out + 1] = name
      out[#out + 1] = as_text(value)
    end
  end
  return out
end

-- A reservation's record: R.f holds its fields (all text, as HGETALL gives them; {} when there is none).
-- R.now is the script's clock, read once here.
local function open_record(key, bucket, token)
  local packed = redis.call('HGET', bucket, token)
  local R = {key = key, bucket = bucket, token = token, packed = packed and true or false, now = now_ms()}
  if packed then
    R.f = unpack_record(packed)
    return R
  end
  local flat = redis.call('HGETALL', key)
  R.f = {}
  for i = 1, #flat, 2 do R.f[flat[i]] = flat[i + 1] end
  return R
end

-- The named fields, in order, as HMGET would give them.
local function record_get(R, ...)
  local out = {}
  for i, name in ipairs({...}) do out[i] = R.f[name] end
  return out
end

-- Writes a packed record back, or moves it to its own key once it no longer fits (until it was due to go).
local function store_packed(R)
  local packed = pack_record(R.f)
  if packed then
    redis.call('HSET', R.bucket, R.token, packed)
    return
  end
  redis.call('HDEL', R.bucket, R.token)
  redis.call('HSET', R.key, unpack(flat_fields(R.f)))
  redis.call('PEXPIRE', R.key, math.max(R.f['~until'] - R.now, 1))
  R.packed = false
end

-- A new record: `fields` (a flat list) packed when `packed` (pack_hold's answer) is one, else a key
-- of its own; either may go `keep` ms from now.
local function create_record(R, fields, packed, keep)
  if packed then
    redis.call('HSET', R.bucket, R.token, packed)
  else
    redis.call('HSET', R.key, unpack(fields))
    redis.call('PEXPIRE', R.key, keep)
  end
end

-- HSET on the record: record_set(R, field, value, ...).
local function record_set(R, ...)
  local args = {...}
  for i = 1, #args, 2 do
    args[i + 1] = as_text(args[i + 1])
    R.f[args[i]] = args[i + 1]
  end
  if R.packed then store_packed(R) else redis.call('HSET', R.key, unpack(args)) end
end

-- HDEL on the record.
local function record_del(R, ...)
  for _, name in ipairs({...}) do R.f[name] = nil end
  if R.packed then store_packed(R) else redis.call('HDEL', R.key, ...) end
end

-- HINCRBY on the record.
local function record_incr(R, name, by)
  local value = to_int(R.f[name]) + by
  record_set(R, name, value)
  return value
end

-- The record may go `keep` ms from now (PEXPIRE).
local function record_keep(R, keep)
  if R.packed then
    R.f['~until'] = R.now + keep
    store_packed(R)
  else
    redis.call('PEXPIRE', R.key, keep)
  end
end

-- Ms until the record may go (PTTL).
local function record_ttl(R)
  if R.packed then return R.f['~until'] - R.now end
  return redis.call('PTTL', R.key)
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

local function set_aside_for_waitlist(stock_key, holds_key, buyers_key)
  local s = redis.call('HMGET', stock_key, 'avail', 'wq', 'owe', 'wl')
  local owe = to_int(s[3])
  local want = s[4] and 1e15 or to_int(s[2])
  local units = math.min(to_int(s[1]), want - owe)
  if units <= 0 then return 0 end
  holds_in_zset(stock_key, holds_key, buyers_key)  -- the pool never expires and is no buyer's: it lives in the zset
  if owe > 0 then redis.call('ZREM', holds_key, hold_member(POOL, owe, '')) end
  redis.call('ZADD', holds_key, '+inf', hold_member(POOL, owe + units, ''))
  redis.call('HINCRBY', stock_key, 'avail', -units)
  redis.call('HINCRBY', stock_key, 'held', units)
  redis.call('HSET', stock_key, 'owe', owe + units)
  return units
end

-- The expiry index lists each SKU with open holds once, in two levels so that both stay small
-- (listpacks, BENCHMARKS.md "Expiry index buckets"): the SKU as member 's:<sku>' of its index bucket
-- (inventory/keys.py picks it from the name), and the bucket as member 'x:<n>' of the partition's index
-- (tokens are [0-9a-z] only, so no token can look like either). Each is scored at or before its earliest
-- hold expiry: LT keeps the earliest, and a bucket's entry is never later than its earliest SKU's. The
-- sweeper gives back a due SKU's due holds and moves both entries on (lua/sweep_holds). A score may be
-- early (a hold extended, released or reclaimed lazily since), never late. Tokens are listed in the
-- partition's index only for payment deadlines, pinned parts and holds taken before the per-SKU index;
-- 's:<sku>' there only for holds taken before the buckets.
local function index_member(bucket_key)
  return 'x:' .. string.match(bucket_key, ':xb:(%d+)$')
end

local function index_hold_expiry(expiries_key, bucket_key, sku, expires)
  -- unchanged (the SKU is listed no later already): its bucket's entry, never later than it, is right too
  if redis.call('ZADD', bucket_key, 'LT', 'CH', expires, 's:' .. sku) == 1 then
    redis.call('ZADD', expiries_key, 'LT', expires, index_member(bucket_key))
  end
end

-- Moves a bucket's entry in the partition's index to the bucket's earliest SKU, or removes it when
-- the bucket is empty (after the sweeper moved or removed one of its SKUs).
local function reindex_bucket(expiries_key, bucket_key)
  local first = redis.call('ZRANGE', bucket_key, 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', expiries_key, first[2], index_member(bucket_key))
  else
    redis.call('ZREM', expiries_key, index_member(bucket_key))
  end
end

-- Gives back every hold of one SKU whose expiry has passed (expired means now >= expiry).
-- The member is removed and its units returned in one step, so a hold is reclaimed exactly once.
-- With waitinfo_key (waitlist scripts), a lapsed offer's entry goes with its hold.
-- `bucket_key`: the one hold bucket this call may reach (nil: none).
local function reclaim_expired(stock_key, holds_key, buyers_key, bucket_key, now, batch, waitinfo_key, he)
  local freed, holds = 0, 0
  for _, hold in ipairs(take_due_holds(stock_key, holds_key, bucket_key, now, batch, he)) do
    local token, qty, user, counted = hold[1], hold[2], hold[3], hold[4]
    if counted then add_buyer_units(stock_key, buyers_key, user, -qty) end
    freed, holds = freed + qty, holds + 1
    if waitinfo_key then
      local entry = redis.call('HGET', waitinfo_key, 'u:' .. user)
      if entry and string.sub(entry, 1, 2) == 'o|' and string.sub(entry, -#token) == token then
        redis.call('HDEL', waitinfo_key, 'u:' .. user)
      end
    end
  end
  if freed > 0 then
    redis.call('HINCRBY', stock_key, 'avail', freed)
    redis.call('HINCRBY', stock_key, 'held', -freed)
    set_aside_for_waitlist(stock_key, holds_key, buyers_key)
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

-- Whether a reservation's lines are exactly the SKUs in ARGV.
local function lines_match(R, skus)
  if to_int(R.f.n) ~= #skus then return false end
  for _, sku in ipairs(skus) do
    if not R.f['l:' .. sku] then return false end
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
local function release_hold(stock_key, holds_key, buyers_key, bucket_key, token, qty, user)
  local found, counted = hold_take(stock_key, holds_key, bucket_key, token, qty, user)
  if found == 1 then
    redis.call('HINCRBY', stock_key, 'avail', qty)
    redis.call('HINCRBY', stock_key, 'held', -qty)
    if counted then add_buyer_units(stock_key, buyers_key, user, -qty) end
    set_aside_for_waitlist(stock_key, holds_key, buyers_key)
    announce_available(stock_key)
    return qty
  end
  return 0
end

-- Line helpers below address the stock/holds/buyers/hold-bucket keys of line i as KEYS[first + k(i-1) + 1]
-- to KEYS[first + k(i-1) + 4], with k = line_stride keys per line: 4, or 5 in amend, whose lines carry
-- their index bucket fifth (it adds holds). The hold bucket is the reservation token's on the line's SKU.
local line_stride = 4

-- Quantities and unit prices of the named lines, from the reservation record R.
local function read_lines(R, skus)
  local qtys, prices = {}, {}
  for i, sku in ipairs(skus) do
    qtys[i], prices[i] = tonumber(R.f['l:' .. sku]), to_int(R.f['p:' .. sku])
  end
  return qtys, prices
end

-- True while every line's hold is still present (not reclaimed by lazy expiry).
-- A line of quantity 0 (named but not held, as amend's new lines) has no hold to check.
local function holds_intact(first, token, owner, qtys)
  for i = 1, #qtys do
    local b = first + line_stride * (i - 1)
    if qtys[i] > 0 and not hold_expiry(KEYS[b + 1], KEYS[b + 2], KEYS[b + 4], token, qtys[i], owner) then
      return false
    end
  end
  return true
end

local function release_lines(first, dirty_key, token, owner, skus, qtys)
  local returned = 0
  for i = 1, #skus do
    if qtys[i] > 0 then
      local b = first + line_stride * (i - 1) + 3
      returned = returned + release_hold(KEYS[b - 2], KEYS[b - 1], KEYS[b], KEYS[b + 1], token, qtys[i], owner)
      redis.call('SADD', dirty_key, skus[i])
    end
  end
  return returned
end

-- held -> sold for every line; callers check holds_intact first.
-- A SKU with a per-user limit keeps the ordered units in the buyer's count (recorded as 'b:<sku>'
-- so a failed payment takes back exactly those); without a limit the count only ever holds open
-- holds, so the buyers hash stays the size of the open work, not of the sale's history.
local function sell_lines(first, dirty_key, R, token, owner, skus, qtys)
  for i = 1, #skus do
    local b = first + line_stride * (i - 1) + 3
    local _, counted = hold_take(KEYS[b - 2], KEYS[b - 1], KEYS[b + 1], token, qtys[i], owner)
    redis.call('HINCRBY', KEYS[b - 2], 'held', -qtys[i])
    redis.call('HINCRBY', KEYS[b - 2], 'sold', qtys[i])
    if to_int(redis.call('HGET', KEYS[b - 2], 'limit')) > 0 then
      record_set(R, 'b:' .. skus[i], qtys[i])
      if not counted then add_buyer_units(KEYS[b - 2], KEYS[b], owner, qtys[i]) end  -- the hold carried them
    elseif counted then
      add_buyer_units(KEYS[b - 2], KEYS[b], owner, -qtys[i])
    end
    redis.call('SADD', dirty_key, skus[i])
  end
end

-- sold -> available for every line of an order whose payment failed.
local function unsell_lines(first, dirty_key, R, owner, skus, qtys)
  for i = 1, #skus do
    local b = first + line_stride * (i - 1) + 3
    redis.call('HINCRBY', KEYS[b - 2], 'sold', -qtys[i])
    redis.call('HINCRBY', KEYS[b - 2], 'avail', qtys[i])
    set_aside_for_waitlist(KEYS[b - 2], KEYS[b - 1], KEYS[b])
    announce_available(KEYS[b - 2])
    local counted = to_int(R.f['b:' .. skus[i]])
    if counted > 0 then
      add_buyer_units(KEYS[b - 2], KEYS[b], owner, -counted)
      record_del(R, 'b:' .. skus[i])
    end
    redis.call('SADD', dirty_key, skus[i])
  end
end

-- A held reservation whose time is up (or whose holds were reclaimed): whatever is still held
-- goes back, exactly once, and the record says 'expired' from now on.
local function expire_reservation(first, R, expiries_key, dirty_key, token, owner, skus, qtys, now)
  local returned = release_lines(first, dirty_key, token, owner, skus, qtys)
  record_set(R, 'st', 'expired', 'end', now)
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
