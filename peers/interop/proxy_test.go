package interop

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildDuplex builds the duplex command in the main module, two
// directories up (as part of this module it would need the main module's
// requirements in this go.sum), into a temporary directory.
func buildDuplex(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "duplex")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/duplex")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build duplex: %v\n%s", err, out)
	}
	return bin
}

// duplexProxy is duplex proxy run as a peer process, with its printout.
type duplexProxy struct {
	proc *peerProcess
	url  string // where it listens

	mu  sync.Mutex
	out strings.Builder // guarded by mu
}

func (p *duplexProxy) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startDuplexProxy runs bin's duplex proxy in front of to, with args.
func startDuplexProxy(t *testing.T, bin, to string, args ...string) *duplexProxy {
	t.Helper()
	p := &duplexProxy{}
	listening := make(chan string, 1)
	first := regexp.MustCompile(`^duplex proxy listening on (wss?://127\.0\.0\.1:\d+), relaying to `)
	onLine := func(line string) {
		p.mu.Lock()
		p.out.WriteString(line + "\n")
		p.mu.Unlock()
		if m := first.FindStringSubmatch(line); m != nil {
			listening <- m[1]
		}
	}
	p.proc = startPeer(t, peerRunTimeout, onLine, bin, append([]string{"proxy", "--listen", "127.0.0.1:0", "--to", to}, args...)...)
	select {
	case p.url = <-listening:
	case <-p.proc.exited:
		t.Fatalf("duplex proxy exited before listening: %v\n%s", p.proc.err, p.proc.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("duplex proxy printed no address")
	}
	return p
}

// stop ends the proxy with SIGTERM, as a user would, and checks that it
// exits with status 0.
func (p *duplexProxy) stop(t *testing.T) {
	t.Helper()
	signalGroup(p.proc.cmd, syscall.SIGTERM)
	if !p.proc.waitExit(10 * time.Second) {
		t.Errorf("duplex proxy still running 10s after SIGTERM")
		return
	}
	if p.proc.err != nil {
		t.Errorf("duplex proxy after SIGTERM: %v, want exit status 0; stderr:\n%s", p.proc.err, p.proc.stderr.String())
	}
}

// TestProxyNodeToPython puts duplex proxy between Node's ws client and
// Python's websockets server: plain, with a subprotocol, with
// permessage-deflate and over TLS on both sides of the proxy. Every step
// of the plan must come through as it would without the proxy, and the
// proxy must show the frames, compressed ones inflated.
func TestProxyNodeToPython(t *testing.T) {
	requireNode(t)
	recordVersion(t, "ws", npmVersion(t, "ws"))
	recordVersion(t, "websockets", requirePython(t))
	certs := newTestCerts(t)
	py := startScriptServer(t, certs, pythonPath, pythonPeer, "server")
	bin := buildDuplex(t)
	plain := startDuplexProxy(t, bin, py.plain)
	deflate := startDuplexProxy(t, bin, py.deflate)
	secure := startDuplexProxy(t, bin, py.tls, "--tls-cert", certs.certFile, "--tls-key", certs.keyFile, "--ca", certs.certFile)

	var echoes []step
	for _, kind := range kinds {
		for _, size := range []int{0, 125, 126, 64 << 10, 1 << 20} {
			echoes = append(echoes, step{Op: "echo", Kind: kind, Size: size})
		}
		echoes = append(echoes, step{Op: "echo", Kind: kind, Size: fragmentedSize, Fragments: fragmentCount})
	}
	closeWith := func(code int, reason string) step {
		return step{Op: "close", Code: code, Reason: reason, wantClose: &closeEvent{Code: code}} // websockets answers with the code
	}
	p := plan{CA: certs.certFile}
	add := func(s session) {
		s.StepTimeoutMs = int(stepTimeout / time.Millisecond)
		if s.Protocols == nil {
			s.Protocols = []string{}
		}
		p.Sessions = append(p.Sessions, s)
	}
	add(session{Name: "plain", URL: plain.url + "/?id=plain", Steps: append(append([]step{}, echoes...), step{Op: "ping"}, closeWith(4001, "bye"))})
	add(session{Name: "subprotocol", URL: plain.url + "/?id=subprotocol", Protocols: []string{"duplex.other", "duplex.test"},
		Steps: []step{{Op: "echo", Kind: kindText, Size: 125}, closeWith(1000, "")}, expect: expectation{protocol: "duplex.test"}})
	add(session{Name: "server-close", URL: plain.url + "/close?id=server-close", Steps: []step{{Op: "awaitClose", wantClose: &closeEvent{4001, "bye"}}}})
	add(session{Name: "deflate", URL: deflate.url + "/?id=deflate", Compress: true, Steps: append(append([]step{}, echoes...), closeWith(1000, "")),
		expect: expectation{extension: []string{"permessage-deflate"}}})
	add(session{Name: "wss", URL: secure.url + "/?id=wss", Steps: append(append([]step{}, echoes[:3]...), closeWith(1000, ""))})

	proc := startPeer(t, peerRunTimeout, nil, "node", "js/ws_client.mjs", writePlan(t, p))
	results := parseResults(t, proc.output(t))
	for _, s := range p.Sessions {
		t.Run(s.Name, func(t *testing.T) {
			r, ok := results[s.Name]
			if !ok {
				t.Fatalf("no result from the ws client")
			}
			if r.Error != "" {
				t.Errorf("session failed after %d of %d steps: %s", len(r.Steps), len(s.Steps), r.Error)
			}
			if r.Protocol != s.expect.protocol {
				t.Errorf("subprotocol %q through the proxy, want %q", r.Protocol, s.expect.protocol)
			}
			checkExtensions(t, r.Extensions, s.expect.extension, s.expect.notExtension)
			for i, st := range s.Steps {
				t.Run(st.name(), func(t *testing.T) {
					if i >= len(r.Steps) {
						t.Fatalf("not run: the session stopped before it")
					}
					checkStep(t, st, r.Steps[i])
				})
			}
		})
	}

	for _, px := range []*duplexProxy{plain, deflate, secure} {
		px.stop(t)
	}
	// The printouts: each frame both ways, in the order the ws client
	// sent them; the compressed ones inflated.
	ts := `\d\d:\d\d:\d\d\.\d{6} #\d+ `
	wantLines(t, "plain", plain.output(),
		ts+`in  GET /\?id=plain HTTP/1\.1`,
		ts+`out HTTP/1\.1 101 Switching Protocols`,
		ts+`in  text fin len=125: duplex é€😀 websocket`,
		ts+`out text fin len=125: duplex é€😀 websocket`,
		ts+`in  text len=2000: duplex é€😀 websocket`,
		ts+`in  continuation len=2000: `,
		ts+`in  continuation fin len=2000: `,
		ts+`out text fin len=10000: duplex é€😀 websocket`,
		ts+`in  binary fin len=126: 07264564`,
		ts+`out binary fin len=126: 07264564`,
		ts+`in  binary fin len=1048576: 07264564[0-9a-f]+… \(1044480 more bytes\)$`,
		ts+`in  ping fin len=19: `,
		ts+`out pong fin len=19: `,
		ts+`in  close fin len=5: code=4001 reason="bye"`,
		ts+`out close fin len=\d+: code=4001`,
		ts+`out Sec-Websocket-Protocol: duplex.test`,
		ts+`in  GET /close\?id=server-close HTTP/1\.1`,
		ts+`out close fin len=5: code=4001 reason="bye"`,
	)
	wantLines(t, "deflate", deflate.output(),
		ts+`out Sec-Websocket-Extensions: permessage-deflate`,
		ts+`in  text fin rsv1 len=\d+: \(inflated to 125 bytes\) duplex é€😀 websocket`,
		ts+`out text fin rsv1 len=\d+: \(inflated to 125 bytes\) duplex é€😀 websocket`,
		ts+`in  binary fin rsv1 len=\d+: \(inflated to 65536 bytes\) 07264564`,
		ts+`out binary fin rsv1 len=\d+: \(inflated to 65536 bytes\) 07264564`,
	)
	if out := deflate.output(); strings.Contains(out, "inflate failed") || strings.Contains(out, "not inflated") {
		t.Errorf("the deflate proxy could not inflate a message:\n%s", out)
	}
	wantLines(t, "wss", secure.output(), ts+`in  text fin len=125: duplex`, ts+`out text fin len=125: duplex`)
}

// wantLines checks that each pattern matches a line of out after the line
// the one before it matched.
func wantLines(t *testing.T, name, out string, patterns ...string) {
	t.Helper()
	at := 0
	for _, p := range patterns {
		loc := regexp.MustCompile(`(?m)^` + p).FindStringIndex(out[at:])
		if loc == nil {
			lines := strings.Split(out, "\n")
			if len(lines) > 60 {
				lines = lines[:60]
			}
			t.Errorf("%s proxy: after byte %d, no line matches %q; its output begins:\n%s", name, at, p, strings.Join(lines, "\n"))
			return
		}
		at += loc[1]
	}
}
