package redisbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/duplexws/duplex/internal/testredis"
)

// channels is how many channels the publishers spread over, each its own
// stream, as on a gateway with many rooms.
const channels = 1024

// body is a publication as the broker encodes it: a ClientInfo and ~100
// bytes of JSON.
var body = `3:u424:c42-` + `{"text":"` + string(make([]byte, 80)) + `","n":42}`

// script is the broker's publish script, read from the main module.
func script(b *testing.B) string {
	src, err := os.ReadFile(filepath.Join("..", "..", "gateway", "broker", "redis", "publish.lua"))
	if err != nil {
		b.Fatal(err)
	}
	return string(src)
}

// args are the script's keys and arguments for channel i, as the broker
// passes them on a standalone server: history of 100 for a day.
func args(i int) (keys, argv []string) {
	ch := "bench:" + strconv.Itoa(i)
	return []string{"duplexbench:m:" + ch, "duplexbench:h:" + ch},
		[]string{"duplexbench:c:" + ch, body, "epochAAA", "100", "0", "86400000", "publish"}
}

// publisher runs the script once for channel i.
type publisher func(ctx context.Context, i int) error

// BenchmarkPublish runs the publish script from 1, 16 and 256 goroutines
// with each client and reports publications per second.
func BenchmarkPublish(b *testing.B) {
	srv := testredis.Start(b, testredis.Options{})
	src := script(b)
	clients := []struct {
		name string
		make func(b *testing.B) publisher
	}{
		{"rueidis", func(b *testing.B) publisher {
			c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Close)
			lua := rueidis.NewLuaScript(src)
			return func(ctx context.Context, i int) error {
				keys, argv := args(i)
				return lua.Exec(ctx, c, keys, argv).Error()
			}
		}},
		{"rueidis-broker", func(b *testing.B) publisher {
			// The options of gateway/broker/redis.
			c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()},
				DisableCache: true, ForceSingleClient: true, AlwaysPipelining: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.Close)
			lua := rueidis.NewLuaScript(src)
			return func(ctx context.Context, i int) error {
				keys, argv := args(i)
				return lua.Exec(ctx, c, keys, argv).Error()
			}
		}},
		{"go-redis", func(b *testing.B) publisher {
			return goRedis(b, srv.Addr(), src, 0)
		}},
		{"go-redis-pool256", func(b *testing.B) publisher {
			return goRedis(b, srv.Addr(), src, 256)
		}},
	}
	for _, c := range clients {
		for _, workers := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("client=%s/publishers=%d", c.name, workers), func(b *testing.B) {
				publish := c.make(b)
				ctx := context.Background()
				for i := range channels { // load the script, make the streams
					if err := publish(ctx, i); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				var next atomic.Int64
				var failed atomic.Pointer[error]
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for {
							n := next.Add(1)
							if n > int64(b.N) {
								return
							}
							if err := publish(ctx, int(n%channels)); err != nil {
								failed.CompareAndSwap(nil, &err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
			})
		}
	}
}

// goRedis returns a go-redis publisher; pool 0 is go-redis's default pool
// size (10 per GOMAXPROCS).
func goRedis(b *testing.B, addr, src string, pool int) publisher {
	c := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: pool})
	b.Cleanup(func() { c.Close() })
	lua := goredis.NewScript(src)
	return func(ctx context.Context, i int) error {
		keys, argv := args(i)
		a := make([]any, len(argv))
		for j, v := range argv {
			a[j] = v
		}
		return lua.Run(ctx, c, keys, a...).Err()
	}
}
