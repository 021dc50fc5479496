-- chatstats: a room's unique chatters of all time: its all-time nicks, and the nicks of its
-- minutes not folded into them yet (after `unfolded.lua`, which chose `KEYS`), exactly.
local count = redis.call('ZCARD', KEYS[1])
local seen = {}
for q = 2, #KEYS do
  for _, member in ipairs(redis.call('ZRANGE', KEYS[q], 0, -1)) do
    if not seen[member] then
      seen[member] = true
      if not redis.call('ZSCORE', KEYS[1], member) then
        count = count + 1
      end
    end
  end
end
return count
