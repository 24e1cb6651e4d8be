-- The common part of the presence scripts.
-- KEYS[1] members: hash client -> encoded ClientInfo (user first)
-- KEYS[2] expiries: sorted set client -> expiry, Unix ms
-- KEYS[3] users: hash user -> number of its clients
local members, expiries, users = KEYS[1], KEYS[2], KEYS[3]

local function now_ms()
  local t = redis.call('time')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The user of an encoded ClientInfo: "<length>:<user>...".
local function user_of(v)
  local colon = string.find(v, ':', 1, true)
  local n = tonumber(string.sub(v, 1, colon - 1))
  return string.sub(v, colon + 1, colon + n)
end

local function count_user(user, delta)
  if redis.call('hincrby', users, user, delta) <= 0 then
    redis.call('hdel', users, user)
  end
end

local function forget(client)
  local v = redis.call('hget', members, client)
  if v then
    redis.call('hdel', members, client)
    count_user(user_of(v), -1)
  end
  redis.call('zrem', expiries, client)
end

-- Members whose expiry has passed leave.
local function expire(now)
  for _, client in ipairs(redis.call('zrangebyscore', expiries, '-inf', '(' .. string.format('%.0f', now))) do
    forget(client)
  end
end
