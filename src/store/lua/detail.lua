-- chatstats: applies increments of the statistics by room, nick, emote and time atomically, at
-- most once per (writer, sequence number); `mark.lua` is prepended. Layout (built by
-- src/store/redis.rs, key names by src/store/keys.rs):
--   KEYS: writer, then one key per group
--   ARGV: seq (0: no mark), window, then per group, in the order of KEYS: an operation, an
--         expiry (Unix seconds, 0: none), a count c, and c `member, n` pairs
-- Operations: `z` ZINCRBY n member; `h` HINCRBY member n; `lt` / `gt` ZADD LT / GT n member
-- (the earliest / latest time).
if not admit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])) then
  return 0
end
local i = 3
for k = 2, #KEYS do
  local key, op, expiry, count = KEYS[k], ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  i = i + 3
  for _ = 1, count do
    local member, n = ARGV[i], ARGV[i + 1]
    if op == 'z' then
      redis.call('ZINCRBY', key, n, member)
    elseif op == 'h' then
      redis.call('HINCRBY', key, member, n)
    else
      redis.call('ZADD', key, string.upper(op), n, member)
    end
    i = i + 2
  end
  if expiry > 0 then
    redis.call('EXPIREAT', key, expiry)
  end
end
return 1
