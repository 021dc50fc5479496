-- chatstats: fields of several hashes in one call (activity counts).
--   KEYS: the hashes
--   ARGV: per hash, in the order of KEYS, a count c and c field names
-- Returns the values in the same order, '0' for a missing field or hash.
local out, i = {}, 1
for k = 1, #KEYS do
  local count = tonumber(ARGV[i])
  i = i + 1
  local args = {'HMGET', KEYS[k]}
  for _ = 1, count do
    args[#args + 1] = ARGV[i]
    i = i + 1
  end
  local values = redis.call(unpack(args))
  for j = 1, count do
    out[#out + 1] = values[j] or '0'
  end
end
return out
