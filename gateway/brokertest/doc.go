// Package brokertest is the contract suite that every broker.Broker passes:
// the in-memory broker, Redis and NATS JetStream run the same subtests, so
// the gateway can rely on what broker.Broker's doc comments promise whatever
// broker a deployment chooses.
//
// A broker's tests call Run with a function that makes a fresh broker, not
// yet started; Run starts it with a Recorder as its Handler and closes it
// when the subtest ends:
//
//	package redis_test
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
//
//	func TestContract(t *testing.T) {
//		srv := testredis.Start(t, testredis.Options{})
//		brokertest.Run(t, func(t *testing.T) broker.Broker {
//			b, err := redis.New(redis.Options{Addrs: []string{srv.Addr()}})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return b
//		}, brokertest.Options{Server: srv})
//	}
//
// Every subtest gets fresh brokers. A multi-node subtest calls newBroker
// twice and expects two nodes of one backend, which see each other's
// publications, history, presence and control messages; a broker that
// cannot share its state (the memory broker) sets Options.SingleNode and
// those subtests are skipped. The brokers of one Run share the backend and
// the suite names its channels uniquely for the run, so newBroker must not
// reset the backend (a broker open in the same subtest would lose its
// state); state left behind by earlier runs does not matter.
//
// What the suite requires beyond the doc comments of package broker, because
// the gateway relies on it:
//
//   - Subscribe takes effect before it returns: a publication, join, leave
//     made by any node after Subscribe returns reaches this node's Handler.
//     After Unsubscribe returns, nothing more of the channel is delivered
//     but what was published before. The suite proves that something was
//     not delivered with a barrier rather than a sleep: it subscribes,
//     publishes a marker and waits for the marker, since delivery of one
//     channel is ordered.
//   - History returns a snapshot: the publications it returns and its
//     Position come from the same moment, so that the last publication of a
//     result with Limit -1 has the Position's offset (the gateway's
//     recovery decides from that that nothing was lost).
//   - Reading creates nothing: History of a channel that has no stream
//     returns Position{} (offset 0, no epoch) and no publications, and
//     leaves no state behind, since clients may read any channel name. A
//     channel's first publication starts its stream under a new epoch at
//     offset 1.
//   - Publish and History called with a context that is already done
//     return an error that wraps ctx.Err() (errors.Is(err,
//     context.Canceled)) and have no effect: nothing is appended or
//     delivered.
//   - Every method returns an error wrapping broker.ErrClosed after Close,
//     without panicking, and delivers nothing more; Close may be called
//     again and returns nil.
//   - AddPresence accepts a ttl of 0 (the gateway passes it) and lists the
//     member.
//
// Close must wait for the broker's goroutines: a broker's test package
// checks that none is left with internal/leakcheck, as above.
//
// The expiry subtests use real time with short lifetimes (Options.TTL) and
// poll, bounded by Options.Timeout, for the expiry to show; every wait for
// a delivery is bounded the same way, so a broker that deadlocks fails the
// subtest instead of hanging the test binary.
package brokertest
