package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// Source addresses: connections are spread over 127.0.0.2–127.0.0.254 so
// that neither the ephemeral ports of one address nor the TIME_WAIT left by
// earlier cases run out, whatever the count.
const (
	firstSourceHost = 2
	sourceHosts     = 253
)

var nextSource atomic.Uint32

func init() { nextSource.Store(rand.Uint32N(sourceHosts)) }

// dialNet opens a TCP connection from the next source address in turn.
func dialNet(ctx context.Context, network, addr string) (net.Conn, error) {
	host := firstSourceHost + nextSource.Add(1)%sourceHosts
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(host))}}
	return d.DialContext(ctx, network, addr)
}

// noProxy is the client's HTTP settings: straight to loopback, whatever
// the environment says about proxies.
var noProxy = &http.Client{Transport: &http.Transport{}}

// dialOptions returns the options every client connection uses; compress
// offers permessage-deflate with context takeover.
func dialOptions(bufferSize int, compress bool) *websocket.DialOptions {
	opts := &websocket.DialOptions{
		HTTPClient:      noProxy,
		NetDialContext:  dialNet,
		ReadBufferSize:  bufferSize,
		WriteBufferSize: bufferSize,
	}
	if compress {
		opts.Compression.Mode = websocket.CompressionContextTakeover
	}
	return opts
}

// dialAll opens n connections to url with workers dialing in parallel, and
// runs setup, when not nil, on each as it opens. On any failure it closes
// what it opened and returns the error.
func dialAll(ctx context.Context, n, workers int, url string, opts *websocket.DialOptions, setup func(*websocket.Conn, *http.Response) error) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := dialOne(ctx, url, opts, setup)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err) })
					cancel()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

// dialOne dials with a few retries: a burst of handshakes can overflow the
// server's accept queue for a moment.
func dialOne(ctx context.Context, url string, opts *websocket.DialOptions, setup func(*websocket.Conn, *http.Response) error) (*websocket.Conn, error) {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var c *websocket.Conn
		var resp *http.Response
		c, resp, err = websocket.Dial(dctx, url, opts)
		cancel()
		if err != nil {
			continue
		}
		if setup != nil {
			if err := setup(c, resp); err != nil {
				c.CloseNow()
				return nil, err
			}
		}
		return c, nil
	}
	return nil, err
}

// closeAll closes the connections without a closing handshake: the
// measurements are over, and 10,000 handshakes would only take time.
func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			c.CloseNow()
		}
	}
}

var errShortEcho = errors.New("echo of the wrong size")
