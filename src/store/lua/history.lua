-- chatstats: one page of recorded messages, newest first (keyset pagination: as cheap deep in
-- the history as at its start).
--   KEYS: the stream to page (the history, or a room's or nick's index of it), the history
--   ARGV: where to start (`+`, or `(` and the id of the last entry of the previous page), how
--         many rows to read at most, `1` when KEYS[1] is an index, the oldest id still kept
--         (its recording time in Unix ms: the stream is trimmed only when a message is added),
--         the room the entries must be in (empty: any; a nick's messages in one room), and how
--         many entries to return at most
-- Returns id, JSON, id, JSON…, then the id of the last row read (empty when none) and the
-- number of rows read. An entry trimmed away since its index row was read is skipped, and so
-- is one of another room.
local indexed, room, wanted = ARGV[3] == '1', ARGV[5], tonumber(ARGV[6])
local rows = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[4], 'COUNT', ARGV[2])
local out, found, last = {}, 0, ''
for _, row in ipairs(rows) do
  last = row[1]
  local json
  if indexed then
    local entry = row[2][2]
    local stored = redis.call('XRANGE', KEYS[2], entry, entry)
    if stored[1] then
      local fields = stored[1][2]
      if room == '' or fields[4] == room then
        json = fields[2]
      end
    end
  else
    json = row[2][2]
  end
  if json then
    out[#out + 1] = row[1]
    out[#out + 1] = json
    found = found + 1
    if found == wanted then
      break
    end
  end
end
out[#out + 1] = last
out[#out + 1] = tostring(#rows)
return out
