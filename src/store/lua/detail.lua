-- chatstats: applies increments of the statistics by room, nick, emote and time atomically, at
-- most once per (writer, sequence number); `mark.lua` and `records.lua` are prepended. Layout
-- (built by src/store/redis/calls.rs, key names by src/store/keys.rs):
--   KEYS: writer, then per group its key
--   ARGV: seq (0: no mark), window, then per group: an operation, an expiry (Unix seconds, 0:
--         none), a count u of increments by 1, a count c of others, then u members (each
--         `n` = 1), then c `member, n` pairs (most increments are 1: half the arguments to
--         convert)
-- Operations: `z` ZINCRBY n member (one ZADD of them all when the sorted set does not exist
-- yet and they are many: `records.lua`); `h` HINCRBY member n; `lt` / `gt` ZADD LT / GT n member
-- (the earliest / latest time); `s` SADD member; `zmw`, `zmn`, `zme` after an `f` group.
-- A room's `f` group, for its messages of an hour whose minutes are written (ended or not: only
-- this script can tell, atomically, whether the hour is rolled up yet): KEYS the room's `folded`
-- string, the `rollup` hash, its all-time words, nicks and emotes, the hour's `folding` set;
-- ARGV `f`, the hour, the legacy hour, a grace (seconds), the room, the `folding` set's expiry.
-- It is followed by the room's minutes of that hour: `zmw`, `zmn` and `zme` (its words, nicks,
-- emotes), ZINCRBY as `z`. The hour's roll-up adds the minutes to the room's all-time lists
-- (`rollup.lua`), and until then they outlive their expiry by the grace; unless the all-time
-- lists already hold that hour (`direct`): the hour is at or before the room's `folded` hour,
-- or rolled up already. Then the increments go to them as well, now; so they do when the
-- hour's roll-up has begun (the `rollup` hash's `c`) and the room has no minutes of it
-- waiting (it is not in the hour's `folding` set): its all-time lists then hold the hour,
-- which becomes its `folded` hour. Else the room joins the `folding` set, which its roll-up
-- takes it out of; once the roll-up has begun, no room joins, and the hour is marked rolled
-- up once the set is empty (`rollup_done.lua`). A room with no `folded` string yet gets one:
-- the legacy hour when it has all-time lists (written before minutes were folded: every hour
-- up to the latest a message may be in was counted at once), else -1 (a new room).
-- A nick's group: KEYS its `pending` string, then its words, rooms and emotes; ARGV `a` and
-- its record (`records.lua`).
-- A history group (last) is laid out differently: KEYS the history stream, the ids hash of the
-- hour, then per entry its room's and nick's index streams (as its flags say); ARGV `x`, the
-- ids hash's expiry, the trimming MINID (`0`: not kept, only the last 1,000 for the live
-- feed), a count c, then per entry its JSON, id, room and flags (`r`, `n`, `rn` or `-`); every
-- key of the group expires with the ids hash, so a room gone quiet leaves nothing behind.
if not admit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])) then
  return 0
end
local i, k = 3, 2
local direct, grace, alltime = true, 0, {}
-- The rooms joining each hour's `folding` set (one SADD per set and call, at the end).
local joining = {}
-- Whether the all-time lists of a room already hold its hour (see the `f` group above).
local function fold_group()
  local folded, rollup, hour = KEYS[k], KEYS[k + 1], tonumber(ARGV[i + 1])
  local last = redis.call('GET', folded)
  if not last then
    if redis.call('EXISTS', KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]) > 0 then
      last = ARGV[i + 2]
    else
      last = '-1'
    end
    redis.call('SET', folded, last)
  end
  local marks = redis.call('HMGET', rollup, 'h', 'c')
  local rolled, closing = marks[1], tonumber(marks[2] or -1)
  if not rolled then
    -- The first hour to roll up is this one, whatever the retention says then.
    rolled = tostring(hour - 1)
    redis.call('HSET', rollup, 'h', rolled)
  end
  direct = hour <= tonumber(last) or hour <= tonumber(rolled)
  grace = tonumber(ARGV[i + 3])
  alltime = {zmw = KEYS[k + 2], zmn = KEYS[k + 3], zme = KEYS[k + 4]}
  local folding, room = KEYS[k + 5], ARGV[i + 4]
  if not direct and hour <= closing and redis.call('SISMEMBER', folding, room) == 0 then
    direct = true
    redis.call('SET', folded, hour)
  end
  if not direct then
    local join = joining[folding]
    if not join then
      join = {expiry = ARGV[i + 5], rooms = {}}
      joining[folding] = join
    end
    join.rooms[#join.rooms + 1] = room
  end
  i = i + 6
  k = k + 6
end
local function apply(key, op, member, n)
  if op == 'z' then
    redis.call('ZINCRBY', key, n, member)
  else
    redis.call('HINCRBY', key, member, n)
  end
end
-- `s`, `lt` and `gt` take many members per command: one SADD or ZADD per 1,000 arguments
-- (`chunked`, in `records.lua`; a member twice in one ZADD LT / GT keeps its least / greatest
-- time, as one ZADD each would). `n` is a plain ZADD: increments to a sorted set that does not
-- exist yet (`records.lua`).
local function apply_many(key, op, from, ones, count)
  local head
  if op == 's' then
    head = {'SADD', key}
  elseif op == 'n' then
    head = {'ZADD', key}
  else
    head = {'ZADD', key, string.upper(op)}
  end
  local push, flush = chunked(head)
  local function add(member, n)
    if op == 's' then
      push(member)
    else
      push(n, member)
    end
  end
  for j = from, from + ones - 1 do
    add(ARGV[j], '1')
  end
  for j = from + ones, from + ones + 2 * count - 1, 2 do
    add(ARGV[j], ARGV[j + 1])
  end
  flush()
end
-- Most ids in one row of a room's or nick's history index (`history.lua` reads them).
local INDEX_ROW_IDS = 100
local function history()
  local stream, ids = KEYS[k], KEYS[k + 1]
  local expiry, minid, count = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  k = k + 2
  -- A room's (nick's) messages of one call go in one row of its index, up to INDEX_ROW_IDS
  -- ids a row, with one EXPIREAT. The ids are set by one HSET per 500 messages.
  local indexes, order = {}, {}
  local set_id, set_ids = chunked({'HSET', ids})
  for _ = 1, count do
    local json, id, room, flags = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    i = i + 4
    if minid == '0' then
      redis.call('XADD', stream, 'MAXLEN', '~', 1000, '*', 'm', json, 'r', room)
    else
      local entry = redis.call('XADD', stream, 'MINID', '~', minid, '*', 'm', json, 'r', room)
      set_id(id, entry)
      if flags ~= '-' then
        for _ = 1, #flags do
          local index = KEYS[k]
          local entries = indexes[index]
          if not entries then
            entries = {}
            indexes[index] = entries
            order[#order + 1] = index
          end
          entries[#entries + 1] = entry
          k = k + 1
        end
      end
    end
  end
  set_ids()
  for _, index in ipairs(order) do
    local entries = indexes[index]
    for from = 1, #entries, INDEX_ROW_IDS do
      local row = table.concat(entries, ' ', from, math.min(from + INDEX_ROW_IDS - 1, #entries))
      redis.call('XADD', index, 'MINID', '~', minid, '*', 'i', row)
    end
    redis.call('EXPIREAT', index, expiry)
  end
  -- Not kept (`0`): the live feed's last 1,000 still expire once no worker writes.
  redis.call('EXPIREAT', stream, expiry)
  if minid ~= '0' then
    redis.call('EXPIREAT', ids, expiry)
  end
end
while k <= #KEYS do
  if ARGV[i] == 'x' then
    history()
    break
  end
  if ARGV[i] == 'f' then
    fold_group()
  elseif ARGV[i] == 'a' then
    append_record(KEYS[k], ARGV[i + 1], {w = KEYS[k + 1], r = KEYS[k + 2], e = KEYS[k + 3]})
    i = i + 2
    k = k + 4
  else
    local key, op, expiry = KEYS[k], ARGV[i], ARGV[i + 1]
    local ones, count = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    i = i + 4
    k = k + 1
    -- A room's minute: with its all-time list when `direct`, else the roll-up adds it.
    local also = nil
    if alltime[op] then
      if direct then
        also = alltime[op]
      else
        expiry = tostring(tonumber(expiry) + grace)
      end
      op = 'z'
    end
    if op == 'z' or op == 'h' then
      -- A sorted set not there yet takes them all in one ZADD (`records.lua`).
      local targets = {also}
      if op == 'z' and ones + count >= NEW_SET_MIN and redis.call('EXISTS', key) == 0 then
        apply_many(key, 'n', i, ones, count)
      else
        table.insert(targets, 1, key)
      end
      -- '1', not 1: a number argument costs redis.call a conversion to text (~9% of a ZINCRBY).
      for _, to in ipairs(targets) do
        for j = i, i + ones - 1 do
          apply(to, op, ARGV[j], '1')
        end
        for j = i + ones, i + ones + 2 * count - 1, 2 do
          apply(to, op, ARGV[j], ARGV[j + 1])
        end
      end
    else
      apply_many(key, op, i, ones, count)
    end
    if expiry ~= '0' then
      redis.call('EXPIREAT', key, expiry)
    end
    i = i + ones + 2 * count
  end
end
for folding, join in pairs(joining) do
  for from = 1, #join.rooms, 1000 do
    redis.call('SADD', folding, unpack(join.rooms, from, math.min(from + 999, #join.rooms)))
  end
  redis.call('EXPIREAT', folding, join.expiry)
end
return 1
