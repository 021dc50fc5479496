-- chatstats: marks an hour rolled up, unless rooms still wait for its roll-up to fold their
-- minutes (`detail.lua` adds a room to the hour's `folding` set until the roll-up begins,
-- `rollup.lua` takes it out): none should, as the roll-up lists the hour's rooms after it
-- begins, but the mark must never hide minutes not folded.
--   KEYS: the `rollup` hash, the hour's `folding` set
--   ARGV: the field (`h`), the hour's number
-- Returns the rooms still waiting (then nothing is marked), or none.
local waiting = redis.call('SMEMBERS', KEYS[2])
if #waiting > 0 then
  return waiting
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return waiting
