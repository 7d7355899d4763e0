-- presence_remove.lua: delete one user's presence entries and, when that leaves the
-- user with none, record when they were last seen. Both keys carry the user's hash
-- tag, so they share a slot.
--
-- KEYS[1]  presence:{<user_id>}, hash conn_id -> JSON entry
-- KEYS[2]  lastseen:{<user_id>}, string
-- ARGV[1]  now, RFC 3339 UTC as a JSON string, quotes included (the value written to KEYS[2])
-- ARGV[2]  ttl of KEYS[2], seconds
-- ARGV[3..] conn ids to delete
--
-- Returns the number of entries deleted. Last seen is written only when this call
-- deleted something and no entry is left, so a repeated removal changes nothing.
local removed = 0
for i = 3, #ARGV do
  removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
end
if removed > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
return removed
