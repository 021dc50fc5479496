-- chatstats: one page of recorded messages, newest first (keyset pagination: as cheap deep in
-- the history as at its start).
--   KEYS: the stream to page (the history, or a room's or nick's index of it), the history
--   ARGV: where to start (`+`, or `(` and the id of the last entry of the previous page), how
--         many, `1` when KEYS[1] is an index, and the oldest id still kept (its recording time
--         in Unix ms: the stream is trimmed only when a message is added)
-- Returns id, JSON, id, JSON… (an entry trimmed away since its index row was read is skipped).
local rows = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[4], 'COUNT', ARGV[2])
local out = {}
for _, row in ipairs(rows) do
  local json
  if ARGV[3] == '1' then
    local entry = row[2][2]
    local found = redis.call('XRANGE', KEYS[2], entry, entry)
    if found[1] then
      json = found[1][2][2]
    end
  else
    json = row[2][2]
  end
  if json then
    out[#out + 1] = row[1]
    out[#out + 1] = json
  end
end
out[#out + 1] = tostring(#rows)
return out
