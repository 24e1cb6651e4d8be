package nats_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/duplexws/duplex/gateway/broker/nats"
	"github.com/duplexws/duplex/gateway/brokertest"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want nats.Options
		tls  bool
	}{
		{"nats://127.0.0.1:4222", nats.Options{Servers: []string{"127.0.0.1:4222"}}, false},
		{"nats://localhost", nats.Options{Servers: []string{"localhost:4222"}}, false},
		{"nats://[::1]", nats.Options{Servers: []string{"[::1]:4222"}}, false},
		{"nats://user:pass@127.0.0.1:4222", nats.Options{Servers: []string{"127.0.0.1:4222"}, User: "user", Password: "pass"}, false},
		{"nats://s3cr3t-token@h1", nats.Options{Servers: []string{"h1:4222"}, Token: "s3cr3t-token"}, false},
		// A password may hold '@', ':' and '/' as they are, or escaped.
		{"nats://ann:p@ss:w/rd@h1:1", nats.Options{Servers: []string{"h1:1"}, User: "ann", Password: "p@ss:w/rd"}, false},
		{"nats://ann:p%40ss@h1:1", nats.Options{Servers: []string{"h1:1"}, User: "ann", Password: "p@ss"}, false},
		{"nats://h1:1,h2,h3:3", nats.Options{Servers: []string{"h1:1", "h2:4222", "h3:3"}}, false},
		{"nats://h1?prefix=chat&replicas=3&storage=memory",
			nats.Options{Servers: []string{"h1:4222"}, Prefix: "chat", Replicas: 3, MemoryStorage: true}, false},
		{"nats://h1/?storage=file", nats.Options{Servers: []string{"h1:4222"}}, false},
		{"tls://u:p@h1:4443", nats.Options{Servers: []string{"h1:4443"}, User: "u", Password: "p"}, true},
	} {
		got, err := nats.ParseURL(c.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.in, err)
			continue
		}
		if (got.TLS != nil) != c.tls {
			t.Errorf("ParseURL(%q): TLS %v, want %v", c.in, got.TLS != nil, c.tls)
		}
		got.TLS = nil
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// TestParseURLErrors: bad URLs fail, and the error quotes no secret.
func TestParseURLErrors(t *testing.T) {
	for _, in := range []string{
		"127.0.0.1:4222",
		"redis://h1",
		"nats://user:hunter2@h1:notaport%zz",
		"nats://hunter2@h1?prefix=a.b",
		"nats://user:hunter2@h1?replicas=0",
		"nats://user:hunter2@h1?storage=disk",
		"nats://user:hunter2@h1?color=red",
		"nats://user:hunter2@h1,,h2",
		"nats://user:hunter2@h1/db",
		"nats://user:hunter2@h1#frag",
	} {
		_, err := nats.ParseURL(in)
		if err == nil {
			t.Errorf("ParseURL(%q): no error", in)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q): error %q quotes the secret", in, err)
		}
		if !strings.HasPrefix(err.Error(), "nats broker: ") {
			t.Errorf("ParseURL(%q): error %q", in, err)
		}
	}
}

// TestOptionsString: String and the broker's String redact the password
// and the token, and ParseURL reads String back.
func TestOptionsString(t *testing.T) {
	for _, c := range []struct {
		opts nats.Options
		want string
	}{
		{nats.Options{}, "nats://127.0.0.1:4222"},
		{nats.Options{Servers: []string{"h1:1", "h2:2"}, User: "ann", Password: "hunter2"}, "nats://ann:xxxxx@h1:1,h2:2"},
		{nats.Options{Servers: []string{"h1:1"}, Token: "hunter2"}, "nats://xxxxx@h1:1"},
		{nats.Options{Servers: []string{"h1:1"}, Prefix: "chat", Replicas: 3}, "nats://h1:1?prefix=chat&replicas=3"},
	} {
		if got := c.opts.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.opts, got, c.want)
		}
		if s := nats.New(c.opts).String(); strings.Contains(s, "hunter2") {
			t.Errorf("Broker.String() = %q quotes the secret", s)
		}
		if c.opts.Password == "" && c.opts.Token == "" {
			back, err := nats.ParseURL(c.want)
			if err != nil || back.String() != c.want {
				t.Errorf("ParseURL(%q) = %v, %v; String %q", c.want, back, err, back.String())
			}
		}
	}
}

// TestInvalidOptions: Start reports options that cannot work, before
// dialling.
func TestInvalidOptions(t *testing.T) {
	for _, opts := range []nats.Options{
		{Prefix: "a.b"},
		{Prefix: "a*"},
		{Prefix: strings.Repeat("p", 65)},
		{Servers: []string{"no-port"}},
		{Token: "t", User: "u"},
		{CredentialsFile: "f", Token: "t"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := nats.New(opts).Start(ctx, brokertest.NewRecorder())
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), "nats broker: ") {
			t.Errorf("Start with %+v: %v, want an error", opts, err)
		}
	}
}
