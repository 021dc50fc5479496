-- chatstats: appends a batch of posted payloads to the inbox stream, in order, all or nothing.
-- A script is atomic; and under maxmemory Redis refuses a script's first write, never a later
-- one, so an out-of-memory Redis refuses the whole batch rather than half of it. No MAXLEN:
-- the inbox is a queue, and only its consumers may drop what they have acknowledged.
--   KEYS[1]: the inbox stream
--   ARGV: the payloads; each becomes one entry whose field `p` holds it
for i = 1, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'p', ARGV[i])
end
return #ARGV
