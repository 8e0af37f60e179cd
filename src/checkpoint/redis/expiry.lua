-- Lets a lease expire at a time (its shard left the stream), or keeps it
-- for good. Never re-creates a deleted lease; never touches the counter.
--
-- KEYS[1]  the lease hash
-- ARGV[1]  the expiry time (epoch seconds), or "" to keep the lease
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
if ARGV[1] == '' then
    redis.call('HDEL', KEYS[1], 'ttl')
    redis.call('PERSIST', KEYS[1])
else
    redis.call('HSET', KEYS[1], 'ttl', ARGV[1])
    redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[1]))
end
return 1
