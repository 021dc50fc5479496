-- chatstats: rolls up one scope's finer buckets of a whole hour (or day) into its hour (or day)
-- buckets. Run once the hour or day has ended; running it again gives the same buckets
-- (ZUNIONSTORE replaces them). The caller marks the hour (day) rolled once every scope is.
-- A room's hour also adds its minutes to the room's all-time lists (folds them) when the hour
-- is after the room's `folded` hour (`detail.lua` wrote them to the minutes only), then makes
-- it the `folded` hour and gives the minutes their own expiry: folding is done once. Either
-- way the room leaves the hour's `folding` set (`detail.lua`).
--   KEYS: the activity hash to write, the activity hash to read (it holds only this hour's
--         minutes, or this day's hours), then per list its destination and its sources; to
--         fold, then the room's `folded` string, per list its all-time list, and the hour's
--         `folding` set
--   ARGV: the bucket's number, the expiry of what is written (Unix seconds), the number of
--         lists, then per list its number of sources; to fold, then `fold`, whether the
--         sources are still kept (`1`, `0`), the expiry of the first source (each next
--         one's is a minute later) and the room
local bucket, expiry, lists = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local fold = ARGV[4 + lists] == 'fold'
local unfolded = false
local alltime = 3
for l = 1, lists do
  alltime = alltime + 1 + tonumber(ARGV[3 + l])
end
if fold then
  local last = redis.call('GET', KEYS[alltime])
  unfolded = last ~= false and tonumber(bucket) > tonumber(last)
  redis.call('SREM', KEYS[alltime + lists + 1], ARGV[7 + lists])
  -- Minutes no longer kept and already counted: what is left of them is not the hour.
  if ARGV[5 + lists] ~= '1' and not unfolded then
    return 0
  end
end
local first_expiry = tonumber(ARGV[6 + lists])
local k = 3
for l = 1, lists do
  local sources = tonumber(ARGV[3 + l])
  local args = {'ZUNIONSTORE', KEYS[k], sources}
  for s = 1, sources do
    args[#args + 1] = KEYS[k + s]
  end
  if redis.call(unpack(args)) > 0 then
    redis.call('EXPIREAT', KEYS[k], expiry)
    if unfolded then
      local target = KEYS[alltime + l]
      local members = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
      for j = 1, #members, 2 do
        redis.call('ZINCRBY', target, members[j + 1], members[j])
      end
    end
  end
  if unfolded then
    for s = 1, sources do
      redis.call('EXPIREAT', KEYS[k + s], first_expiry + 60 * (s - 1))
    end
  end
  k = k + 1 + sources
end
if unfolded then
  redis.call('SET', KEYS[alltime], bucket)
end
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[2])) do
  total = total + tonumber(n)
end
if total > 0 then
  redis.call('HSET', KEYS[1], bucket, total)
  redis.call('EXPIREAT', KEYS[1], expiry)
end
return total
