-- prune_hosts.lua: delete host registrations whose heartbeat is too old.
--
-- KEYS[1]  the hosts hash: host_id -> JSON chat.Host plus "hb_ms"
-- ARGV[1]  now, unix milliseconds (the caller's clock)
-- ARGV[2]  age limit, milliseconds: registrations with now - hb_ms > this go
--
-- Undecodable registrations go too. Returns the ids removed.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local removed = {}
for i = 1, #all, 2 do
  local ok, h = pcall(cjson.decode, all[i + 1])
  local hb = nil
  if ok and type(h) == 'table' then
    hb = tonumber(h.hb_ms)
  end
  if hb == nil or now - hb > limit then
    redis.call('HDEL', KEYS[1], all[i])
    removed[#removed + 1] = all[i]
  end
end
return removed
