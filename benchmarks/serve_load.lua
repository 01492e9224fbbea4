-- wrk script of benchmarks/serve_latency.py (--driver wrk): one endpoint per run.
--
-- Environment (set by serve_latency.py):
--   BENCH_ENDPOINT  recommend | similar | event | search | suggest
--                   (search / suggest: BENCH_ITEMS holds URL-quoted queries / prefixes)
--   BENCH_USERS     file with one URL-quoted user id per line
--   BENCH_ITEMS     file with one URL-quoted item id per line
--   BENCH_K         list length asked for
--   BENCH_KEY       API key for event posts
--   BENCH_TAG       prefix of the posted event ids (to find them in the store)
--   BENCH_TYPE      event type posted
--   BENCH_THINK_MS  pause of each connection between an answer and its next request
--                   (0 = closed loop: the next request leaves as the answer arrives)
--   BENCH_THINK_DIST "fixed" (default: every pause is BENCH_THINK_MS) or "exp" (random
--                   pauses, exponential with that mean: independent clients, whose
--                   requests do not arrive in waves)
-- At the end it prints one line "BENCH_JSON {...}" with wrk's latency statistics (all
-- answers, microseconds) and the answers with / without the expected status.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local function lines(path)
  local out = {}
  for line in io.lines(path) do
    if #line > 0 then table.insert(out, line) end
  end
  return out
end

function init(args)
  endpoint = os.getenv("BENCH_ENDPOINT")
  users = lines(os.getenv("BENCH_USERS"))
  items = lines(os.getenv("BENCH_ITEMS"))
  k = os.getenv("BENCH_K") or "10"
  key = os.getenv("BENCH_KEY") or ""
  tag = os.getenv("BENCH_TAG") or "wrk"
  etype = os.getenv("BENCH_TYPE") or "view"
  think = tonumber(os.getenv("BENCH_THINK_MS") or "0")
  random_think = os.getenv("BENCH_THINK_DIST") == "exp"
  expected = (endpoint == "event") and 201 or 200
  math.randomseed(id * 7919 + os.time())
  counter, ok, bad = 0, 0, 0
end

function delay()
  if random_think and think > 0 then
    -- capped below uvicorn's 5 s keep-alive timeout, which would close the idle connection
    return math.min(math.floor(-think * math.log(1 - math.random())), 4500)
  end
  return think
end

function request()
  if endpoint == "recommend" then
    -- a customer's recommendations need a read key (the benchmark's key holds every scope)
    return wrk.format("GET", "/v1/users/" .. users[math.random(#users)] .. "/recommendations?k=" .. k,
      {["X-API-Key"] = key})
  elseif endpoint == "similar" then
    return wrk.format("GET", "/v1/items/" .. items[math.random(#items)] .. "/similar?k=" .. k)
  elseif endpoint == "search" then
    return wrk.format("GET", "/v1/search?q=" .. items[math.random(#items)] .. "&k=" .. k)
  elseif endpoint == "suggest" then
    return wrk.format("GET", "/v1/search/suggest?q=" .. items[math.random(#items)] .. "&k=" .. k)
  end
  counter = counter + 1
  local body = string.format('{"event_id":"bench-%s-%d-%d","user_id":"%s","item_id":"%s","type":"%s"}',
    tag, id, counter, users[math.random(#users)], items[math.random(#items)], etype)
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["X-API-Key"] = key}, body)
end

function response(status, headers, body)
  if status == expected then ok = ok + 1 else bad = bad + 1 end
end

function done(summary, latency, requests)
  local good, wrong = 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    wrong = wrong + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"ok":%d,"bad_status":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, good, wrong, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
