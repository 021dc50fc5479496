-- chatstats: a nick's pending increments (`{ns}nick:{N}:pending`), shared by the scripts that
-- write and read a nick's all-time lists (this text is prepended to them).
--
-- A detail call appends one record per nick instead of one ZINCRBY per member: a nick rarely
-- repeats a word within a call, but often within an hour. Once the string passes FOLD_BYTES,
-- the call that made it so folds it into the nick's sorted sets (one ZINCRBY per distinct
-- member) and deletes it. Readers add what is pending to the sorted sets (`nick_top.lua`).
--
-- A record is a run of increments, each `<list letter><member length>:<member><count>;`: the
-- letter is `w`, `r` or `e` (words, rooms, emotes), the length in bytes. Built by
-- `push_increment` in `src/store/redis/calls.rs`, which also reads them back (`parse_records`).
local FOLD_BYTES = 4096

-- The increments of `text` summed per member, for the lists whose letters are in `wanted` (a
-- set of letters): sums[letter][member], the number of distinct members, and that number per
-- letter. Stops at the first malformed increment (there is none unless the key was written
-- by something else). Members and counts of other lists are skipped, not cut out: reads ask
-- for one list.
local function sum_increments(text, wanted)
  local find, sub = string.find, string.sub
  local sums, distinct, sizes = {}, 0, {}
  local pos, size = 1, #text
  while pos < size do
    local colon = find(text, ':', pos + 1, true)
    local len = colon and tonumber(sub(text, pos + 1, colon - 1))
    local semi = len and find(text, ';', colon + len + 1, true)
    if not semi then
      break
    end
    local letter = sub(text, pos, pos)
    if wanted[letter] then
      local count = tonumber(sub(text, colon + len + 1, semi - 1))
      if not count then
        break
      end
      local member = sub(text, colon + 1, colon + len)
      local of_list = sums[letter]
      if not of_list then
        of_list = {}
        sums[letter] = of_list
        sizes[letter] = 0
      end
      local before = of_list[member]
      if before then
        of_list[member] = before + count
      else
        of_list[member] = count
        distinct = distinct + 1
        sizes[letter] = sizes[letter] + 1
      end
    end
    pos = semi + 1
  end
  return sums, distinct, sizes
end

-- A sorted set that does not exist yet takes a group of at least NEW_SET_MIN increments as
-- one ZADD per 500 members (each count its score: the members of a group are distinct)
-- instead of one ZINCRBY each, which costs about twice as much per member. Below that size
-- the EXISTS would cost more than it saves when the set exists.
local NEW_SET_MIN = 8

-- A variadic command (`head`: its name and key) sent once per 1,000 arguments: `push(a[, b])`
-- adds arguments, `flush()` sends what is left.
local function chunked(head)
  local args = {unpack(head)}
  local function flush()
    if #args > #head then
      redis.call(unpack(args))
    end
    args = {unpack(head)}
  end
  local function push(a, b)
    args[#args + 1] = a
    if b ~= nil then
      args[#args + 1] = b
    end
    if #args >= #head + 1000 then
      flush()
    end
  end
  return push, flush
end

-- Adds `counts` (member -> count, `size` of them) to the sorted set `key`.
local function add_counts(key, counts, size)
  if size >= NEW_SET_MIN and redis.call('EXISTS', key) == 0 then
    local push, flush = chunked({'ZADD', key})
    for member, count in pairs(counts) do
      push(count, member)
    end
    flush()
    return
  end
  for member, count in pairs(counts) do
    redis.call('ZINCRBY', key, count, member)
  end
end

-- Appends `record` to `pending`; once it passes FOLD_BYTES, folds it into the sorted sets
-- `lists` (letter -> key) and deletes it.
local function append_record(pending, record, lists)
  if redis.call('APPEND', pending, record) <= FOLD_BYTES then
    return
  end
  local sums, _, sizes = sum_increments(redis.call('GET', pending), lists)
  for letter, members in pairs(sums) do
    add_counts(lists[letter], members, sizes[letter])
  end
  redis.call('DEL', pending)
end
