package redis_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker/redis"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want redis.Options
		tls  bool
	}{
		{"redis://127.0.0.1:6379/0", redis.Options{Addrs: []string{"127.0.0.1:6379"}}, false},
		{"redis://localhost", redis.Options{Addrs: []string{"localhost:6379"}}, false},
		{"redis://[::1]:7000/2", redis.Options{Addrs: []string{"[::1]:7000"}, DB: 2}, false},
		{"redis://[::1]", redis.Options{Addrs: []string{"[::1]:6379"}}, false},
		{"redis://:secret@h:1", redis.Options{Addrs: []string{"h:1"}, Password: "secret"}, false},
		{"redis://ann:secret@h:1/3", redis.Options{Addrs: []string{"h:1"}, Username: "ann", Password: "secret", DB: 3}, false},
		{"redis://ann@h:1", redis.Options{Addrs: []string{"h:1"}, Username: "ann"}, false},
		// Percent-encoded, and raw characters a URL would reserve.
		{"redis://:p%40ss%3Aw%2Frd@h:1", redis.Options{Addrs: []string{"h:1"}, Password: "p@ss:w/rd"}, false},
		{"redis://:p@ss:w/rd@h:1/4", redis.Options{Addrs: []string{"h:1"}, Password: "p@ss:w/rd", DB: 4}, false},
		{"rediss://:s@h:6380", redis.Options{Addrs: []string{"h:6380"}, Password: "s"}, true},
		{"redis://a:1,b:2,c", redis.Options{Addrs: []string{"a:1", "b:2", "c:6379"}, Cluster: true}, false},
		{"redis://a:1?cluster=true", redis.Options{Addrs: []string{"a:1"}, Cluster: true}, false},
		{"redis://a:1/0?cluster=1&prefix=app", redis.Options{Addrs: []string{"a:1"}, Cluster: true, Prefix: "app"}, false},
		{"redis://a:1?cluster=false", redis.Options{Addrs: []string{"a:1"}}, false},
		{"redis://a:1?flush_delay=250us", redis.Options{Addrs: []string{"a:1"}, FlushDelay: 250 * time.Microsecond}, false},
		{"redis://a:1?flush_delay=0", redis.Options{Addrs: []string{"a:1"}, FlushDelay: -1}, false},
	} {
		got, err := redis.ParseURL(c.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.url, err)
			continue
		}
		if (got.TLS != nil) != c.tls {
			t.Errorf("ParseURL(%q): TLS %v, want %v", c.url, got.TLS != nil, c.tls)
		}
		got.TLS = nil
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.url, got, c.want)
		}
	}
}

// TestParseURLErrors: bad URLs are errors that never quote the password.
func TestParseURLErrors(t *testing.T) {
	const secret = "Sup3rS3cret"
	for _, u := range []string{
		"127.0.0.1:6379",
		"http://h:1",
		"redis://:" + secret + "@h:1/x",
		"redis://:" + secret + "@h:port",
		"redis://:" + secret + "@h:1?unknown=1",
		"redis://:" + secret + "@h:1?cluster=maybe",
		"redis://:" + secret + "@a:1,b:2/3",
		"redis://:" + secret + "@h:1/0#frag",
		"redis://:" + secret + "@h%zz:1",
		"redis://:" + secret + "@a:1,,b:2",
		"redis://:" + secret + "@h:1?flush_delay=soon",
		"redis://:" + secret + "@h:1?flush_delay=-1ms",
	} {
		_, err := redis.ParseURL(u)
		if err == nil {
			t.Errorf("ParseURL(%q): no error", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseURL(%q): error quotes the password: %v", u, err)
		}
	}
}

// TestRedacted: String and the errors of New never show the password.
func TestRedacted(t *testing.T) {
	const secret = "Sup3rS3cret"
	o := redis.Options{Addrs: []string{"h:1"}, Username: "ann", Password: secret, DB: 2, Prefix: "app"}
	if s := o.String(); strings.Contains(s, secret) || s != "redis://ann:xxxxx@h:1/2?prefix=app" {
		t.Errorf("String() = %q", s)
	}
	b, err := redis.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if s := b.String(); strings.Contains(s, secret) {
		t.Errorf("Broker.String() = %q", s)
	}
	o.Addrs = []string{"no-port"}
	if _, err := redis.New(o); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("New with a bad address: %v", err)
	}
	o = redis.Options{Addrs: []string{"a:1", "b:2"}, Password: secret}
	if s := o.String(); s != "redis://:xxxxx@a:1,b:2" {
		t.Errorf("String() = %q", s)
	}
}

// TestFlushDelayURL: String writes FlushDelay so that ParseURL reads it
// back, and leaves the default out.
func TestFlushDelayURL(t *testing.T) {
	for _, d := range []time.Duration{-1, 250 * time.Microsecond} {
		o := redis.Options{Addrs: []string{"h:1"}, FlushDelay: d}
		got, err := redis.ParseURL(o.String())
		if err != nil || got.FlushDelay != d {
			t.Errorf("FlushDelay %v: String() = %q, read back as %v, %v", d, o.String(), got.FlushDelay, err)
		}
	}
	if s := (redis.Options{Addrs: []string{"h:1"}}).String(); s != "redis://h:1" {
		t.Errorf("String() with the default FlushDelay = %q", s)
	}
}

func TestNewInvalid(t *testing.T) {
	for _, o := range []redis.Options{
		{Addrs: []string{"a:1", "b:2"}, DB: 1},
		{Cluster: true, DB: 1},
		{DB: -1},
		{Prefix: "{app}"},
		{Shards: 100000},
	} {
		if _, err := redis.New(o); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
}
