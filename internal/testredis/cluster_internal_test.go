package testredis

import (
	"testing"
	"time"
)

// A node that lost another (here told to forget it, which also keeps
// gossip from bringing it back for a minute) is made to meet it again by
// waitOK, well within the minute.
func TestClusterMeetsAgain(t *testing.T) {
	c := StartCluster(t, Options{})
	id, err := c.nodes[2].Do("CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	name, _ := id.(string)
	if _, err := c.nodes[0].Do("CLUSTER", "FORGET", name); err != nil {
		t.Fatal(err)
	}
	if err := c.waitOK(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}
