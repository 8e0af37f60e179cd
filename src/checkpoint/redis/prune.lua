-- Drops from the scope's set the shards whose lease expired. Checked here,
-- atomically, so a lease created meanwhile is never unlisted.
--
-- KEYS[1]  the scope's set, KEYS[2..] the lease hashes of ARGV's shards
for i, shard in ipairs(ARGV) do
    if redis.call('EXISTS', KEYS[i + 1]) == 0 then
        redis.call('SREM', KEYS[1], shard)
    end
end
return 0
