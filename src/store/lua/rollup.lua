-- chatstats: rolls up one scope's finer buckets of a whole hour (or day) into its hour (or day)
-- buckets, and marks the scope rolled. Run once the hour or day has ended; running it again
-- gives the same buckets (ZUNIONSTORE replaces them).
--   KEYS: the scope's `rolled` hash, the activity hash to write, the activity hash to read
--         (it holds only this hour's minutes, or this day's hours), then per list its
--         destination and its sources
--   ARGV: the `rolled` field (`h` or `d`), the bucket's number, the expiry of what is written
--         (Unix seconds), the number of lists, then per list its number of sources
local field, bucket, expiry, lists = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local k = 4
for l = 1, lists do
  local sources = tonumber(ARGV[4 + l])
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
for _, n in ipairs(redis.call('HVALS', KEYS[3])) do
  total = total + tonumber(n)
end
if total > 0 then
  redis.call('HSET', KEYS[2], bucket, total)
  redis.call('EXPIREAT', KEYS[2], expiry)
end
redis.call('HSET', KEYS[1], field, bucket)
return total
