-- chatstats: appends a batch of posted payloads to the inbox stream, in order, all or nothing,
-- at most once per (writer, sequence number) when marked (`mark.lua` is prepended): a
-- forwarder's retry of a call whose reply was lost (a timeout while Redis stalled) is recognised
-- and not appended again. A script is atomic; and under maxmemory Redis refuses a script's
-- first write, never a later one, so an out-of-memory Redis refuses the whole batch rather than
-- half of it. No MAXLEN: the inbox is a queue, and only its consumers may drop what they have
-- acknowledged.
--   KEYS[1]: the inbox stream; KEYS[2]: the writer's key (when marked)
--   ARGV: seq (0: no mark), window, then the payloads; each becomes one entry whose field `p`
--         holds it
-- Returns how many payloads the batch holds (appended now, or by the call it retries).
if admit(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])) then
  for i = 3, #ARGV do
    redis.call('XADD', KEYS[1], '*', 'p', ARGV[i])
  end
end
return #ARGV - 2
