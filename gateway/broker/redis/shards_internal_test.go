package redis

import (
	"runtime"
	"testing"
)

// TestStandaloneShards: a node on a standalone server has a pub/sub
// connection per core, from 2 to maxStandaloneShards, each delivered by a
// goroutine of its own; a Cluster keeps its 16, which name its keys.
func TestStandaloneShards(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs, want := range map[int]int{1: 2, 2: 2, 4: 4, 8: 8, 64: maxStandaloneShards} {
		runtime.GOMAXPROCS(procs)
		o, err := Options{Addrs: []string{"127.0.0.1:1"}}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if o.Shards != want {
			t.Errorf("GOMAXPROCS %d: %d shards, want %d", procs, o.Shards, want)
		}
		c, err := Options{Addrs: []string{"127.0.0.1:1"}, Cluster: true}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if c.Shards != defaultClusterShards {
			t.Errorf("Cluster, GOMAXPROCS %d: %d shards, want %d", procs, c.Shards, defaultClusterShards)
		}
	}
	runtime.GOMAXPROCS(1)
	if o, _ := (Options{Addrs: []string{"127.0.0.1:1"}, Shards: 1}).withDefaults(); o.Shards != 1 {
		t.Errorf("Shards: 1 given, %d taken", o.Shards)
	}
}
