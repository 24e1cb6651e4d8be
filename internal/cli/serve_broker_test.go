package cli

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeBrokerConfig: the broker comes from the file, the environment or
// --broker, its type from the URL's scheme, and its password never shows in
// what is logged.
func TestServeBrokerConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "duplex.yaml")
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("file-secret\n"), 0o600)
	os.WriteFile(path, []byte(`
broker:
  url: redis://127.0.0.1:6390/2
  password_file: `+pwFile+`
  prefix: app1
`), 0o600)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	cfg, err := loadServeConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if typ, err := cfg.Broker.brokerType(); typ != "redis" || err != nil {
		t.Fatalf("type %q, %v; want redis", typ, err)
	}
	b, desc, err := cfg.Broker.open(logger)
	if err != nil || b == nil {
		t.Fatalf("open: %v, %v", b, err)
	}
	if strings.Contains(desc, "file-secret") || !strings.Contains(desc, "127.0.0.1:6390") {
		t.Errorf("description %q: want the address and no password", desc)
	}

	// The environment wins over the file, and --broker over both.
	cfg, err = loadServeConfig(path, []string{"DUPLEX_BROKER_URL=nats://u:env-secret@127.0.0.1:4299", "DUPLEX_BROKER_PASSWORD_FILE="})
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := cfg.Broker.brokerType(); typ != "nats" {
		t.Fatalf("type %q from DUPLEX_BROKER_URL, want nats", typ)
	}
	_, desc, err = cfg.Broker.open(logger)
	if err != nil || strings.Contains(desc, "env-secret") {
		t.Errorf("nats: description %q, %v: want no password", desc, err)
	}
	f := serveFlags{config: path, broker: "redis://127.0.0.1:6391"}
	got, err := f.resolve(func(name string) bool { return name == "broker" || name == "config" })
	if err != nil || got.Broker.URL != "redis://127.0.0.1:6391" {
		t.Fatalf("--broker: %+v, %v", got.Broker, err)
	}

	for _, c := range []struct {
		cfg  brokerConfig
		want string
	}{
		{brokerConfig{}, "memory"},
		{brokerConfig{Type: "memory"}, "memory"},
		{brokerConfig{URL: "rediss://h:1"}, "redis"},
		{brokerConfig{URL: "tls://h:1"}, "nats"},
		{brokerConfig{Type: "redis", URL: "redis://h:1"}, "redis"},
		{brokerConfig{Type: "kafka", URL: "kafka://h"}, "error"},
		{brokerConfig{URL: "http://h"}, "error"},
		{brokerConfig{Type: "redis"}, "error"},
		{brokerConfig{Type: "memory", URL: "redis://h"}, "error"},
		{brokerConfig{Type: "nats", URL: "redis://h"}, "error"},
	} {
		typ, err := c.cfg.brokerType()
		if err != nil {
			typ = "error"
		}
		if typ != c.want {
			t.Errorf("%+v: %s (%v), want %s", c.cfg, typ, err, c.want)
		}
	}
}
