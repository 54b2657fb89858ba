-- The realistic workload's request mix for wrk (scripts/workload.sh): 70 % reads of a random
-- citizen's resource, 20 % searches for a random citizen's care plans by CPR chain, 10 % writes
-- (half new Observations, half Goal updates). Ids and CPR numbers follow
-- examples/workload_load.rs, which loaded the data.
local citizens = tonumber(os.getenv("CITIZENS") or "1000")
-- READ_PCT and SEARCH_PCT change the mix (the rest are writes), to see what each kind costs.
local read_pct = tonumber(os.getenv("READ_PCT") or "70")
local search_pct = tonumber(os.getenv("SEARCH_PCT") or "20")
-- UPDATE_PCT: the share of the writes that are Goal updates (default 50; the rest are creates).
local update_pct = tonumber(os.getenv("UPDATE_PCT") or "50")
local token = os.getenv("TOKEN") or ""
local reads = { "Patient/wl-p-", "CarePlan/wl-cp-", "Goal/wl-g1-", "Goal/wl-g2-", "Goal/wl-g3-",
  "Condition/wl-c1-", "Condition/wl-c2-", "Encounter/wl-e-", "Observation/wl-o1-", "Observation/wl-o2-" }
local achievements = { "in-progress", "improving", "achieved", "worsening", "no-change" }

local function cpr(n)
  local day = 1 + n % 28
  local month = 1 + math.floor(n / 28) % 12
  local year = math.floor(n / 336) % 100
  local serial = math.floor(n / 33600)
  return string.format("%02d%02d%02d%04d", day, month, year, serial)
end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

-- wrk.format takes a request's headers in place of wrk.headers, so writes carry their own.
local write_headers = { ["Content-Type"] = "application/fhir+json", ["Prefer"] = "return=minimal" }

function init(args)
  math.randomseed(os.time() * 1000 + (seed or 0))
  wrk.headers["Authorization"] = "Bearer " .. token
  write_headers["Authorization"] = "Bearer " .. token
end

function request()
  local n = math.random(0, citizens - 1)
  local r = math.random(100)
  if r <= read_pct then
    return wrk.format("GET", "/fhir/" .. reads[math.random(#reads)] .. n)
  elseif r <= read_pct + search_pct then
    return wrk.format("GET", "/fhir/CarePlan?patient.identifier=urn:oid:1.2.208.176.1.2%7C" .. cpr(n))
  elseif math.random(100) > update_pct then
    return wrk.format("POST", "/fhir/Observation", write_headers,
      '{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],'
      .. '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2026-12-03T10:00:00+01:00",'
      .. '"subject":{"reference":"Patient/wl-p-' .. n .. '"},"valueQuantity":{"value":' .. (60 + r % 40)
      .. ',"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}')
  else
    local g = 1 + n % 3
    return wrk.format("PUT", "/fhir/Goal/wl-g" .. g .. "-" .. n, write_headers,
      '{"resourceType":"Goal","id":"wl-g' .. g .. '-' .. n .. '","lifecycleStatus":"active",'
      .. '"achievementStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/goal-achievement","code":"'
      .. achievements[math.random(#achievements)] .. '"}]},"description":{"text":"Delmål ' .. g .. '"},'
      .. '"subject":{"reference":"Patient/wl-p-' .. n .. '"}}')
  end
end
