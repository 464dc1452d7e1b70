-- wrk driver for POST /v1/reservations: distinct user id per request, status and
-- error-code counts, per-success CLOCK_MONOTONIC timestamps, per-thread quota.
-- usage: wrk -t T -c C -d MAXDUR -s reserve.lua URL -- SKU QTY QUOTA_PER_THREAD TAG OUT.json [API_KEY [OPENING]]
-- API_KEY (optional) is sent as X-API-Key (flashstock's storefront key; other targets ignore it).
-- Per-request latency: each request carries X-Request-ID <n>, every target echoes it, and the answer's
-- time since its request() is kept in a log histogram (1% buckets) per thread, written to
-- OUT.json.lat.<tid> ("a <bucket> <count>" for every answer, "s ..." for all but the thread's first
-- OPENING requests, which open its connections). wrk's own latency figures are corrected for
-- coordinated omission: every answer slower than runtime / (answers per connection) adds phantom
-- samples, so a few slow connection openings weigh as thousands of answers (BENCHMARKS.md).
-- A thread that reaches its quota stops and touches OUT.json.done.<tid>; wrk itself only exits at
-- -d, so the driver sends SIGINT once every thread is done (wrk then reports as usual).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
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
  sku, qty, quota, tag, out = args[1], tonumber(args[2]), tonumber(args[3]), args[4], args[5]
  n, answered, first, last, stopped = 0, 0, nil, nil, false
  status, codes, success_t = {}, {}, {}
  headers_tbl = { ["Content-Type"] = "application/json" }
  if args[6] and args[6] ~= "" then headers_tbl["X-API-Key"] = args[6] end
  opening = tonumber(args[7] or "0")
  sent, all_hist, steady_hist = {}, {}, {}
end

local LOG_STEP = math.log(1.01)

local function write_latencies()
  local lines = {}
  for b, count in pairs(all_hist) do lines[#lines + 1] = string.format("a %d %d", b, count) end
  for b, count in pairs(steady_hist) do lines[#lines + 1] = string.format("s %d %d", b, count) end
  local f = io.open(out .. ".lat." .. tid, "w")
  f:write(table.concat(lines, "\n") .. "\n")
  f:close()
end

function request()
  n = n + 1
  if first == nil then first = now() end
  local body = string.format('{"user_id":"%s-%d-%d","items":[{"sku":"%s","qty":%d}]}', tag, tid, n, sku, qty)
  headers_tbl["X-Request-ID"] = tostring(n)
  sent[n] = now()
  return wrk.format("POST", "/v1/reservations", headers_tbl, body)
end

function response(st, hdrs, body)
  if stopped then return end
  answered = answered + 1
  last = now()
  local id = tonumber(hdrs["X-Request-ID"] or "")
  if id and sent[id] then
    local b = math.floor(math.log(math.max((last - sent[id]) * 1e6, 1)) / LOG_STEP)
    all_hist[b] = (all_hist[b] or 0) + 1
    if id > opening then steady_hist[b] = (steady_hist[b] or 0) + 1 end
    sent[id] = nil
  end
  if answered % 10000 == 0 then write_latencies() end
  status[st] = (status[st] or 0) + 1
  if st == 201 then
    success_t[#success_t + 1] = last
  elseif st >= 400 then
    local code = string.match(body, '"code"%s*:%s*"([^"]*)"') or "none"
    codes[code] = (codes[code] or 0) + 1
  end
  if answered >= quota then
    stopped = true
    write_latencies()
    wrk.thread:stop()
    local f = io.open(out .. ".done." .. tid, "w")
    f:close()
  end
end

function done(summary, latency, requests)
  local t0, t1, answered, st, cd, succ = math.huge, 0, 0, {}, {}, {}
  for _, t in ipairs(threads) do
    local f, l = t:get("first"), t:get("last")
    if f and f < t0 then t0 = f end
    if l and l > t1 then t1 = l end
    answered = answered + t:get("answered")
  end
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("status")) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(t:get("codes")) do cd[k] = (cd[k] or 0) + v end
    for _, v in ipairs(t:get("success_t")) do succ[#succ + 1] = string.format("%.6f", v - t0) end
  end
  local parts = {}
  for k, v in pairs(st) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local cparts = {}
  for k, v in pairs(cd) do cparts[#cparts + 1] = string.format('"%s":%d', k, v) end
  local f = io.open(threads[1]:get("out"), "w")
  f:write(string.format(
    '{"duration_us":%d,"active_s":%.6f,"answered":%d,"requests":%d,"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"status":{%s},"error_codes":{%s},"latency_us":{"p50":%d,"p95":%d,"p99":%d,"p999":%d,"max":%d},' ..
    '"success_t":[%s]}',
    summary.duration, t1 - t0, answered, summary.requests, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, table.concat(parts, ","), table.concat(cparts, ","),
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency:percentile(99.9),
    latency.max, table.concat(succ, ",")))
  f:close()
end
