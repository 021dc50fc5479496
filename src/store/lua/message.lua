-- chatstats: the recorded message with a given id, while it is kept.
--   KEYS: the ids hashes of the hours it may have been recorded in (newest first), then the
--         history
--   ARGV: the id
for h = 1, #KEYS - 1 do
  local entry = redis.call('HGET', KEYS[h], ARGV[1])
  if entry then
    local found = redis.call('XRANGE', KEYS[#KEYS], entry, entry)
    if found[1] then
      return found[1][2][2]
    end
  end
end
return false
