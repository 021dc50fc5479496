-- chatstats: on Redis Cluster, one shard's part of a batch of inbox entries, applied at most once
-- per entry. The inbox is in another slot, so the pending check of `inbox_apply.lua` cannot be
-- in this call: the shard keeps instead the ranges of entry ids it applied (a set ordered by
-- id: entries are read in stream order, so a batch read fresh is a range that no other batch
-- shares). `mark.lua` is prepended, then `apply.lua` as `apply_part(KEYS, ARGV)`,
-- `detail.lua` as `detail_part(KEYS, ARGV)`, `parts.lua` and `bytes.lua`.
--   KEYS: the shard's applied ranges, then the keys of the tally's call, then those of the
--         detail's call
--   ARGV: the mode (`b`: a batch read fresh; `t`: one entry taken over from a consumer that
--         died or stalled), the first and last entry ids (zero-padded, so that byte order is
--         id order), the oldest first id to keep (older ranges are dropped), then for the
--         tally and for the detail: its number of keys, its number of arguments, its arguments
-- Returns 1 when applied; 2 when applied before (a retried call, or an entry taken over that a
-- batch applied here); 0 when another call applied some of the batch's entries here (they were
-- taken over while this consumer stalled): nothing is applied, and the batch is not to be
-- acknowledged; its entries are taken over one by one later.
local applied, mode, first, last, oldest = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local range = first .. ' ' .. last
-- Ranges never overlap: only the one starting last at or before `last` can hold an entry of
-- this batch.
local near = redis.call('ZREVRANGEBYLEX', applied, '[' .. last .. '\255', '-', 'LIMIT', 0, 1)[1]
if near then
  if near == range then
    return 2
  end
  if not greater(first, string.sub(near, #first + 2)) then
    if mode == 't' then
      return 2
    end
    return 0
  end
end
apply_parts(2, 5)
redis.call('ZADD', applied, 0, range)
redis.call('ZREMRANGEBYLEX', applied, '-', '(' .. oldest)
redis.call('EXPIRE', applied, 90000)
return 1
