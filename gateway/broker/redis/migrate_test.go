package redis_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
	"github.com/duplexws/duplex/internal/testredis"
)

// testSlotMigration moves the hash slot of a subscribed channel to another
// master, as resharding does: the server unsubscribes the slot's shard
// channels on the old master by itself, and the subscriber must follow the
// slot to the new one, reporting the link lost and back, and keep the
// stream.
func testSlotMigration(t *testing.T, c *testredis.Cluster) {
	o := redis.Options{Addrs: c.Addrs(), Prefix: "migrate"}
	a, rec := start(t, o)
	b, _ := start(t, o)
	ctx := context.Background()
	const ch = "migrating"
	if err := a.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	hist := broker.PublishOptions{HistorySize: 10}
	first, err := b.Publish(ctx, ch, []byte(`{"i":1}`), nil, hist)
	if err != nil {
		t.Fatal(err)
	}
	rec.WaitPublications(t, ch, 1, 5*time.Second)

	// The channel's keys name its slot.
	var key string
	for _, n := range c.Nodes() {
		for _, k := range do(t, n, "KEYS", "migrate:{*}:m:"+ch).([]any) {
			key = k.(string)
		}
	}
	if key == "" {
		t.Fatal("the channel's meta key is on no master")
	}
	slot := strconv.FormatInt(do(t, c.Nodes()[0], "CLUSTER", "KEYSLOT", key).(int64), 10)
	src, dst := slotOwner(t, c, slot), -1
	for i := range c.Nodes() {
		if i != src {
			dst = i
			break
		}
	}
	from, to := c.Nodes()[src], c.Nodes()[dst]
	fromID, toID := do(t, from, "CLUSTER", "MYID").(string), do(t, to, "CLUSTER", "MYID").(string)
	do(t, to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	do(t, from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	for {
		ks := do(t, from, "CLUSTER", "GETKEYSINSLOT", slot, "100").([]any)
		if len(ks) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.Port()), "", "0", "5000", "KEYS"}
		for _, k := range ks {
			args = append(args, k.(string))
		}
		do(t, from, args...)
	}
	for _, n := range c.Nodes() {
		do(t, n, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	}

	rec.WaitLinkLost(t, 1, 10*time.Second)
	rec.WaitLinkBack(t, 1, 10*time.Second)
	var pos broker.Position
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		pos, err = b.Publish(cctx, ch, []byte(`{"i":2}`), nil, hist)
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Publish after the migration: %v", err)
	}
	if pos != (broker.Position{Offset: 2, Epoch: first.Epoch}) {
		t.Errorf("Publish after the migration: %+v, want offset 2 of %q", pos, first.Epoch)
	}
	pubs := rec.WaitPublications(t, ch, 2, 5*time.Second)
	if last := pubs[len(pubs)-1]; last.Position != pos {
		t.Errorf("delivered %+v last, want %+v", last.Position, pos)
	}
	if got := slotOwner(t, c, slot); got != dst {
		t.Errorf("slot %s on master %d after the migration, want %d", slot, got, dst)
	}
}

// slotOwner returns the index of the master that serves slot, as master
// 0 sees it.
func slotOwner(t *testing.T, c *testredis.Cluster, slot string) int {
	t.Helper()
	s, _ := strconv.Atoi(slot)
	for _, line := range strings.Split(do(t, c.Nodes()[0], "CLUSTER", "NODES").(string), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || s < l || s > h {
				continue
			}
			for i, n := range c.Nodes() {
				if strings.HasPrefix(f[1], n.Addr()+"@") {
					return i
				}
			}
		}
	}
	t.Fatalf("no master serves slot %s", slot)
	return -1
}
