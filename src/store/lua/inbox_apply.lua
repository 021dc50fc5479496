-- chatstats: applies what a batch of inbox entries adds, and acknowledges and deletes the
-- entries, in one atomic call, only while every entry is still pending for this consumer.
-- `mark.lua` is prepended, then `apply.lua` as `apply_part(KEYS, ARGV)`, `detail.lua` as
-- `detail_part(KEYS, ARGV)` (both called without a mark: the pending check stands for it) and
-- `parts.lua`.
--   KEYS: the inbox, then the keys of the tally's call, then the keys of the detail's call
--   ARGV: the group, the consumer, n, n entry ids, then for the tally and for the detail: its
--         number of keys, its number of arguments, its arguments (0 keys: nothing to apply)
-- Returns 1 when applied; 0 when an entry is no longer pending for this consumer: it was
-- applied and acknowledged already (a retried call), or another consumer claimed it after this
-- one went quiet, and now answers for it. Nothing is applied then.
local inbox, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local n = tonumber(ARGV[3])
local ids = {}
for j = 1, n do
  local id = ARGV[3 + j]
  local pending = redis.call('XPENDING', inbox, group, id, id, 1, consumer)
  if #pending == 0 then
    return 0
  end
  ids[j] = id
end
apply_parts(2, 4 + n)
-- At most a few thousand ids a call (INBOX_BATCH), within Lua's stack.
redis.call('XACK', inbox, group, unpack(ids))
redis.call('XDEL', inbox, unpack(ids))
return 1
