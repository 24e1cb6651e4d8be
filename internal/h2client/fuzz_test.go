package h2client_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/duplexws/duplex/internal/h2client"
)

// FuzzServerFrames has a server send arbitrary bytes after its SETTINGS,
// as the frames of an HTTP/2 connection, to a Transport that has sent an
// extended CONNECT on stream 1 and reads the response. Whatever comes, the
// Transport must not panic, RoundTrip and the body's reads must end (the
// server closes the connection at the end of the input), and Close must
// leave no goroutine behind (TestMain checks).
func FuzzServerFrames(f *testing.F) {
	frames := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		write(http2.NewFramer(&b, nil))
		return b.Bytes()
	}
	status200 := []byte{0x88} // :status 200, HPACK static table index 8
	f.Add(frames(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: status200, EndHeaders: true})
		fr.WriteData(1, false, []byte("\x81\x02hi"))
		fr.WriteData(1, true, nil)
	}))
	f.Add(frames(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: status200[:0], EndHeaders: false})
		fr.WriteContinuation(1, true, status200)
		fr.WriteRSTStream(1, http2.ErrCodeInternal)
	}))
	f.Add(frames(func(fr *http2.Framer) {
		fr.WritePing(false, [8]byte{1})
		fr.WriteWindowUpdate(0, 1<<31-1)
		fr.WriteWindowUpdate(1, 1)
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
	}))
	f.Add(frames(func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: status200, EndHeaders: true})
		fr.WriteData(1, false, make([]byte, 70000))
		fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, []byte("bye"))
	}))
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			defer server.Close()
			server.SetDeadline(time.Now().Add(2 * time.Second))
			// Read what the client sends, in the background, so that its
			// writes never block the pipe.
			var drain sync.WaitGroup
			defer drain.Wait()
			drain.Go(func() { io.Copy(io.Discard, server) })
			fr := http2.NewFramer(server, nil)
			fr.WriteSettings(http2.Setting{ID: http2.SettingEnableConnectProtocol, Val: 1})
			server.Write(input)
			time.Sleep(10 * time.Millisecond) // let the client act on it before the end
			server.Close()
		})

		tr := &h2client.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return client, nil }}
		defer tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		body, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "http://fuzz.example/", body)
		req.Header.Set(":protocol", "websocket")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode < 100 || resp.StatusCode > 999 {
			t.Fatalf("response %s %d", resp.Proto, resp.StatusCode)
		}
		if _, err := io.Copy(io.Discard, resp.Body); ctx.Err() != nil {
			t.Fatalf("reading the body did not end with the connection: %v", err)
		}
	})
}
