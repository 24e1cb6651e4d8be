//go:build http2legacy

package interop

//lint:file-ignore SA1019 x/net's http2.Transport is deprecated for net/http's, which cannot send extended CONNECT

import (
	"bytes"
	"context"
	"crypto/tls"
	"syscall"
	"testing"

	"golang.org/x/net/http2"

	"github.com/duplexws/duplex/internal/testcert"
	"github.com/duplexws/duplex/websocket"
)

// BenchmarkH2Echo: one message of 16 B or 1 KiB written by our client and
// echoed by our server, read back, per op, over HTTP/1.1 and over HTTP/2
// (x/net's transport under our client), both on TLS and both ends in this
// process: the CPU a message costs the two ends together (cpu-ns/op, user
// and system time of the process; ns/op is the round trip's wall time).
// Run:
//
//	go test -tags http2legacy -run XXX -bench H2Echo ./interop/
func BenchmarkH2Echo(b *testing.B) {
	cert, err := testcert.New("127.0.0.1", "localhost")
	if err != nil {
		b.Fatal(err)
	}
	certs := &testCerts{pool: cert.Pool, cert: cert.TLS}
	srv := startH2Server(b, certs, nil, nil)
	h2tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.pool}}
	defer h2tr.CloseIdleConnections()
	for _, proto := range []string{"h1", "h2"} {
		for _, size := range []int{16, 1 << 10} {
			b.Run(proto+"/"+map[int]string{16: "16B", 1 << 10: "1KiB"}[size], func(b *testing.B) {
				opts := &websocket.DialOptions{TLSConfig: &tls.Config{RootCAs: certs.pool}}
				if proto == "h2" {
					opts = &websocket.DialOptions{HTTP2Transport: h2tr}
				}
				ctx := context.Background()
				c, _, err := websocket.Dial(ctx, srv.url, opts)
				if err != nil {
					b.Fatal(err)
				}
				defer c.CloseNow()
				msg := bytes.Repeat([]byte("x"), size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU()
				for range b.N {
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						b.Fatal(err)
					}
					if _, _, err := c.Read(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
				c.Close(websocket.StatusNormalClosure, "")
			})
		}
	}
}

// processCPU returns the user and system CPU time the process has used, in
// nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
