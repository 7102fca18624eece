-- wrk script: POST /v1/orders with a fresh Idempotency-Key per request, rotating
-- over many users' tokens. Args: TOKENS_FILE TICKET_ID
-- Counts 202s separately so the accepted rate can be reported, not just the request rate.
local tokens, ticket, counter, thread_id = {}, nil, 0, 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do table.insert(tokens, line) end
  ticket = args[2]
  thread_id = id
  -- Lua's generator starts from the same seed in every run: without this, a second run
  -- against the same stack reuses the first run's keys for another ticket (409s).
  math.randomseed(os.time() * 100 + id)
  accepted, other = 0, 0
end

function request()
  counter = counter + 1
  local token = tokens[(counter + thread_id * 7919) % #tokens + 1]
  local body = '{"ticketId":"' .. ticket .. '","quantity":1}'
  return wrk.format("POST", "/v1/orders", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("wrk-%d-%d-%d", thread_id, counter, math.random(1, 1e9)),
  }, body)
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("accepted(202): %d  other: %d  accepted/s: %.0f\n", a, o, a / secs))
  io.write(string.format("p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms\n",
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
