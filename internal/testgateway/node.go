// Package testgateway runs `duplex serve` as real processes on loopback and
// speaks the gateway's protocol (duplex.v1.json, PROTOCOL.md) and backend API
// to them, for the multi-node tests (internal/cluster) and the cluster
// benchmark (internal/clusterbench). It stops only the processes it started,
// by their PID, and bounds every wait.
package testgateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles the duplex command into dir and returns the binary's path.
// It runs the go command of PATH inside the module, so the tests and the
// benchmark measure the code of the tree.
func Build(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("testgateway: no go command to build duplex with: %w", err)
	}
	bin := filepath.Join(dir, "duplex")
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/duplexws/duplex/cmd/duplex").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("testgateway: go build: %w\n%s", err, out)
	}
	return bin, nil
}

// NodeOptions says how to start a node.
type NodeOptions struct {
	// Bin is the duplex binary (from Build).
	Bin string
	// Config is the YAML configuration file; its listen address is
	// overridden by Listen.
	Config string
	// Listen is the address to listen on. Default: 127.0.0.1:0, a free
	// port.
	Listen string
	// Args are more arguments of duplex serve, such as --broker.
	Args []string
	// Env is added to the process's environment (DUPLEX_… settings).
	Env []string
	// APIKey is sent with backend API calls. Default: none.
	APIKey string
	// Log, when set, also receives everything the node logs.
	Log io.Writer
	// StartTimeout bounds the wait for the node's "listening" line.
	// Default: 20 seconds.
	StartTimeout time.Duration
}

// Node is a running duplex serve process that StartNode started.
type Node struct {
	// URL is the node's base URL, http://127.0.0.1:port.
	URL  string
	opts NodeOptions
	cmd  *exec.Cmd
	logs *tail

	exited  chan struct{} // closed when the process has exited
	waitErr error         // its exit status, once exited is closed
	http    *http.Client
}

// ErrExited is returned by StartNode when the process ended before it
// listened; the error also holds the end of its log.
var ErrExited = errors.New("testgateway: duplex serve exited before listening")

var listeningLine = regexp.MustCompile(`^duplex serve listening on (https?://[^/]+)/$`)

// StartNode starts duplex serve and waits until it listens. The caller must
// end it with Kill or Stop.
func StartNode(ctx context.Context, opts NodeOptions) (*Node, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 20 * time.Second
	}
	args := []string{"serve", "--listen", opts.Listen}
	if opts.Config != "" {
		args = append(args, "--config", opts.Config)
	}
	args = append(args, opts.Args...)
	n := &Node{
		opts:   opts,
		cmd:    exec.Command(opts.Bin, args...),
		logs:   &tail{max: 256 << 10},
		exited: make(chan struct{}),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		}},
	}
	n.cmd.Env = append(os.Environ(), opts.Env...)
	var logs io.Writer = n.logs
	if opts.Log != nil {
		logs = io.MultiWriter(n.logs, opts.Log)
	}
	n.cmd.Stderr = logs
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("testgateway: %w", err)
	}
	first := make(chan string, 1)
	go func() {
		// The first line names the address; the rest is discarded so that
		// the process never blocks on a full pipe.
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		first <- strings.TrimSpace(line)
		io.Copy(io.Discard, r)
	}()
	go func() {
		err := n.cmd.Wait()
		n.waitErr = err
		close(n.exited)
	}()
	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	select {
	case line := <-first:
		m := listeningLine.FindStringSubmatch(line)
		if m == nil {
			n.Kill()
			return nil, fmt.Errorf("testgateway: duplex serve said %q, not where it listens\n%s", line, n.Log())
		}
		n.URL = m[1]
		return n, nil
	case <-n.exited:
		return nil, fmt.Errorf("%w (%v):\n%s", ErrExited, n.waitErr, n.Log())
	case <-timer.C:
		n.Kill()
		return nil, fmt.Errorf("testgateway: duplex serve did not listen within %v:\n%s", opts.StartTimeout, n.Log())
	case <-ctx.Done():
		n.Kill()
		return nil, ctx.Err()
	}
}

// PID returns the node's process id.
func (n *Node) PID() int { return n.cmd.Process.Pid }

// Addr returns the node's host:port.
func (n *Node) Addr() string {
	return strings.TrimPrefix(strings.TrimPrefix(n.URL, "http://"), "https://")
}

// WebSocketURL returns the URL clients connect to.
func (n *Node) WebSocketURL() string { return "ws" + strings.TrimPrefix(n.URL, "http") + "/ws" }

// Log returns the end of what the node logged.
func (n *Node) Log() string { return n.logs.String() }

// Exited is closed when the process has exited.
func (n *Node) Exited() <-chan struct{} { return n.exited }

// ExitErr is the process's exit status once Exited is closed.
func (n *Node) ExitErr() error {
	<-n.exited
	return n.waitErr
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (n *Node) Kill() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.http.CloseIdleConnections()
}

// Stop sends SIGTERM, so the node drains, and waits up to timeout for it to
// exit before it kills it. It returns the exit status.
func (n *Node) Stop(timeout time.Duration) error {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(timeout):
		n.Kill()
		return fmt.Errorf("testgateway: duplex serve still running %v after SIGTERM", timeout)
	}
	n.http.CloseIdleConnections()
	return n.waitErr
}

// APIError is an error reply of the backend API.
type APIError struct {
	Status  int // the HTTP status
	Code    int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("api: HTTP %d: %s (%d)", e.Status, e.Message, e.Code)
}

// API calls POST /api/<method> with req as its body and decodes the result
// into result (when not nil). An error reply is an *APIError.
func (n *Node) API(ctx context.Context, method string, req, result any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL+"/api/"+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	if n.opts.APIKey != "" {
		r.Header.Set("Authorization", "apikey "+n.opts.APIKey)
	}
	resp, err := n.http.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		json.Unmarshal(data, &e)
		return &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(data, result)
}

// Position is a place in a channel's stream.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Publish publishes data through the node's backend API.
func (n *Node) Publish(ctx context.Context, channel string, data any) (Position, error) {
	var pos Position
	err := n.API(ctx, "publish", map[string]any{"channel": channel, "data": data}, &pos)
	return pos, err
}

// Ready returns the HTTP status of GET /readyz.
func (n *Node) Ready(ctx context.Context) (int, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.http.Do(r)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Metric reads the unlabelled metric name from /metrics.
func (n *Node) Metric(ctx context.Context, name string) (float64, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := n.http.Do(r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("testgateway: no metric %s", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
