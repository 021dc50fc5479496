-- chatstats: exactly once per (writer, sequence number), shared by every script that applies
-- increments (this text is prepended to them). See src/store/mod.rs (`Mark`).
--
-- The writer key holds the highest applied sequence number H (a 64-bit integer at bit 0) and a
-- ring of `window` bits from bit 64: bit 64 + s % window is set once s is applied, for
-- H - window < s <= H. The worker never has a call in flight `window` or more numbers below its
-- newest, so any s <= H - window was acknowledged before H was sent: it is a duplicate. The key
-- has a fixed size in every state, and expires a day after H last crossed a multiple of the
-- window. When it is lost (Redis lost data, or it expired after a quiet day), the next call
-- starts it afresh with the same rule.
local function admit(wkey, seq, window)
  if seq <= 0 then
    return true
  end
  local h = redis.call('BITFIELD', wkey, 'GET', 'i64', 0)[1]
  local bit = 64 + seq % window
  if seq <= h - window then
    return false
  elseif seq <= h then
    if redis.call('GETBIT', wkey, bit) == 1 then
      return false
    end
    redis.call('SETBIT', wkey, bit, 1)
    return true
  end
  local fresh = h <= 0 or seq - h >= window
  if fresh then
    redis.call('DEL', wkey)
  end
  -- One BITFIELD (a few for a very wide window, within Lua's stack): the positions of the
  -- skipped numbers (h, seq) cleared — they now stand for calls not applied yet — then the new
  -- highest number and its bit. On Redis Cluster a shard sees only the numbers of the calls
  -- that touch it, so skips are the rule there.
  local args = {'BITFIELD', wkey}
  if not fresh then
    for s = h + 1, seq - 1 do
      args[#args + 1] = 'SET'
      args[#args + 1] = 'u1'
      args[#args + 1] = 64 + s % window
      args[#args + 1] = 0
      if #args >= 4000 then
        redis.call(unpack(args))
        args = {'BITFIELD', wkey}
      end
    end
  end
  args[#args + 1] = 'SET'
  args[#args + 1] = 'i64'
  args[#args + 1] = 0
  args[#args + 1] = seq
  args[#args + 1] = 'SET'
  args[#args + 1] = 'u1'
  args[#args + 1] = bit
  args[#args + 1] = 1
  redis.call(unpack(args))
  -- The expiry is pushed back once per `window` numbers, not at every call.
  if fresh or math.floor(seq / window) ~= math.floor(h / window) then
    redis.call('EXPIRE', wkey, 86400)
  end
  return true
end
