-- chatstats: how many distinct members several sorted sets hold together (a room's chatters over
-- some buckets), exactly.
--   KEYS: the sorted sets (a missing one is empty)
if #KEYS == 1 then
  return redis.call('ZCARD', KEYS[1])
end
local args = {'ZUNION', #KEYS}
for k = 1, #KEYS do
  args[#args + 1] = KEYS[k]
end
return #redis.call(unpack(args))
