-- chatstats: applies one tally atomically (see src/store/redis.rs for the argument layout).
local ns = ARGV[1]
local writer = ARGV[2]
if writer ~= '' then
  local wkey = ns .. 'writer:' .. writer
  local last = tonumber(redis.call('GET', wkey) or 0)
  if tonumber(ARGV[3]) <= last then
    return 0
  end
  redis.call('SET', wkey, ARGV[3], 'EX', 86400)
end
local ttl = ARGV[4]
local cap = tonumber(ARGV[5])
local i = 10
for _ = 1, tonumber(ARGV[6]) do
  local key = ns .. 'messagesPerSecond:' .. ARGV[i]
  redis.call('INCRBY', key, ARGV[i + 1])
  redis.call('EXPIRE', key, ttl)
  i = i + 2
end
local function increment(key, pairs)
  for _ = 1, pairs do
    redis.call('ZINCRBY', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
increment(ns .. 'rooms', tonumber(ARGV[7]))
increment(ns .. 'nicks', tonumber(ARGV[8]))
local failed = tonumber(ARGV[9])
if failed > 0 then
  local fkey = ns .. 'failedMessages'
  if redis.call('TYPE', fkey).ok == 'set' then
    -- Written by the TypeScript service: keep its members, as the oldest.
    local old = redis.call('SMEMBERS', fkey)
    redis.call('DEL', fkey)
    for _, member in ipairs(old) do
      redis.call('ZADD', fkey, 0, member)
    end
  end
  for _ = 1, failed do
    local order = redis.call('INCR', ns .. 'failedMessages:total')
    redis.call('ZADD', fkey, order, ARGV[i])
    i = i + 1
  end
  local excess = redis.call('ZCARD', fkey) - cap
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', fkey, 0, excess - 1)
  end
end
increment(ns .. 'words', (#ARGV - i + 1) / 2)
return 1
