-- A conditional lease write (take, renew, checkpoint, release, pin_start,
-- and an import's write from outside the group),
-- run atomically by the server.
--
-- KEYS[1]  the lease hash
-- ARGV[1]  "take": the counter must be ARGV[3] (any owner or none);
--          "owner": the owner must be ARGV[2] and the counter ARGV[3];
--          "free": the counter must be ARGV[3], and the owner is left to
--          the fields given (an import deletes `ref`)
-- ARGV[2]  the owner (the new one for "take")
-- ARGV[3]  the expected counter, ARGV[4] that counter plus one
-- ARGV[5]  this write's id: the same in every retry of one logical write
-- ARGV[6]  now (epoch seconds, the `ts` field)
-- ARGV[7]  n, then n field/value pairs to set, then fields to delete
--
-- Returns {status, field, value, ...} with the lease as it is afterwards:
-- status 1 applied now, 2 applied by an earlier run of this same write
-- (its answer was lost), 0 refused, -1 no such lease.
local key = KEYS[1]
local counter = redis.call('HGET', key, 'lease_counter')
if not counter then
    return {-1}
end
local owner = redis.call('HGET', key, 'ref')
local matches = counter == ARGV[3]
if ARGV[1] == 'owner' then
    matches = matches and owner == ARGV[2]
end
if not matches then
    -- Our own write already landed: the counter it set, our id on it.
    local status = 0
    if counter == ARGV[4] and redis.call('HGET', key, 'write_id') == ARGV[5] then
        status = 2
    end
    local result = redis.call('HGETALL', key)
    table.insert(result, 1, status)
    return result
end
local set = {'lease_counter', ARGV[4], 'write_id', ARGV[5], 'ts', ARGV[6]}
if ARGV[1] == 'take' then
    table.insert(set, 'ref')
    table.insert(set, ARGV[2])
end
local pairs_count = tonumber(ARGV[7])
for i = 0, pairs_count - 1 do
    table.insert(set, ARGV[8 + 2 * i])
    table.insert(set, ARGV[9 + 2 * i])
end
redis.call('HSET', key, unpack(set))
local first_delete = 8 + 2 * pairs_count
if #ARGV >= first_delete then
    redis.call('HDEL', key, unpack(ARGV, first_delete))
end
local result = redis.call('HGETALL', key)
table.insert(result, 1, 1)
return result
