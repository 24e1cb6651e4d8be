-- ARGV[1] client, ARGV[2] user, ARGV[3] encoded ClientInfo, ARGV[4] ttl, ms
local now = now_ms()
expire(now)
local client, user, ttl = ARGV[1], ARGV[2], tonumber(ARGV[4])
local old = redis.call('hget', members, client)
if not old then
  count_user(user, 1)
elseif user_of(old) ~= user then
  count_user(user_of(old), -1)
  count_user(user, 1)
end
redis.call('hset', members, client, ARGV[3])
redis.call('zadd', expiries, string.format('%.0f', now + ttl), client)
-- The keys live as long as their longest-lived member.
for _, k in ipairs(KEYS) do
  if redis.call('pttl', k) < ttl then
    redis.call('pexpire', k, ttl)
  end
end
return 1
