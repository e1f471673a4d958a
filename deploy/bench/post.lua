-- wrk script: POST one Kaleyra RCS delivery receipt per request, as the provider sends it.
-- Ingest never parses the body, so one fixed body measures the server, not the payload.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"DELIVERED","eventId":"bench-1","from":"917673908652",' ..
           '"to":"mmx_traffic","sentAt":"2025-06-16T13:46:42.929Z","messageId":"bench-msg-1"}'

-- Answers other than 202 (wrk's own "Non-2xx" line only counts codes >= 300), summed over
-- wrk's threads at the end.
local threads = {}
not_accepted = 0

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 202 then
    not_accepted = not_accepted + 1
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + t:get("not_accepted")
  end
  io.write(string.format("Not 202: %d\n", n))
end
