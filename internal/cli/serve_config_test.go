package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveConfigFrom loads yaml as the configuration file, with env.
func serveConfigFrom(t *testing.T, yaml string, env ...string) (*serveConfig, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "duplex.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return loadServeConfig(path, env)
}

// TestServeDemoKeepsAuth: demo: true adds the demo namespace but opens
// anonymous access only when auth.anonymous does not say otherwise.
func TestServeDemoKeepsAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		env  []string
		want bool
	}{
		{"demo, anonymous unsaid", "demo: true\n", nil, true},
		{"demo, anonymous false", "demo: true\nauth:\n  anonymous: false\n", nil, false},
		{"demo, anonymous false from the environment", "demo: true\n", []string{"DUPLEX_AUTH_ANONYMOUS=false"}, false},
		{"no demo, anonymous true", "demo: false\nauth:\n  anonymous: true\n", nil, true},
		{"no demo, anonymous unsaid", "demo: false\n", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := serveConfigFrom(t, tc.yaml, tc.env...)
			if err != nil {
				t.Fatal(err)
			}
			g, err := cfg.gatewayConfig()
			if err != nil {
				t.Fatal(err)
			}
			if g.Auth.AllowAnonymous != tc.want {
				t.Fatalf("anonymous %v, want %v", g.Auth.AllowAnonymous, tc.want)
			}
		})
	}
}

// TestServeProtectiveDefaults: with or without a file, one address meets
// a connection cap and a handshake rate unless the configuration turns
// them off (negative) or sets its own.
func TestServeProtectiveDefaults(t *testing.T) {
	noFile, err := loadServeConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	withFile, err := serveConfigFrom(t, "demo: false\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*serveConfig{"no file": noFile, "a file without limits": withFile} {
		g, err := cfg.gatewayConfig()
		if err != nil {
			t.Fatal(err)
		}
		l := g.Limits
		if l.MaxConnectionsPerIP != defaultMaxConnectionsPerIP || l.HandshakeRate != defaultHandshakeRate || l.HandshakeBurst != defaultHandshakeBurst {
			t.Errorf("%s: per-IP %d, handshake rate %v burst %d; want the protective defaults", name, l.MaxConnectionsPerIP, l.HandshakeRate, l.HandshakeBurst)
		}
	}
	cfg, err := serveConfigFrom(t, "limits:\n  max_connections_per_ip: -1\n  handshake_rate: 5\n")
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	if l := g.Limits; l.MaxConnectionsPerIP != -1 || l.HandshakeRate != 5 || l.HandshakeBurst != 0 {
		t.Errorf("explicit limits: per-IP %d, rate %v burst %d; want -1, 5 and the gateway's burst default", l.MaxConnectionsPerIP, l.HandshakeRate, l.HandshakeBurst)
	}
}

// TestServeTrustedProxies: CIDRs and single addresses; client_ip_header
// without trusted proxies is refused at start, since it would be ignored.
func TestServeTrustedProxies(t *testing.T) {
	cfg, err := serveConfigFrom(t, "limits:\n  client_ip_header: X-Forwarded-For\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, '::1']\n")
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("::1/128")}
	if len(g.Limits.TrustedProxies) != len(want) {
		t.Fatalf("trusted proxies %v, want %v", g.Limits.TrustedProxies, want)
	}
	for i := range want {
		if g.Limits.TrustedProxies[i] != want[i] {
			t.Fatalf("trusted proxies %v, want %v", g.Limits.TrustedProxies, want)
		}
	}
	for yaml, wantErr := range map[string]string{
		"limits:\n  client_ip_header: X-Real-IP\n":                            "trusted_proxies",
		"limits:\n  client_ip_header: X-Real-IP\n  trusted_proxies: [nope]\n": "limits.trusted_proxies",
	} {
		cfg, err := serveConfigFrom(t, yaml)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.gatewayConfig(); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want one naming %s", yaml, err, wantErr)
		}
	}
	// From the environment too.
	cfg, err = loadServeConfig("", []string{"DUPLEX_LIMITS_TRUSTED_PROXIES=10.0.0.1, 10.0.0.2", "DUPLEX_METRICS_TOKEN=t"})
	if err != nil {
		t.Fatal(err)
	}
	if g, err := cfg.gatewayConfig(); err != nil || len(g.Limits.TrustedProxies) != 2 || g.MetricsToken != "t" {
		t.Fatalf("from the environment: %v %v %q", err, g.Limits.TrustedProxies, g.MetricsToken)
	}
}
