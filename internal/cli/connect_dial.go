package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/duplexws/duplex/websocket"
)

// dialFlags are the connection flags that duplex connect and duplex bench
// share.
type dialFlags struct {
	headers          []string
	origin           string
	subprotocols     []string
	compress         string
	insecure         bool
	caFile           string
	certFile         string
	keyFile          string
	proxy            string
	handshakeTimeout time.Duration
	http2            string // http2Off, http2Only or http2Fallback
}

func (f *dialFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "add the handshake header `\"Name: value\"`; repeatable")
	fl.StringVar(&f.origin, "origin", "", "send this Origin `URL`, as a browser page of that origin would")
	fl.StringArrayVar(&f.subprotocols, "subprotocol", nil, "offer this subprotocol `name`; repeat it, most preferred first")
	fl.StringVar(&f.compress, "compress", "off", "offer permessage-deflate: `mode` off, no-context or context")
	fl.BoolVar(&f.insecure, "insecure", false, "accept any TLS certificate of the server (wss:// only; dangerous)")
	fl.StringVar(&f.caFile, "ca", "", "trust the CA certificates in this PEM `file` instead of the system's")
	fl.StringVar(&f.certFile, "cert", "", "present the client certificate in this PEM `file` (with its key,\nunless --key names another file)")
	fl.StringVar(&f.keyFile, "key", "", "the private key of --cert, in this PEM `file`")
	fl.StringVar(&f.proxy, "proxy", "", "tunnel through this HTTP or HTTPS proxy `URL` with CONNECT; \"none\" for\nno proxy (default: HTTPS_PROXY, HTTP_PROXY and NO_PROXY)")
	fl.DurationVar(&f.handshakeTimeout, "handshake-timeout", 10*time.Second, "how long connecting and the opening handshake may take")
	fl.StringVar(&f.http2, "http2", http2Off, http2FlagUsage)
	fl.Lookup("http2").NoOptDefVal = http2Only
}

// dialer is what the dial flags describe: the options to dial with, minus
// what each command adds (read limit, keepalive, a traced connection).
type dialer struct {
	url              *url.URL // ws:// or wss://, as given
	header           http.Header
	subprotocols     []string
	compression      websocket.CompressionOptions
	tls              *tls.Config // nil for the defaults
	proxy            func(*http.Request) (*url.URL, error)
	handshakeTimeout time.Duration
	http2            string // http2Only or http2Fallback: over HTTP/2 (connect_h2.go)
}

// dialer checks the flags and the URL and returns the dialer they describe.
func (f *dialFlags) dialer(rawURL string) (*dialer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, usageError{fmt.Errorf("bad URL: %v", err)}
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http", "https":
		u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	default:
		return nil, usageError{fmt.Errorf("URL must start with ws:// or wss://, not %q", rawURL)}
	}
	if u.Host == "" {
		return nil, usageError{fmt.Errorf("URL %q has no host", rawURL)}
	}
	if f.handshakeTimeout <= 0 {
		return nil, usageError{fmt.Errorf("--handshake-timeout must be positive, not %v", f.handshakeTimeout)}
	}
	d := &dialer{url: u, subprotocols: f.subprotocols, handshakeTimeout: f.handshakeTimeout}
	if d.header, err = f.header(); err != nil {
		return nil, err
	}
	switch f.compress {
	case "off":
	case "no-context":
		d.compression.Mode = websocket.CompressionNoContextTakeover
	case "context":
		d.compression.Mode = websocket.CompressionContextTakeover
	default:
		return nil, usageError{fmt.Errorf("--compress must be off, no-context or context, not %q", f.compress)}
	}
	if d.tls, err = f.tlsConfig(); err != nil {
		return nil, err
	}
	switch f.proxy {
	case "":
		d.proxy = http.ProxyFromEnvironment
	case "none":
	default:
		p, err := url.Parse(f.proxy)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, usageError{fmt.Errorf("--proxy must be an http:// or https:// URL or \"none\", not %q", f.proxy)}
		}
		d.proxy = http.ProxyURL(p)
	}
	if err := d.checkHTTP2(f.http2, f.proxy != ""); err != nil {
		return nil, err
	}
	return d, nil
}

// header builds the handshake headers of -H and --origin.
func (f *dialFlags) header() (http.Header, error) {
	h := http.Header{}
	for _, line := range f.headers {
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n") {
			return nil, usageError{fmt.Errorf("-H wants \"Name: value\", not %q", line)}
		}
		h.Add(name, strings.TrimSpace(value))
	}
	if f.origin != "" {
		if h.Get("Origin") != "" {
			return nil, usageError{errors.New("--origin and -H \"Origin: …\" exclude each other")}
		}
		h.Set("Origin", f.origin)
	}
	return h, nil
}

// tlsConfig builds the TLS settings of --insecure, --ca, --cert and --key,
// or returns nil when none is given.
func (f *dialFlags) tlsConfig() (*tls.Config, error) {
	if f.keyFile != "" && f.certFile == "" {
		return nil, usageError{errors.New("--key needs --cert")}
	}
	if !f.insecure && f.caFile == "" && f.certFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: f.insecure}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", f.caFile)
		}
	}
	if f.certFile != "" {
		keyFile := f.keyFile
		if keyFile == "" {
			keyFile = f.certFile
		}
		cert, err := tls.LoadX509KeyPair(f.certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// options returns the options to dial with and the URL to dial. netDial
// opens TCP connections; trace, when not nil, sees every byte.
//
// websocket.Dial does TLS on top of the connection netDial returns, so a
// trace of that connection would see only ciphertext. For a wss:// URL
// reached without a proxy, options therefore does TLS itself, with the
// settings Dial would use, and has Dial speak plain WebSocket over the TLS
// connection, to the same host and with the same Host header. Through a
// proxy the TLS session starts inside the CONNECT tunnel, which Dial makes;
// the trace then shows byte counts only.
func (d *dialer) options(netDial func(ctx context.Context, network, addr string) (net.Conn, error), trace *tracer) (*websocket.DialOptions, string) {
	opts := &websocket.DialOptions{
		HTTPHeader:     d.header.Clone(),
		Subprotocols:   d.subprotocols,
		TLSConfig:      d.tls,
		Compression:    d.compression,
		HTTPClient:     &http.Client{Transport: &http.Transport{Proxy: d.proxy}},
		NetDialContext: netDial,
	}
	dialURL := d.url.String()
	if trace == nil {
		return opts, dialURL
	}
	if d.url.Scheme == "wss" && d.proxyFor(d.url) == nil {
		host := d.url.Hostname()
		port := d.url.Port()
		if port == "" {
			port = "443"
		}
		cfg := d.tls.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		opts.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := netDial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			trace.tlsDone(tc.ConnectionState())
			return trace.wrap(tc, false), nil
		}
		opts.HTTPClient = &http.Client{Transport: &http.Transport{}} // no proxy: checked above
		if opts.HTTPHeader.Get("Host") == "" {
			opts.HTTPHeader.Set("Host", d.url.Host)
		}
		plain := *d.url
		plain.Scheme = "ws"
		plain.Host = net.JoinHostPort(host, port)
		return opts, plain.String()
	}
	encrypted := d.url.Scheme == "wss"
	opts.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := netDial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return trace.wrap(conn, encrypted), nil
	}
	return opts, dialURL
}

// proxyFor returns the proxy a connection to u goes through, or nil.
func (d *dialer) proxyFor(u *url.URL) *url.URL {
	if d.proxy == nil {
		return nil
	}
	hu := *u
	hu.Scheme = strings.Replace(hu.Scheme, "ws", "http", 1)
	p, err := d.proxy(&http.Request{Method: http.MethodGet, URL: &hu, Header: http.Header{}})
	if err != nil {
		return nil
	}
	return p
}

// dial opens the connection, bounded by the handshake timeout and ctx.
func (d *dialer) dial(ctx context.Context, opts *websocket.DialOptions, dialURL string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, d.handshakeTimeout)
	defer cancel()
	return websocket.Dial(ctx, dialURL, opts)
}
