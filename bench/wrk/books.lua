-- The HTTP side of scripts/bench.sh: wrk loads books-ms with one operation.
--   wrk -t1 -cN -dDs -s bench/wrk/books.lua http://127.0.0.1:PORT -- OP BOOKS
-- OP is get (GET /api/v1/books/_id/{id}), list (GET /api/v1/books) or put
-- (PUT /api/v1/books); ids cycle through 1..BOOKS, as books-bench's do.
-- done() prints one line for the script:
--   WRK requests duration_us errors p50_us p99_us max_us p999_us

local op, books, n = "get", 100, 0

-- The same book text as books-bench (bench/src/load.rs) and the seed.
local description = "A book written for the benchmark; its description is about as long"
  .. " as a real one, a couple of sentences of plain text."
local json = { ["Content-Type"] = "application/json" }

function init(args)
  op = args[1] or "get"
  books = tonumber(args[2] or "100")
  if op ~= "get" and op ~= "list" and op ~= "put" then
    error("unknown operation '" .. op .. "' (get, list or put)")
  end
end

function request()
  local id = n % books + 1
  n = n + 1
  if op == "get" then
    return wrk.format("GET", "/api/v1/books/_id/" .. id)
  elseif op == "list" then
    return wrk.format("GET", "/api/v1/books")
  end
  local body = string.format('{"_id":%d,"title":"Book %d","author":"Author %d","description":"%s"}',
    id, id, id, description)
  return wrk.format("PUT", "/api/v1/books", json, body)
end

-- errors: socket errors, timeouts, and every status >= 400.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency.max, latency:percentile(99.9)))
end
