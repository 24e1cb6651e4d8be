// Command clusterbench measures the gateway across nodes: duplex serve
// processes (built from the tree) on one broker — Redis (redis-server),
// NATS JetStream (nats-server) or, as the reference, the memory broker on
// one node — with many real client connections on loopback. For each
// setup it measures deliveries per second to one channel that every
// client subscribes to, to a channel per client and to a channel per group
// of 10 clients (the shape of Centrifugo's published benchmark),
// publish-to-receive latency as fast as the clients receive and at half
// that rate, the CPU of the gateways, the broker and the load generators,
// and memory per connection; then a connect storm onto one presence
// channel. Before any setup it times the floor of a delivery on the
// machine (internal/floor). Every client checks the offsets of what it
// receives: a publication lost, repeated or a client disconnected fails
// the run (exit status 1).
//
// The clients come from worker processes, this program re-executed with
// -worker, each holding at most 15,000 connections, because a process may
// open only 20,000 descriptors. Run it with `make bench-cluster` (4 nodes
// × 15,000 clients) or `make bench-cluster-smoke`; it prints a markdown
// table.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/duplexws/duplex/internal/floor"
	"github.com/duplexws/duplex/internal/testgateway"
)

// options are the command's flags.
type options struct {
	nodes            int
	clients          int // per node
	duration         time.Duration
	inflight         int // per node
	pacedShare       float64
	localAddrs       int
	stormConcurrency int
	profileDir       string // "": no profiles
}

func main() {
	log.SetFlags(0)
	worker := flag.Bool("worker", false, "run as a load-generator worker (the benchmark starts these itself)")
	bin := flag.String("bin", "", "duplex binary (default: build one from the tree)")
	var o options
	flag.IntVar(&o.nodes, "nodes", 4, "gateway nodes on Redis and on NATS")
	flag.IntVar(&o.clients, "clients", 15000, "clients per node")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "publishing time of each phase")
	flag.IntVar(&o.inflight, "inflight", 4, "API requests in flight per node")
	flag.Float64Var(&o.pacedShare, "paced", 0.5, "the paced phases deliver at this share of the unpaced phase's deliveries/s")
	flag.IntVar(&o.localAddrs, "local-addrs", 32, "source addresses 127.0.0.1 … 127.0.0.N the clients dial from")
	setups := flag.String("setups", "", "broker:nodes list of throughput setups (default: memory:1,redis:1,redis:NODES,nats:NODES)")
	stormClients := flag.Int("storm", 10000, "clients of the connect storm (0: none)")
	storms := flag.String("storm-setups", "memory:1,redis:3,nats:3", "broker:nodes list of connect-storm setups")
	flag.IntVar(&o.stormConcurrency, "storm-concurrency", 1000, "handshakes in flight per worker in the storm")
	flag.StringVar(&o.profileDir, "profile", "", "write a CPU profile of the first node during each unpaced phase to this directory")
	flag.Parse()
	if *worker {
		if err := runWorker(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *setups == "" {
		*setups = fmt.Sprintf("memory:1,redis:1,redis:%d,nats:%d", o.nodes, o.nodes)
	}
	throughput, err := parseSetups(*setups)
	if err != nil {
		log.Fatal(err)
	}
	var stormSetups []setup
	if *stormClients > 0 {
		if stormSetups, err = parseSetups(*storms); err != nil {
			log.Fatal(err)
		}
	}

	dir, err := os.MkdirTemp("", "clusterbench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	if *bin == "" {
		if *bin, err = testgateway.Build(ctx, dir); err != nil {
			log.Fatal(err)
		}
	}
	configPath, err := writeConfig(dir)
	if err != nil {
		log.Fatal(err)
	}

	r := report{opts: o, started: time.Now()}
	// Before any setup, on a machine this run has not loaded yet.
	if r.floor, err = floor.Measure(floorPairs, floorRounds, floorFrame); err != nil {
		log.Printf("clusterbench: the floor of a delivery: %v", err)
	}
	for _, s := range throughput {
		log.Printf("clusterbench: %v, %d clients", s, s.nodes*o.clients)
		t := time.Now()
		res, err := runThroughput(ctx, *bin, configPath, s, o)
		log.Printf("clusterbench: %v took %v", s, time.Since(t).Round(time.Millisecond))
		if err != nil {
			log.Printf("clusterbench: %v: %v", s, err)
			r.errors++
		}
		r.setups = append(r.setups, res)
	}
	for _, s := range stormSetups {
		log.Printf("clusterbench: connect storm, %v, %d clients", s, *stormClients)
		t := time.Now()
		res, err := runStorm(ctx, *bin, configPath, s, *stormClients, o)
		log.Printf("clusterbench: connect storm, %v took %v", s, time.Since(t).Round(time.Millisecond))
		if err != nil {
			log.Printf("clusterbench: storm %v: %v", s, err)
			r.errors++
		}
		r.storms = append(r.storms, res)
	}
	r.print(os.Stdout)
	if r.failed() {
		os.Exit(1)
	}
}

// setupResult is what one throughput setup measured.
type setupResult struct {
	setup      setup
	clients    int
	connected  connected
	rssPerConn float64 // bytes, over all nodes
	phases     []phase
}

// runThroughput starts setup s with opts.clients clients per node, each
// subscribed to the shared channel, its own and its group's, and runs six
// phases: each channel kind as fast as the nodes publish, then paced.
func runThroughput(ctx context.Context, bin, configPath string, s setup, opts options) (setupResult, error) {
	res := setupResult{setup: s, clients: s.nodes * opts.clients}
	if res.clients%groupSize != 0 {
		return res, fmt.Errorf("%d clients: want a multiple of %d, the size of a group", res.clients, groupSize)
	}
	c, err := startCluster(ctx, bin, configPath, s)
	if err != nil {
		return res, err
	}
	defer c.close()
	log.Printf("clusterbench: %v started", s)
	before, err := c.rss()
	if err != nil {
		return res, err
	}
	workers, conn, err := startWorkers(res.clients, job{
		URLs: c.urls(), Channels: []string{sharedChannel, ownChannel, groupChannel},
		Concurrency: 64, LocalAddrs: opts.localAddrs,
	})
	if err != nil {
		return res, err
	}
	defer stopWorkers(workers)
	res.connected = conn
	if conn.Failed > 0 {
		return res, fmt.Errorf("%d clients failed to connect, such as: %v", conn.Failed, conn.Errors)
	}
	time.Sleep(2 * time.Second) // let the handshakes' garbage settle
	after, err := c.rss()
	if err != nil {
		return res, err
	}
	res.rssPerConn = float64(after-before) / float64(res.clients)
	log.Printf("clusterbench: %v: %d clients connected in %.1f s", s, conn.Clients, conn.Seconds)

	l := &load{c: c, workers: workers, clients: res.clients, opts: opts}
	for _, kind := range []struct {
		name string
		kind channelKind
	}{{oneChannel, kindShared}, {channelPerClient, kindOwn}, {groupsOfTen, kindGroup}} {
		stopProfile := c.profile(opts.profileDir, kind.name, opts.duration)
		fast, err := l.publish(kind.name, kind.kind, opts.duration, 0)
		stopProfile()
		log.Printf("clusterbench: %v: %s published", s, kind.name)
		res.phases = append(res.phases, fast)
		if err != nil {
			return res, err
		}
		// Paced by what was delivered, not by how fast the API answered:
		// the API answers before the deliveries are made.
		per := float64(perPublication(kind.kind, res.clients))
		paced, err := l.publish(kind.name, kind.kind, opts.duration, fast.rate/per*opts.pacedShare)
		res.phases = append(res.phases, paced)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}
