// Package redisbench compares two Redis clients for the gateway's Redis
// broker, rueidis and go-redis, on the workload that decides: the broker's
// publish script (gateway/broker/redis/publish.lua) run by many goroutines
// at once against a local redis-server. See README.md.
package redisbench
