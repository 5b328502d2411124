-- Shared by put.lua and read.lua: each thread gets an index, and done() prints one machine-readable
-- line (prefixed WRK) that bench/wrkclient.py parses: counts, duration, latency percentiles in µs and,
-- per thread, how many requests got a 2xx (so the reads only ask for keys the PUTs made).
local threads = {}
ok = 0

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function response(status, headers, body)
   if status < 300 then
      ok = ok + 1
   end
end

function done(summary, latency, requests)
   local oks = {}
   for _, t in ipairs(threads) do
      table.insert(oks, tostring(t:get("ok")))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK {"requests": %d, "duration_us": %d, "bytes": %d, "status_errors": %d, ' ..
      '"socket_errors": %d, "p50_us": %d, "p99_us": %d, "ok": [%s]}\n',
      summary.requests, summary.duration, summary.bytes, e.status, e.connect + e.read + e.write + e.timeout,
      latency:percentile(50), latency:percentile(99), table.concat(oks, ", ")))
end
