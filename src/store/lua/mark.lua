-- chatstats: exactly once per (writer, sequence number), shared by every script that applies
-- increments (this text is prepended to them). See src/store/mod.rs (`Mark`).
--
-- The writer key holds the highest applied sequence number H (a 64-bit integer at bit 0) and a
-- ring of `window` bits from bit 64: bit 64 + s % window is set once s is applied, for
-- H - window < s <= H. The worker never has a call in flight `window` or more numbers below its
-- newest, so any s <= H - window was acknowledged before H was sent: it is a duplicate. The key
-- has a fixed size in every state. When it is lost (Redis lost data, or it expired after a
-- quiet day), the next call starts it afresh with the same rule.
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
  if h <= 0 or seq - h >= window then
    redis.call('DEL', wkey)
  else
    -- Positions of the skipped numbers (h, seq) now stand for calls not applied yet.
    for s = h + 1, seq - 1 do
      redis.call('SETBIT', wkey, 64 + s % window, 0)
    end
  end
  redis.call('BITFIELD', wkey, 'SET', 'i64', 0, seq, 'SET', 'u1', bit, 1)
  redis.call('EXPIRE', wkey, 86400)
  return true
end
