-- ARGV[1] "stats" for {clients, users}; else the members hash, flat.
expire(now_ms())
if ARGV[1] == 'stats' then
  return {redis.call('hlen', members), redis.call('hlen', users)}
end
return redis.call('hgetall', members)
