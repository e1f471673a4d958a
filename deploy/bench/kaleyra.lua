-- wrk script: POST the Kaleyra RCS delivery receipts, cycling through the bodies
-- whose paths follow `--` on the wrk command line. BENCH_TOKEN, when set, is sent
-- as the callback token (hookline checks it; the bare app ignores it).
local bodies = {}
local i = 0

function init(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = f:read("*a")
    f:close()
  end
  assert(#bodies > 0, "no bodies given after --")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
