-- chatstats: how many members of one list rank above a member with a given count, in the top
-- lists' order (higher count first, equal counts in descending byte order); the member itself
-- need not be in the list. On Redis Cluster a nick's rank is one plus the sum of this over the
-- shards of the nicks list.
--   KEYS: the list
--   ARGV: the count, the member
-- `bytes.lua` is prepended.
local key, score, member = KEYS[1], ARGV[1], ARGV[2]
local above = redis.call('ZCOUNT', key, '(' .. score, '+inf')
local below = redis.call('ZCOUNT', key, '-inf', '(' .. score)
local ties = redis.call('ZCOUNT', key, score, score)
-- Ranks below + 0 … below + ties - 1 hold the ties in ascending byte order: find the first one
-- greater than the member; it and the rest of the ties rank above it.
local first, last = below, below + ties
while first < last do
  local middle = math.floor((first + last) / 2)
  if greater(redis.call('ZRANGE', key, middle, middle)[1], member) then
    last = middle
  else
    first = middle + 1
  end
end
return above + below + ties - first
