-- socket_reserve.lua: claim one of a user's socket slots (contract §8: open sockets of
-- one user), counting and claiming in one step so that concurrent upgrades, on any
-- hosts, cannot all pass the count. Both keys carry the user's hash tag, so they share
-- a slot.
--
-- KEYS[1]  presence:{<user_id>}, hash conn_id -> JSON entry {host_id, conn_id, since, instance}
-- KEYS[2]  upgrading:{<user_id>}, sorted set conn_id -> expiry (unix ms): slots claimed
--          by upgrades whose socket has not registered its presence entry yet
-- ARGV[1]  now, unix milliseconds (the caller's clock)
-- ARGV[2]  ttl of a claim, milliseconds
-- ARGV[3]  the limit (sockets per user)
-- ARGV[4]  conn id of the socket being opened
-- ARGV[5]  '1' when entries of hosts not listed below count as dead, '0' when they
--          may be of a host the caller does not know yet
-- ARGV[6..] live hosts, as pairs: host_id, instance. An entry counts when its host is
--          listed and its instance is empty or the host's (as Directory.AliveInstance).
--
-- Returns {status, n}: status 1 and the claim added (n counts it), 0 when n live
-- sockets and claims already reach the limit, -1 when only entries of unlisted hosts
-- could reach it (nothing written: the caller refreshes its view of the hosts and
-- calls again with ARGV[5] = '1'). Expired claims are removed; a claim whose socket
-- has registered (its conn id is in KEYS[1]) is not counted twice.
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local live = {}
for i = 6, #ARGV - 1, 2 do
  live[ARGV[i]] = ARGV[i + 1]
end
local n, unknown = 0, 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local ok, e = pcall(cjson.decode, v)
  if ok and type(e) == 'table' and type(e.host_id) == 'string' then
    local inst = live[e.host_id]
    if inst ~= nil and (type(e.instance) ~= 'string' or e.instance == '' or e.instance == inst) then
      n = n + 1
    else
      unknown = unknown + 1
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if id ~= ARGV[4] and redis.call('HEXISTS', KEYS[1], id) == 0 then
    n = n + 1
  end
end
if n >= limit then
  return {0, n}
end
if ARGV[5] ~= '1' and n + unknown >= limit then
  return {-1, n}
end
redis.call('ZADD', KEYS[2], now + ttl, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, n + 1}
