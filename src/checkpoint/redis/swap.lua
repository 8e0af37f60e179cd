-- Replaces a string only if it is still the value read: async-kinesis's
-- Redis layout has no counter, so the whole value stands in for one.
--
-- KEYS[1]  the key
-- ARGV[1]  the value read, "" when the key was absent; ARGV[2] the new one
-- Returns 1 when written, 0 when the value had changed.
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
