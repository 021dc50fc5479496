-- chatstats: on Redis Cluster, acknowledges and deletes a batch of inbox entries once every
-- shard applied its part (`inbox_shard.lua`), only while every entry is still pending for this
-- consumer.
--   KEYS: the inbox
--   ARGV: the group, the consumer, the entry ids
-- Returns 1 when acknowledged; 0 when an entry is no longer pending for this consumer.
local inbox, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local ids = {}
for j = 3, #ARGV do
  local id = ARGV[j]
  if #redis.call('XPENDING', inbox, group, id, id, 1, consumer) == 0 then
    return 0
  end
  ids[#ids + 1] = id
end
if #ids > 0 then
  redis.call('XACK', inbox, group, unpack(ids))
  redis.call('XDEL', inbox, unpack(ids))
end
return 1
