-- Appends a publication to a channel's stream and publishes it, atomically,
-- so that offset order is delivery order on every node.
-- KEYS[1] the stream's meta hash: e (epoch), o (last offset), s (history
--         size of the last publication)
-- KEYS[2] the history, a Redis Stream whose entry IDs are <offset>-0, with
--         fields b (the encoded publication) and x (expiry, Unix ms; 0 none),
--         trimmed by whole nodes (MAXLEN ~), which costs a fraction of an
--         exact trim: it may hold a node's worth more than the size, which
--         history.lua does not read
-- ARGV[1] the pub/sub channel       ARGV[2] the encoded publication
-- ARGV[3] an epoch for a new stream ARGV[4] history size
-- ARGV[5] history TTL, ms (0 none)  ARGV[6] the meta's TTL, ms
-- ARGV[7] publish or spublish
-- Returns {offset, epoch}.
local m = redis.call('hmget', KEYS[1], 'e', 's')
local epoch = m[1]
if not epoch then
  -- A new life of the stream: what an older one left must not mix in.
  epoch = ARGV[3]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 's', ARGV[4])
elseif m[2] ~= ARGV[4] then
  redis.call('hset', KEYS[1], 's', ARGV[4])
end
local offset = redis.call('hincrby', KEYS[1], 'o', 1)
local ttl = tonumber(ARGV[5])
local expires = '0'
if ttl > 0 then
  local t = redis.call('time')
  expires = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl)
end
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[4], offset .. '-0', 'b', ARGV[2], 'x', expires)
redis.call('pexpire', KEYS[1], ARGV[6])
-- The history is useless once its newest publication expired.
if ttl > 0 then
  redis.call('pexpire', KEYS[2], ttl)
else
  redis.call('pexpire', KEYS[2], ARGV[6])
end
redis.call(ARGV[7], ARGV[1], 'P' .. offset .. ' ' .. epoch .. ' ' .. ARGV[2])
return {offset, epoch}
