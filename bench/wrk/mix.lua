-- wrk driver for the browse + buy mix: GET /v1/products/<sku> and single-unit POST /v1/reservations
-- in the order of a precomputed per-thread plan, one result line per answer, per-thread quota.
-- usage: wrk -t T -c C -d MAXDUR -s mix.lua URL -- PLAN_PREFIX QUOTA_PER_THREAD TAG OUT.json [API_KEY]
-- PLAN_PREFIX.<tid> has one request per line, "p <sku>" (read) or "r <sku>" (reserve); a thread past
-- the end of its plan starts over. API_KEY (optional) is sent as X-API-Key.
-- OUT.json.<tid> gets one line per answer: "<op> <status> <sku> <latency us> <error code or ->", with
-- op "u" (and sku "-") for an answer that could not be matched to its request. bench/browse_logic.py
-- aggregates them; OUT.json gets wrk's own totals.
-- wrk does not say which connection a response belongs to, so each request carries X-Request-ID <n>
-- and the server echoes it (flashstock does; so does bench/ceiling/browse.py).
-- Only numbers cross threads: wrk 4.1's thread:get pops the thread's Lua stack once too often for a
-- table (script_copy_value pops it, script_thread_get pops again), which crashed wrk with a few tables.
-- A thread that reaches its quota stops and touches OUT.json.done.<tid> (see reserve.lua).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_mix_timespec;
  int clock_gettime(int clk, bench_mix_timespec *ts);
]]
local ts = ffi.new("bench_mix_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local prefix
  prefix, quota, tag, out = args[1], tonumber(args[2]), args[3], args[4]
  plan_op, plan_sku = {}, {}
  for line in io.lines(prefix .. "." .. tid) do
    local op, sku = string.match(line, "^(%a) (%S+)$")
    plan_op[#plan_op + 1], plan_sku[#plan_sku + 1] = op, sku
  end
  n, answered, first, last, stopped = 0, 0, nil, nil, false
  pend_t, pend_op, pend_sku = {}, {}, {}
  results = io.open(out .. "." .. tid, "w")
  results:setvbuf("full", 65536)  -- flushed at quota, or by the C library when wrk exits
  get_headers = {}
  post_headers = { ["Content-Type"] = "application/json" }
  if args[5] and args[5] ~= "" then
    get_headers["X-API-Key"] = args[5]
    post_headers["X-API-Key"] = args[5]
  end
end

function request()
  n = n + 1
  local i = (n - 1) % #plan_op + 1
  local op, sku = plan_op[i], plan_sku[i]
  pend_t[n], pend_op[n], pend_sku[n] = now(), op, sku
  if op == "r" then
    post_headers["X-Request-ID"] = tostring(n)
    local body = string.format('{"user_id":"%s-%d-%d","items":[{"sku":"%s","qty":1}]}', tag, tid, n, sku)
    return wrk.format("POST", "/v1/reservations", post_headers, body)
  end
  get_headers["X-Request-ID"] = tostring(n)
  return wrk.format("GET", "/v1/products/" .. sku, get_headers, nil)
end

function response(st, hdrs, body)
  if stopped then return end
  local t = now()
  answered = answered + 1
  last = t
  local code = "-"
  if st >= 400 then code = string.match(body, '"code"%s*:%s*"([^"]*)"') or "none" end
  local id = tonumber(hdrs["X-Request-ID"] or hdrs["x-request-id"] or "")
  local op = id and pend_op[id]
  if op then
    -- first = earliest answered request: wrk calls request() once more on thread 0 to check its
    -- format (script_verify_request) and never sends that one
    if first == nil or pend_t[id] < first then first = pend_t[id] end
    results:write(op, " ", st, " ", pend_sku[id], " ", math.floor((t - pend_t[id]) * 1e6 + 0.5), " ", code, "\n")
    pend_t[id], pend_op[id], pend_sku[id] = nil, nil, nil
  else
    results:write("u ", st, " - 0 ", code, "\n")
  end
  if answered >= quota then
    stopped = true
    results:flush()
    wrk.thread:stop()
    local f = io.open(out .. ".done." .. tid, "w")
    f:close()
  end
end

function done(summary, latency, requests)
  local t0, t1, total = math.huge, 0, 0
  for _, t in ipairs(threads) do
    local f, l = t:get("first"), t:get("last")
    if f and f < t0 then t0 = f end
    if l and l > t1 then t1 = l end
    total = total + t:get("answered")
  end
  local f = io.open(threads[1]:get("out"), "w")
  f:write(string.format(
    '{"duration_us":%d,"active_s":%.6f,"answered":%d,"requests":%d,"threads":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p95":%d,"p99":%d,"p999":%d,"max":%d}}',
    summary.duration, t1 - t0, total, summary.requests, #threads, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency:percentile(99.9), latency.max))
  f:close()
end
