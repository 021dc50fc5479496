-- chatstats: a room's all-time list read with its minutes not added to it yet (`rollup.lua`
-- folds them at the hour's roll-up). What follows this part reads the chosen sets as `KEYS`.
--   KEYS: the room's `folded` string, its all-time list, then minute lists
--   ARGV: the script's own, then the hour of each minute list
-- Minutes of hours at or before the `folded` hour (folded since the caller looked) are left
-- out: a roll-up between the caller's look and this call counts nothing twice.
local function unfolded(own)
  local last = tonumber(redis.call('GET', KEYS[1]) or '')
  local keys = {KEYS[2]}
  if last then
    for q = 3, #KEYS do
      if tonumber(ARGV[own + q - 2]) > last then
        keys[#keys + 1] = KEYS[q]
      end
    end
  end
  return keys
end
