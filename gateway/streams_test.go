package gateway

import (
	"fmt"
	"testing"
)

// TestReadsCreateNoStreams: history and subscribe on fresh channel names
// leave no stream behind (issue 12, defect 1), and publications cannot
// start more streams in a namespace than its MaxStreams.
func TestReadsCreateNoStreams(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Limits.MessageRate = 10000
		c.Limits.MessageBurst = 10000
		for i := range c.Namespaces {
			if c.Namespaces[i].Name == "chat" {
				c.Namespaces[i].MaxStreams = 2
			}
		}
	})
	c, _ := connected(t, ts.url, "")
	for i := range 500 {
		ch := fmt.Sprintf("chat:fresh-%d", i)
		if res := c.ok("history", msg{"channel": ch}); res.str("epoch") != "" {
			t.Fatalf("history of a fresh channel: %v", res)
		}
		c.ok("subscribe", msg{"channel": ch})
		c.ok("unsubscribe", msg{"channel": ch})
	}
	// Had the reads made streams, the cap of 2 would refuse these.
	c.ok("publish", msg{"channel": "chat:a", "data": 1})
	c.ok("publish", msg{"channel": "chat:b", "data": 1})
	if code := c.errCode("publish", msg{"channel": "chat:c", "data": 1}); code != ErrLimitExceeded.Code {
		t.Fatalf("a third stream in a namespace of MaxStreams 2: error %d, want %d", code, ErrLimitExceeded.Code)
	}
	c.ok("publish", msg{"channel": "chat:a", "data": 2})
	if v := metricValue(t, ts.http.URL, "duplex_limit_hits_total", `limit="streams"`); v != 1 {
		t.Errorf(`duplex_limit_hits_total{limit="streams"} %v, want 1`, v)
	}
}
