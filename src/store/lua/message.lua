-- chatstats: the recorded message with a given id, while it is kept.
--   KEYS: the ids hashes of the hours it may have been recorded in (newest first), then the
--         history
--   ARGV: the id, the oldest recording time still kept (Unix ms; the ids hashes expire by the
--         hour, and the history is trimmed only when a message is added)
local oldest = tonumber(ARGV[2])
for h = 1, #KEYS - 1 do
  local entry = redis.call('HGET', KEYS[h], ARGV[1])
  if entry and tonumber(string.match(entry, '^%d+')) >= oldest then
    local found = redis.call('XRANGE', KEYS[#KEYS], entry, entry)
    if found[1] then
      return found[1][2][2]
    end
  end
end
return false
