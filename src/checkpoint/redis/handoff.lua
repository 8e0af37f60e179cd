-- Asks the owner of a lease to hand it over; no counter bump, so the
-- owner's own conditional writes keep working.
--
-- KEYS[1]  the lease hash
-- ARGV     the owner seen, the asker
-- Returns 1 when the request is recorded (also when an earlier run of this
-- same request recorded it), 0 otherwise.
if redis.call('HGET', KEYS[1], 'ref') ~= ARGV[1] then
    return 0
end
local current = redis.call('HGET', KEYS[1], 'handoff_to')
if current then
    if current == ARGV[2] then
        return 1
    end
    return 0
end
redis.call('HSET', KEYS[1], 'handoff_to', ARGV[2])
return 1
