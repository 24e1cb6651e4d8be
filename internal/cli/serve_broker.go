package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/redis"
)

// brokerConfig is the broker: section of duplex serve's configuration:
// where the nodes of a cluster share publications, history and presence.
type brokerConfig struct {
	// Type is memory (the default: one node), redis or nats; when empty it
	// is taken from the URL's scheme.
	Type string `yaml:"type"`
	// URL locates the broker: redis://[user:password@]host:port[/db]
	// (rediss:// for TLS; several comma-separated hosts, or ?cluster=true,
	// for Redis Cluster), or nats://[user:password@]host:port
	// (comma-separated for several servers; tls:// for TLS).
	URL string `yaml:"url"`
	// Password, when set, replaces the URL's (for NATS without a user in
	// the URL: the token). Prefer PasswordFile or the environment
	// (DUPLEX_BROKER_PASSWORD) to a password in a file that others read.
	// It is never logged.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// Prefix keeps the keys and subjects of this gateway apart from other
	// users of the same broker. Default: duplex.
	Prefix string `yaml:"prefix"`
	TLS    struct {
		CAFile     string `yaml:"ca_file"`     // PEM roots to verify the broker with; default: the system's
		CertFile   string `yaml:"cert_file"`   // client certificate (PEM), for mutual TLS
		KeyFile    string `yaml:"key_file"`    // its private key (PEM)
		ServerName string `yaml:"server_name"` // default: the URL's host
	} `yaml:"tls"`
}

// brokerType is the configured type, from the URL's scheme when unset.
func (c *brokerConfig) brokerType() (string, error) {
	t := strings.ToLower(c.Type)
	scheme, _, _ := strings.Cut(c.URL, "://")
	fromURL := ""
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		fromURL = "redis"
	case "nats", "tls":
		fromURL = "nats"
	}
	switch {
	case t == "" && c.URL == "":
		return "memory", nil
	case t == "":
		if fromURL == "" {
			return "", fmt.Errorf("broker: cannot tell the broker's type from its URL's scheme %q: set broker.type", scheme)
		}
		return fromURL, nil
	case t != "memory" && t != "redis" && t != "nats":
		return "", fmt.Errorf("broker: unknown type %q (memory, redis or nats)", c.Type)
	case t != "memory" && c.URL == "":
		return "", fmt.Errorf("broker: type %s needs a URL (broker.url, DUPLEX_BROKER_URL or --broker)", t)
	case t == "memory" && c.URL != "":
		return "", fmt.Errorf("broker: type memory takes no URL")
	case fromURL != "" && fromURL != t:
		return "", fmt.Errorf("broker: type %s with a %s URL", t, scheme)
	}
	return t, nil
}

// open makes the broker the configuration describes, not yet started; it
// returns nil for the memory broker, which the gateway makes itself. The
// description names it for logs without its secrets.
func (c *brokerConfig) open(logger *slog.Logger) (b broker.Broker, description string, err error) {
	t, err := c.brokerType()
	if err != nil || t == "memory" {
		return nil, "memory", err
	}
	password := c.Password
	if c.PasswordFile != "" {
		data, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, "", fmt.Errorf("broker: %w", err)
		}
		password = string(bytes.TrimRight(data, "\r\n"))
	}
	tlsConfig, err := c.tlsConfig()
	if err != nil {
		return nil, "", err
	}
	switch t {
	case "redis":
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, "", err
		}
		if password != "" {
			o.Password = password
		}
		if c.Prefix != "" {
			o.Prefix = c.Prefix
		}
		if tlsConfig != nil {
			o.TLS = tlsConfig
		}
		o.Logger = logger
		rb, err := redis.New(o)
		if err != nil {
			return nil, "", err
		}
		return rb, rb.String(), nil
	default:
		return openNATS(c, password, tlsConfig, logger)
	}
}

// tlsConfig is the TLS section as a *tls.Config, nil when it is empty.
func (c *brokerConfig) tlsConfig() (*tls.Config, error) {
	t := &c.TLS
	if t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" && t.ServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: tls: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker: tls: no certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("broker: tls: a client certificate needs both cert_file and key_file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker: tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
