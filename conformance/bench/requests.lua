-- requests.lua — wrk script: replays pre-formatted requests from REQ_FILE, one per line,
-- `PATH<TAB>Name: value<TAB>…` (as sigv4_requests.py writes them), cycling through them from
-- a random start. done() prints the same RESULT line as the anchor's range.lua. METHOD
-- (default GET) and BODY_BYTES (a body of that many bytes with each request) make uploads.
--   REQ_FILE=requests.tsv wrk -t1 -c64 -d5s -s requests.lua http://127.0.0.1:19100

local file = os.getenv("REQ_FILE")
local seed = tonumber(os.getenv("SEED") or "1")
local method = os.getenv("METHOD") or "GET"
local body_bytes = tonumber(os.getenv("BODY_BYTES") or "0")

local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

local reqs = {}
local nreqs = 0
local idx = 0

function init(args)
   math.randomseed(seed * 7919 + (tid or 0))
   local body = nil
   if body_bytes > 0 then body = string.rep("k", body_bytes) end
   for line in io.lines(file) do
      local path, headers = nil, {}
      for field in string.gmatch(line, "[^\t]+") do
         if path == nil then
            path = field
         else
            local k, v = string.match(field, "^([^:]+): (.*)$")
            headers[k] = v
         end
      end
      nreqs = nreqs + 1
      reqs[nreqs] = wrk.format(method, path, headers, body)
   end
   idx = math.random(0, nreqs - 1)
end

function request()
   idx = idx + 1
   if idx > nreqs then idx = 1 end
   return reqs[idx]
end

function done(summary, latency, requests)
   local dur_s = summary.duration / 1e6
   local n = summary.requests
   local e = summary.errors
   io.write(string.format(
      "RESULT reqs=%d dur_s=%.3f rps=%.1f bytes=%d GBps=%.4f avg_resp_bytes=%.0f " ..
      "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      n, dur_s, n / dur_s, summary.bytes, summary.bytes / dur_s / 1e9,
      (n > 0) and (summary.bytes / n) or 0,
      latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
      latency:percentile(99) / 1e3, latency.max / 1e3,
      e.connect, e.read, e.write, e.status, e.timeout))
end
