-- chatstats: applies one tally atomically, at most once per (writer, sequence number).
-- Layout (built by src/store/redis.rs, key names by src/store/keys.rs):
--   KEYS: writer, words, nicks, rooms, failedMessages, failedMessages:total, then one
--         messagesPerSecond key per counted second
--   ARGV: seq (0: no mark), window, second-ttl, failed-cap, #rooms, #nicks, #failed, then one
--         count per second key, `n, room` pairs, `n, nick` pairs, failed payloads, and
--         `n, word` pairs to the end
local seq = tonumber(ARGV[1])
if seq > 0 then
  -- The writer key holds the highest applied sequence number H (a 64-bit integer at bit 0)
  -- and a ring of `window` bits from bit 64: bit 64 + s % window is set once s is applied, for
  -- H - window < s <= H. The worker never has a call in flight more than `window` numbers
  -- below its newest, so any s <= H - window was acknowledged before H was sent: it is a
  -- duplicate. The key has a fixed size in every state. When it is lost (Redis lost data, or
  -- it expired after a quiet day), the next call starts it afresh with the same rule.
  local wkey = KEYS[1]
  local window = tonumber(ARGV[2])
  local h = redis.call('BITFIELD', wkey, 'GET', 'i64', 0)[1]
  local bit = 64 + seq % window
  if seq <= h - window then
    return 0
  elseif seq <= h then
    if redis.call('GETBIT', wkey, bit) == 1 then
      return 0
    end
    redis.call('SETBIT', wkey, bit, 1)
  else
    local fresh = h <= 0 or seq - h >= window
    if fresh then
      redis.call('DEL', wkey)
    else
      -- Positions of the skipped numbers (h, seq) now stand for calls not applied yet.
      for s = h + 1, seq - 1 do
        redis.call('SETBIT', wkey, 64 + s % window, 0)
      end
    end
    redis.call('BITFIELD', wkey, 'SET', 'i64', 0, seq, 'SET', 'u1', bit, 1)
    redis.call('EXPIRE', wkey, 86400)
  end
end
local ttl = ARGV[3]
local cap = tonumber(ARGV[4])
local i = 8
for k = 7, #KEYS do
  if redis.call('INCRBY', KEYS[k], ARGV[i]) == tonumber(ARGV[i]) then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
  i = i + 1
end
local function increment(key, pairs)
  for _ = 1, pairs do
    redis.call('ZINCRBY', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
end
increment(KEYS[4], tonumber(ARGV[5]))
increment(KEYS[3], tonumber(ARGV[6]))
local failed = tonumber(ARGV[7])
if failed > 0 then
  local fkey = KEYS[5]
  if redis.call('TYPE', fkey).ok == 'set' then
    -- Written by the TypeScript service: keep its members, as the oldest.
    local old = redis.call('SMEMBERS', fkey)
    redis.call('DEL', fkey)
    for _, member in ipairs(old) do
      redis.call('ZADD', fkey, 0, member)
    end
  end
  for _ = 1, failed do
    local order = redis.call('INCR', KEYS[6])
    redis.call('ZADD', fkey, order, ARGV[i])
    i = i + 1
  end
  local excess = redis.call('ZCARD', fkey) - cap
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', fkey, 0, excess - 1)
  end
end
increment(KEYS[2], (#ARGV - i + 1) / 2)
return 1
