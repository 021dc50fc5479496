-- chatstats: how many distinct members several sorted sets hold together (a room's chatters over
-- some buckets), exactly. Members are counted in a Lua table as each set is read: `ZUNION`
-- would also sum their scores and sort the union, which cost 2 to 2.5 times as much here
-- (BENCHMARKS.md).
--   KEYS: the sorted sets (a missing one is empty)
if #KEYS == 1 then
  return redis.call('ZCARD', KEYS[1])
end
local seen, count = {}, 0
for k = 1, #KEYS do
  for _, member in ipairs(redis.call('ZRANGE', KEYS[k], 0, -1)) do
    if not seen[member] then
      seen[member] = true
      count = count + 1
    end
  end
end
return count
