-- Creates a free lease unless one exists, and lists its shard in the
-- scope's set (both atomically, so the set never misses a lease).
--
-- KEYS[1]  the lease hash, KEYS[2] the scope's set of shards
-- ARGV     group, stream, shard, parents (a JSON list), now
-- Returns 1 when created, 0 when it existed.
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
redis.call('HSET', KEYS[1], 'app', ARGV[1], 'stream', ARGV[2], 'shard', ARGV[3],
    'lease_counter', '0', 'parents', ARGV[4], 'ts', ARGV[5])
return 1
