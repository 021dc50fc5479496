-- chatstats: applies one tally of the all-time lists atomically, at most once per (writer,
-- sequence number); `mark.lua` is prepended. Layout (built by src/store/redis/calls.rs, key
-- names by src/store/keys.rs):
--   KEYS: writer, words, nicks, rooms, failedMessages, failedMessages:total, then one
--         messagesPerSecond key per counted second
--   ARGV: seq (0: no mark), window, second-ttl, failed-cap, #rooms, #nicks, #failed, then one
--         count per second key, `n, room` pairs, `n, nick` pairs, failed payloads, and
--         `n, word` pairs to the end
if not admit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])) then
  return 0
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
    -- Written by the TypeScript service, which never bounded it: keep `cap` of its members
    -- (a set has no order: any `cap`), as the oldest. Reading only those and freeing the rest
    -- in the background (UNLINK) keeps this call short however large the set grew.
    -- The service kept no total: its failures count as the payloads it kept.
    redis.call('INCRBY', KEYS[6], redis.call('SCARD', fkey))
    local old = redis.call('SRANDMEMBER', fkey, cap)
    redis.call('UNLINK', fkey)
    for from = 1, #old, 500 do
      local args = {'ZADD', fkey}
      for j = from, math.min(from + 499, #old) do
        args[#args + 1] = 0
        args[#args + 1] = old[j]
      end
      redis.call(unpack(args))
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
