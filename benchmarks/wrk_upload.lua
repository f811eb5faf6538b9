-- wrk script: POST one image as multipart/form-data (field BENCH_FIELD, "file" by default) or, when
-- BENCH_FIELD is "-", as the raw request body (Content-Type: image/png); print a JSON summary line.
local path = os.getenv("BENCH_IMAGE")
local field = os.getenv("BENCH_FIELD") or "file"
local handle = assert(io.open(path, "rb"))
local image = handle:read("*all")
handle:close()
wrk.method = "POST"
if field == "-" then
  wrk.headers["Content-Type"] = "image/png"
  wrk.body = image
else
  local boundary = "----mlops-bench-boundary"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"" .. field .. "\"; filename=\"image.png\"\r\n"
    .. "Content-Type: image/png\r\n\r\n" .. image .. "\r\n--" .. boundary .. "--\r\n"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d, \"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
