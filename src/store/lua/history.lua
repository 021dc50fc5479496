-- chatstats: one page of recorded messages, newest first (keyset pagination: as cheap deep in
-- the history as at its start).
--   KEYS: the stream to page (the history, or a room's or nick's index of it), the history
--   ARGV: where to start (`+`; `(` and a row id: the rows before it; or a row id: that row's
--         ids before position ARGV[7], then the rows before it), how many rows of the history
--         or ids of an index to read at most, `1` when KEYS[1] is an index, the oldest id
--         still kept (its recording time in Unix ms: the stream is trimmed only when a message
--         is added), the room the entries must be in (empty: any; a nick's messages in one
--         room), how many entries to return at most, and the position (0: none)
-- An index row holds the ids of one worker call's entries of its room or nick, oldest first,
-- separated by spaces (`detail.lua`).
-- Returns cursor, JSON, cursor, JSON…, then the cursor after the last row or id read (empty
-- when none) and the number read. A cursor is a row id (the rows before it come next) or
-- `<row id>~<p>` (the ids before position p of that row come next). An entry trimmed away
-- since its index row was read is skipped, and so is one of another room.
local indexed, room, wanted = ARGV[3] == '1', ARGV[5], tonumber(ARGV[6])
local budget, within = tonumber(ARGV[2]), tonumber(ARGV[7])
local rows = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[4], 'COUNT', budget)
local out, found, read, last = {}, 0, 0, ''
local function keep(cursor, json)
  out[#out + 1] = cursor
  out[#out + 1] = json
  found = found + 1
end
for r, row in ipairs(rows) do
  if not indexed then
    read = read + 1
    last = row[1]
    keep(row[1], row[2][2])
    if found == wanted then
      break
    end
  else
    local ids = {}
    for id in string.gmatch(row[2][2], '%S+') do
      ids[#ids + 1] = id
    end
    local from = #ids
    if r == 1 and within > 0 and row[1] == ARGV[1] then
      from = math.min(within - 1, #ids)
    end
    last = row[1]
    for p = from, 1, -1 do
      read = read + 1
      if p > 1 then
        last = row[1] .. '~' .. p
      else
        last = row[1]
      end
      local stored = redis.call('XRANGE', KEYS[2], ids[p], ids[p])
      if stored[1] then
        local fields = stored[1][2]
        if room == '' or fields[4] == room then
          keep(last, fields[2])
        end
      end
      if found == wanted or read == budget then
        break
      end
    end
    if found == wanted or read == budget then
      break
    end
  end
end
out[#out + 1] = last
out[#out + 1] = tostring(read)
return out
