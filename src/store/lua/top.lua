-- chatstats: the members with the highest sums over several sorted sets (buckets of one list),
-- without merging them: the threshold algorithm. Pages of each set are read highest first; a
-- member first met is summed over every set; reading stops once the k-th best sum is above the
-- best sum a member not met yet could have (the sum of the last scores read). Ties at the k-th
-- place are all returned, and the caller orders members by sum, then by member in descending
-- byte order (Lua's string order depends on Redis's locale, so it is not used here). When the
-- work grows past a budget (many equal counts), the sets are merged with ZUNION instead, whose
-- order is the caller's: then exactly the k best are returned. Past MERGE_LIMIT members in all,
-- a merge in one call would hold Redis up: the script returns just their number, and the caller
-- reads the sets in pages and sums them itself.
-- Pages double from one round to the next and the k best sums are kept in a heap, so the work
-- grows as (members met) x log k, never with the square of the members met: a range of flat
-- counts (every word said once) is not a way to hold Redis up.
--   KEYS: the sorted sets (a missing one is empty)
--   ARGV: k
-- Returns member, sum, member, sum... in no particular order; or one value, the number of
-- members, when they are too many to merge here.
local k = tonumber(ARGV[1])
local n = #KEYS
local page = math.max(k, 32)
local sums, met = {}, {}
local depth, work = 0, 0
-- Lookups of members' scores (ZMSCORE) past which merging every member costs less.
local BUDGET = 50000
-- Most members merged here (about 2.5 µs each); more are left to the caller.
local MERGE_LIMIT = 20000

-- The k best sums met so far: a min-heap, its root the k-th best once it holds k.
local heap = {}
local function keep(value)
  local size = #heap
  if size < k then
    heap[size + 1] = value
    local i = size + 1
    while i > 1 do
      local parent = math.floor(i / 2)
      if heap[parent] <= heap[i] then
        break
      end
      heap[parent], heap[i] = heap[i], heap[parent]
      i = parent
    end
  elseif value > heap[1] then
    heap[1] = value
    local i = 1
    while true do
      local left, least = 2 * i, i
      if left <= size and heap[left] < heap[least] then
        least = left
      end
      if left + 1 <= size and heap[left + 1] < heap[least] then
        least = left + 1
      end
      if least == i then
        break
      end
      heap[least], heap[i] = heap[i], heap[least]
      i = least
    end
  end
end

local function kth_best()
  if #heap < k then
    return nil
  end
  return heap[1]
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
  for j = 1, #fresh do
    keep(sums[fresh[j]])
  end
  work = work + n * #fresh
end

-- The members whose sum is at least the k-th best (ties included).
local function answer()
  local least = kth_best() or -math.huge
  local out = {}
  for i = 1, #met do
    local sum = sums[met[i]]
    if sum >= least then
      out[#out + 1] = met[i]
      out[#out + 1] = tostring(sum)
    end
  end
  return out
end

-- Every member merged: ZUNION answers as a sorted set orders, by sum then member bytes,
-- ascending, so its last k are the k best in the caller's order, ties broken as it would.
local function merged()
  local args = {'ZUNION', n}
  for q = 1, n do
    args[#args + 1] = KEYS[q]
  end
  args[#args + 1] = 'WITHSCORES'
  local scores = redis.call(unpack(args))
  local out = {}
  for i = #scores - 1, math.max(1, #scores - 2 * k + 1), -2 do
    out[#out + 1] = scores[i]
    out[#out + 1] = scores[i + 1]
  end
  return out
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
  if work + n * #fresh > BUDGET then
    local total = 0
    for q = 1, n do
      total = total + redis.call('ZCARD', KEYS[q])
    end
    if total > MERGE_LIMIT then
      return {tostring(total)}
    end
    return merged()
  end
  sum_up(fresh)
  depth = depth + page
  if not open then
    break
  end
  local best = kth_best()
  if best and best > bound then
    break
  end
  page = math.min(2 * page, 8192)
end
return answer()
