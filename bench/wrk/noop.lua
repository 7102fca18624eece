-- wrk script: the no-op route (GET /healthz), reporting the same lines as orders.lua.
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("ok: %d  requests/s: %.0f\n", summary.requests - summary.errors.status, summary.requests / secs))
  io.write(string.format("p50 %.2fms p90 %.2fms p99 %.2fms max %.2fms\n",
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
