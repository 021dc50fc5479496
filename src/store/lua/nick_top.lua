-- chatstats: the top of one of a nick's all-time lists: its sorted set plus the increments
-- still pending (`records.lua` is prepended). Pending increments only raise counts, so the
-- set's k highest still come before every member that is not pending and not among them: the
-- answer is among those k and the pending members. The caller orders these candidates (by
-- count, then member in descending byte order, as ZREVRANGE does) and keeps k.
--   KEYS: the sorted set, the nick's `pending` string
--   ARGV: the list's letter (`w`, `r`, `e`), k
-- Returns member, count, member, count... in no particular order.
local letter, k = ARGV[1], tonumber(ARGV[2])
local text = redis.call('GET', KEYS[2])
local pending, p = {}, 0
if text then
  local sums, distinct = sum_increments(text, {[letter] = true})
  pending, p = sums[letter] or {}, distinct
end
local head = redis.call('ZREVRANGE', KEYS[1], 0, k - 1, 'WITHSCORES')
if p == 0 then
  return head
end
local out = {}
for i = 1, #head, 2 do
  local member = head[i]
  local count = tonumber(head[i + 1])
  if pending[member] then
    count = count + pending[member]
    pending[member] = nil
  end
  out[#out + 1] = member
  out[#out + 1] = tostring(count)
end
-- The pending members not among the head.
local rest = {}
for member in pairs(pending) do
  rest[#rest + 1] = member
end
for first = 1, #rest, 1000 do
  local last = math.min(first + 999, #rest)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(rest, first, last))
  for j = first, last do
    local member = rest[j]
    out[#out + 1] = member
    out[#out + 1] = tostring((tonumber(scores[j - first + 1]) or 0) + pending[member])
  end
end
return out
