-- Reads a channel's stream: its position and a selection of its history
-- from the same moment. It writes nothing: a stream never published to
-- stays absent and reads as offset 0 without an epoch.
-- KEYS[1] the meta hash, KEYS[2] the history (see publish.lua)
-- ARGV[1] limit (-1 all, 0 none)  ARGV[2] "1" for newest first
-- ARGV[3] since offset, "" for none  ARGV[4] since epoch
-- Returns {offset, epoch, id1, publication1, id2, publication2, ...}.
local m = redis.call('hmget', KEYS[1], 'e', 'o', 's')
local epoch = m[1]
if not epoch then
  return {0, ''}
end
local top = tonumber(m[2]) or 0
-- The stream is trimmed by whole nodes: what it holds beyond the last
-- size publications is not history. (No size: trimmed exactly, by an
-- older version.)
local size = tonumber(m[3])
local limit = tonumber(ARGV[1])
local since = ARGV[3]
if limit == 0 or (since ~= '' and ARGV[4] ~= epoch) then
  return {top, epoch}
end
-- The oldest publication still alive: they expire oldest first, so one
-- look suffices unless some expired since the last publication.
local now, first
local from, count = '-', 1
while true do
  local batch = redis.call('xrange', KEYS[2], from, '+', 'COUNT', count)
  for _, item in ipairs(batch) do
    local x = tonumber(item[2][4])
    if x ~= 0 and not now then
      local t = redis.call('time')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    if x == 0 or x >= now then
      first = item[1]
      break
    end
  end
  if first or #batch < count then
    break
  end
  from = '(' .. batch[#batch][1]
  count = 100
end
if not first then
  return {top, epoch}
end
local lo = tonumber(string.match(first, '^%d+'))
if size then
  lo = math.max(lo, top - size + 1)
end
if since ~= '' then
  lo = math.max(lo, tonumber(since) + 1)
end
if lo > top then
  return {top, epoch}
end
lo = string.format('%.0f', lo)
local items
if ARGV[2] == '1' then
  if limit > 0 then
    items = redis.call('xrevrange', KEYS[2], '+', lo, 'COUNT', limit)
  else
    items = redis.call('xrevrange', KEYS[2], '+', lo)
  end
elseif limit > 0 then
  items = redis.call('xrange', KEYS[2], lo, '+', 'COUNT', limit)
else
  items = redis.call('xrange', KEYS[2], lo, '+')
end
local out = {top, epoch}
for _, item in ipairs(items) do
  out[#out + 1] = item[1]
  out[#out + 1] = item[2][2]
end
return out
