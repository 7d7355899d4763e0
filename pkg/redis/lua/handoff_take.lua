-- handoff_take.lua: read and clear a host's missed hand-offs in one step, so that a
-- record added concurrently is either returned now or kept for the next take.
--
-- KEYS[1]  handoff:<host_id>, hash thread_id -> max seq
--
-- Returns the hash as a flat array: thread_id, seq, thread_id, seq, ...
local all = redis.call('HGETALL', KEYS[1])
if #all > 0 then
  redis.call('DEL', KEYS[1])
end
return all
