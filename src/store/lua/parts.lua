-- chatstats: the tally's and the detail's parts of an inbox call, prepended to the inbox
-- scripts after `apply.lua` and `detail.lua` (wrapped as `apply_part(KEYS, ARGV)` and
-- `detail_part(KEYS, ARGV)`): from KEYS[k] and ARGV[a] on, per part its number of keys, its
-- number of arguments and its arguments; a part of no keys is nothing to apply.
local function apply_parts(k, a)
  local function part(run)
    local nkeys, nargs = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local keys, args = {}, {}
    for j = 1, nkeys do
      keys[j] = KEYS[k + j - 1]
    end
    for j = 1, nargs do
      args[j] = ARGV[a + 1 + j]
    end
    k, a = k + nkeys, a + 2 + nargs
    if nkeys > 0 then
      run(keys, args)
    end
  end
  part(apply_part)
  part(detail_part)
end
