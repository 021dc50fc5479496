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
-- `src/store/redis.rs` (`record`) and read back by `src/store/redis.rs` (`parse_records`) too.
local FOLD_BYTES = 4096

-- Calls each(letter, member, count) for every increment of `text`, in order; stops at the
-- first malformed one (there is none unless the key was written by something else).
local function each_increment(text, each)
  local pos, size = 1, #text
  while pos < size do
    local colon = string.find(text, ':', pos + 1, true)
    if not colon then
      return
    end
    local len = tonumber(string.sub(text, pos + 1, colon - 1))
    local semi = len and string.find(text, ';', colon + len + 1, true)
    if not semi then
      return
    end
    local count = tonumber(string.sub(text, colon + len + 1, semi - 1))
    if not count then
      return
    end
    each(string.sub(text, pos, pos), string.sub(text, colon + 1, colon + len), count)
    pos = semi + 1
  end
end

-- The increments of `text` summed per member, for the lists whose letters are in `wanted` (a
-- set of letters): sums[letter][member], and the number of distinct members.
local function sum_increments(text, wanted)
  local sums, distinct = {}, 0
  each_increment(text, function(letter, member, count)
    if wanted[letter] then
      local of_list = sums[letter]
      if not of_list then
        of_list = {}
        sums[letter] = of_list
      end
      local before = of_list[member]
      if before then
        of_list[member] = before + count
      else
        of_list[member] = count
        distinct = distinct + 1
      end
    end
  end)
  return sums, distinct
end

-- Appends `record` to `pending`; once it passes FOLD_BYTES, folds it into the sorted sets
-- `lists` (letter -> key) and deletes it.
local function append_record(pending, record, lists)
  if redis.call('APPEND', pending, record) <= FOLD_BYTES then
    return
  end
  local sums = sum_increments(redis.call('GET', pending), lists)
  for letter, members in pairs(sums) do
    local key = lists[letter]
    for member, count in pairs(members) do
      redis.call('ZINCRBY', key, count, member)
    end
  end
  redis.call('DEL', pending)
end
