-- chatstats: rolls up one scope's finer buckets of a whole hour (or day) into its hour (or day)
-- buckets. Run once the hour or day has ended; running it again gives the same buckets
-- (ZUNIONSTORE replaces them). The caller marks the hour (day) rolled once every scope is.
--   KEYS: the activity hash to write, the activity hash to read (it holds only this hour's
--         minutes, or this day's hours), then per list its destination and its sources
--   ARGV: the bucket's number, the expiry of what is written (Unix seconds), the number of
--         lists, then per list its number of sources
local bucket, expiry, lists = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local k = 3
for l = 1, lists do
  local sources = tonumber(ARGV[3 + l])
  local args = {'ZUNIONSTORE', KEYS[k], sources}
  for s = 1, sources do
    args[#args + 1] = KEYS[k + s]
  end
  if redis.call(unpack(args)) > 0 then
    redis.call('EXPIREAT', KEYS[k], expiry)
  end
  k = k + 1 + sources
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
