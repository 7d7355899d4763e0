-- heartbeat.lua: claim or refresh one host's registration in the hosts hash.
--
-- KEYS[1]  the hosts hash: host_id -> JSON chat.Host plus "hb_ms"
-- ARGV[1]  host id (the hash field)
-- ARGV[2]  instance of the calling process
-- ARGV[3]  now, unix milliseconds (the caller's clock)
-- ARGV[4]  heartbeat ttl, milliseconds: a registration whose hb_ms is this old is stale
-- ARGV[5]  the new value: JSON with hb_ms = ARGV[3]
--
-- Returns -1 and writes nothing when another instance whose heartbeat is within the ttl
-- holds the id. Otherwise writes ARGV[5] and returns 1 when the registration is fresh
-- (the field was absent or undecodable, held by another instance whose heartbeat is
-- stale, or our own registration had gone stale), 0 when our own live registration was
-- refreshed.
local now = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local fresh = 1
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, h = pcall(cjson.decode, cur)
  if ok and type(h) == 'table' then
    local hb = tonumber(h.hb_ms)
    local live = hb ~= nil and now - hb < ttl
    if h.instance == ARGV[2] then
      if live then
        fresh = 0
      end
    elseif live then
      return -1
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
return fresh
