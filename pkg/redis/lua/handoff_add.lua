-- handoff_add.lua: record a missed hand-off, keeping the highest seq per thread.
--
-- KEYS[1]  handoff:<host_id>, hash thread_id -> max seq
-- ARGV[1]  thread id
-- ARGV[2]  seq (decimal integer)
-- ARGV[3]  ttl of KEYS[1], seconds (renewed on every add)
--
-- Returns the seq now recorded for the thread.
local seq = tonumber(ARGV[2])
local cur = nil -- HGET answers false, not nil, for a missing field
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  cur = tonumber(raw)
end
if cur == nil or seq > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  cur = seq
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return cur
