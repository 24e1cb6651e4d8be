package interop

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/duplexws/duplex/internal/testcert"
	"github.com/duplexws/duplex/websocket"
)

// BenchmarkH2IdleMemory: the memory our server holds per idle WebSocket,
// over HTTP/1.1 (one TLS connection each) and over HTTP/2 (streams of one
// TLS connection), with Node's ws and http2 as the clients, in a process
// of their own, so that this process holds the server's side alone: heap
// and goroutine stacks in use after GC, per connection, at 1,000
// connections that each echoed one 16-byte message. One run measures; b.N
// is not used. Run:
//
//	go test -run XXX -bench H2IdleMemory -benchtime 1x ./interop/
func BenchmarkH2IdleMemory(b *testing.B) {
	if _, err := exec.LookPath("node"); err != nil {
		b.Fatalf("node is not installed: %v; %s", err, setupHint)
	}
	const n = 1000
	cert, err := testcert.New("127.0.0.1", "localhost")
	if err != nil {
		b.Fatal(err)
	}
	certFile, keyFile, err := cert.WriteFiles(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	certs := &testCerts{certFile: certFile, keyFile: keyFile, pool: cert.Pool, cert: cert.TLS}
	for _, mode := range []string{"h1", "h2"} {
		b.Run(mode, func(b *testing.B) {
			// A handler that holds nothing while it waits: Read allocates
			// each message as it comes (wstest.Echo would hold a 32 KiB
			// buffer per connection).
			srv := startH2Server(b, certs, nil, func(_ *http.Request, c *websocket.Conn) error {
				for {
					typ, msg, err := c.Read(context.Background())
					if err != nil {
						return err
					}
					if err := c.Write(context.Background(), typ, msg); err != nil {
						return err
					}
				}
			})
			// 1,000 streams on one connection: net/http allows 250 by
			// default. Each connection reads the setting as it starts.
			srv.http.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 2 * n}
			before := inUse()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", "js/h2_idle.mjs", mode, srv.url+"/idle", certs.certFile, "1000")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || lines.Text() != "ready" {
				stdin.Close()
				cmd.Wait()
				b.Fatalf("node did not get ready: %q", lines.Text())
			}
			after := inUse()
			stdin.Close()
			for lines.Scan() {
			}
			if err := cmd.Wait(); err != nil {
				b.Fatalf("node: %v", err)
			}
			if got := len(srv.arrived()); got != n {
				b.Fatalf("%d handshakes, want %d", got, n)
			}
			b.ReportMetric(float64(after-before)/n, "B/conn")
		})
	}
}

// inUse returns the heap and goroutine stacks in use after a GC.
func inUse() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
