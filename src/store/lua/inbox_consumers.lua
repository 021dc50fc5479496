-- chatstats: forgets the inbox's consumers that hold nothing and were idle for long: a worker
-- that stopped (or died, its entries since taken over) leaves its name in the group, and every
-- restart adds one. Atomic, so that no consumer reads an entry between the check and the
-- deletion (which would drop that entry from the pending list). A live consumer forgotten
-- comes back at its next read.
--   KEYS: the inbox
--   ARGV: the group, the least idle time (ms), the caller's consumer (never forgotten)
-- Returns the number of consumers forgotten.
local inbox, group, idle, caller = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local forgotten = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', inbox, group)) do
  local fields = {}
  for j = 1, #consumer, 2 do
    fields[consumer[j]] = consumer[j + 1]
  end
  if fields.name ~= caller and tonumber(fields.pending) == 0 and tonumber(fields.idle) >= idle then
    redis.call('XGROUP', 'DELCONSUMER', inbox, group, fields.name)
    forgotten = forgotten + 1
  end
end
return forgotten
