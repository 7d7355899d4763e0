-- ratelimit.lua: a token bucket. The bucket holds up to ARGV[2] tokens and gains
-- ARGV[1] per second; a missing bucket is full.
--
-- KEYS[1]  ratelimit:<key>, hash {tokens = float, ts_ms = unix ms of the last refill}
-- ARGV[1]  rate, tokens per second (> 0)
-- ARGV[2]  burst, the capacity (> 0)
-- ARGV[3]  n, the tokens asked for (> 0)
-- ARGV[4]  now, unix milliseconds (the caller's clock)
-- ARGV[5]  "1" to take the tokens when there are enough (Allow), "0" to only look (Peek),
--          "r" to give n tokens back, never past burst (Refund; answers {1, 0})
--
-- Returns {ok, retry_ms}: ok is 1 when n tokens are there (and, with ARGV[5] = "1",
-- were taken), else 0 and retry_ms is how long until n are there. Peek writes nothing;
-- Allow writes the refilled state and sets the key to expire after the time a full
-- refill takes, since a missing bucket reads as full.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local take = ARGV[5] == '1'
local refund = ARGV[5] == 'r'

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts_ms')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
-- A clock behind the one that last wrote (another host) refills nothing and never
-- moves ts back.
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end

local ok = 0
local retry = 0
if refund then
  ok = 1
  tokens = math.min(burst, tokens + n)
  take = true -- write the state below
elseif tokens >= n then
  ok = 1
  if take then
    tokens = tokens - n
  end
else
  retry = math.ceil((n - tokens) * 1000 / rate)
end

if take then
  -- tostring keeps integers plain (a number argument may be sent as 1.7e+12).
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts_ms', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], tostring(math.ceil(burst * 1000 / rate)))
end
return {ok, retry}
