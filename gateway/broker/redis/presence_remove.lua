-- ARGV[1] client
forget(ARGV[1])
return 1
