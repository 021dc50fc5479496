-- chatstats: applies one tally atomically (see src/store/redis.rs for the argument layout).
local ns = ARGV[1]
local writer = ARGV[2]
if writer ~= '' then
  -- Exactly once per (writer, seq), whatever order retries arrive in: `wkey` holds the
  -- watermark W (every seq <= W is applied), `gkey` the applied seqs above W. `wkey` ends with
  -- '+' while `gkey` has members, so the usual in-order call (seq = W + 1, no gaps) costs one
  -- GET and one SET.
  local wkey = ns .. 'writer:' .. writer
  local gkey = wkey .. ':above'
  local seq = tonumber(ARGV[3])
  local state = redis.call('GET', wkey) or '0'
  local w = tonumber(string.match(state, '^%d+'))
  local gaps = string.sub(state, -1) == '+'
  if seq <= w then
    return 0
  end
  if seq == w + 1 then
    if gaps then
      while redis.call('ZSCORE', gkey, seq + 1) do
        redis.call('ZREM', gkey, seq + 1)
        seq = seq + 1
      end
      gaps = redis.call('EXISTS', gkey) == 1
    end
    redis.call('SET', wkey, gaps and (seq .. '+') or seq, 'EX', 86400)
  else
    if gaps and redis.call('ZSCORE', gkey, seq) then
      return 0
    end
    redis.call('ZADD', gkey, seq, seq)
    redis.call('EXPIRE', gkey, 86400)
    redis.call('SET', wkey, w .. '+', 'EX', 86400)
  end
end
local ttl = ARGV[4]
local cap = tonumber(ARGV[5])
local i = 10
for _ = 1, tonumber(ARGV[6]) do
  local key = ns .. 'messagesPerSecond:' .. ARGV[i]
  if redis.call('INCRBY', key, ARGV[i + 1]) == tonumber(ARGV[i + 1]) then
    redis.call('EXPIRE', key, ttl)
  end
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
