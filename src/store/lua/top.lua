-- chatstats: the members with the highest sums over several sorted sets (buckets of one list),
-- without merging them: the threshold algorithm. Pages of each set are read highest first; a
-- member first met is summed over every set; reading stops once the k-th best sum is above the
-- best sum a member not met yet could have (the sum of the last scores read). Ties at the k-th
-- place are all returned, and the caller orders members by sum, then by member in descending
-- byte order (Lua's string order depends on Redis's locale, so it is not used here). When the
-- work grows past a budget (many equal counts), the sets are merged with ZUNION instead.
--   KEYS: the sorted sets (a missing one is empty)
--   ARGV: k
-- Returns member, sum, member, sum... in no particular order.
local k = tonumber(ARGV[1])
local n = #KEYS
local page = math.max(k, 32)
local sums, met = {}, {}
local depth, work = 0, 0

local function kth_best(values)
  local sorted = {}
  for i = 1, #values do
    sorted[i] = values[i]
  end
  table.sort(sorted, function(a, b) return a > b end)
  return sorted[k]
end

local function answer(members, sum_of)
  local totals = {}
  for i = 1, #members do
    totals[i] = sum_of(members[i])
  end
  local least = kth_best(totals) or -math.huge
  local out = {}
  for i = 1, #members do
    if totals[i] >= least then
      out[#out + 1] = members[i]
      out[#out + 1] = tostring(totals[i])
    end
  end
  return out
end

-- The sums of members met for the first time, from each set in one ZMSCORE per (at most)
-- CHUNK of them: a call from Lua costs more than the lookup it makes.
local CHUNK = 1000
local function sum_up(fresh)
  for from = 1, #fresh, CHUNK do
    local upto = math.min(from + CHUNK - 1, #fresh)
    for q = 1, n do
      local scores = redis.call('ZMSCORE', KEYS[q], unpack(fresh, from, upto))
      for j = from, upto do
        local score = scores[j - from + 1]
        if score then
          sums[fresh[j]] = sums[fresh[j]] + tonumber(score)
        end
      end
    end
  end
  work = work + n * #fresh
end

while true do
  local bound, open = 0, false
  local fresh = {}
  for i = 1, n do
    local got = redis.call('ZREVRANGE', KEYS[i], depth, depth + page - 1, 'WITHSCORES')
    for j = 1, #got, 2 do
      local member = got[j]
      if sums[member] == nil then
        sums[member] = 0
        met[#met + 1] = member
        fresh[#fresh + 1] = member
      end
    end
    if #got == 2 * page then
      bound = bound + tonumber(got[#got])
      open = true
    end
  end
  sum_up(fresh)
  depth = depth + page
  if not open then
    break
  end
  local totals = {}
  for i = 1, #met do
    totals[i] = sums[met[i]]
  end
  local best = kth_best(totals)
  if best and best > bound then
    break
  end
  if work > 50000 then
    local args = {'ZUNION', n}
    for q = 1, n do
      args[#args + 1] = KEYS[q]
    end
    args[#args + 1] = 'WITHSCORES'
    local members, scores = {}, redis.call(unpack(args))
    for i = 1, #scores, 2 do
      members[#members + 1] = scores[i]
      sums[scores[i]] = tonumber(scores[i + 1])
    end
    return answer(members, function(m) return sums[m] end)
  end
end
return answer(met, function(m) return sums[m] end)
