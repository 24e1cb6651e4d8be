package cli

import (
	"crypto/tls"
	"log/slog"

	"github.com/duplexws/duplex/gateway/broker"
	"github.com/duplexws/duplex/gateway/broker/nats"
)

// openNATS makes the NATS JetStream broker of c.
func openNATS(c *brokerConfig, password string, tlsConfig *tls.Config, logger *slog.Logger) (broker.Broker, string, error) {
	o, err := nats.ParseURL(c.URL)
	if err != nil {
		return nil, "", err
	}
	switch {
	case password != "" && o.User == "":
		o.Token = password // a secret without a user is a token, as in NATS's clients
	case password != "":
		o.Password = password
	}
	if c.Prefix != "" {
		o.Prefix = c.Prefix
	}
	if tlsConfig != nil {
		o.TLS = tlsConfig
	}
	o.Logger = logger
	b := nats.New(o)
	return b, b.String(), nil
}
