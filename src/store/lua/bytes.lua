-- chatstats: byte order of two strings, whatever the server's locale (Lua's `>` follows it);
-- prepended to the scripts that compare members or ids.
local function greater(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return #a > #b
end
