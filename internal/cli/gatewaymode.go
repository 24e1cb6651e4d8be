package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The client side of the gateway's protocol (PROTOCOL.md), shared by
// duplex connect --channel, duplex publish and duplex bench --mode
// subscribe.

// gatewaySubprotocol is the subprotocol of the gateway's JSON protocol.
const gatewaySubprotocol = "duplex.v1.json"

// gatewayClientName is the name the commands give the gateway in connect.
const gatewayClientName = "duplex-cli"

// apiKeyEnv is the environment variable that holds the backend API key
// when --api-key is not given.
const apiKeyEnv = "DUPLEX_API_KEY"

// defaultAPITimeout bounds one backend API request.
const defaultAPITimeout = 10 * time.Second

// gwCommand is a command to the gateway.
type gwCommand struct {
	ID      uint64          `json:"id"`
	Method  string          `json:"method"`
	Token   string          `json:"token,omitempty"`
	Name    string          `json:"name,omitempty"`
	Channel string          `json:"channel,omitempty"`
	Since   *gwPosition     `json:"since,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// gwPosition is a position in a channel's stream.
type gwPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// gwError is an error reply of the gateway or of its backend API.
type gwError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *gwError) Error() string { return fmt.Sprintf("%s (error %d)", e.Message, e.Code) }

// gwMessage is a line from the gateway: a reply to a command (ID set) or a
// push (Push set).
type gwMessage struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *gwError        `json:"error"`

	Push    string          `json:"push"`
	Channel string          `json:"channel"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
	Data    json.RawMessage `json:"data"`
	Info    *gwClientInfo   `json:"info"`
	From    uint64          `json:"from"`   // gap
	To      uint64          `json:"to"`     // gap
	Code    int             `json:"code"`   // unsubscribe
	Reason  string          `json:"reason"` // unsubscribe
}

// gwClientInfo names a client in publications and join and leave events.
type gwClientInfo struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info,omitempty"`
}

// gwConnectResult is the result of connect.
type gwConnectResult struct {
	Client  string `json:"client"`
	User    string `json:"user"`
	Expires int64  `json:"expires"`
	Version string `json:"version"`
}

// gwSubscribeResult is the result of subscribe.
type gwSubscribeResult struct {
	Epoch        string            `json:"epoch"`
	Offset       uint64            `json:"offset"`
	Recoverable  bool              `json:"recoverable"`
	Recovered    *bool             `json:"recovered"`
	Publications []json.RawMessage `json:"publications"`
}

// gwPublishResult is the result of publish, in the protocol and the API.
type gwPublishResult struct {
	Offset uint64   `json:"offset"`
	Epoch  string   `json:"epoch"`
	Error  *gwError `json:"error"` // in the results of the API's broadcast
}

// encodeCommands encodes commands as one message, a line each.
func encodeCommands(cmds ...gwCommand) []byte {
	var b []byte
	for i, c := range cmds {
		if i > 0 {
			b = append(b, '\n')
		}
		line, err := json.Marshal(c)
		if err != nil { // only json.RawMessage could fail, and it is checked JSON
			panic(err)
		}
		b = append(b, line...)
	}
	return b
}

// eachLine calls f with each non-empty line of a message from the gateway.
func eachLine(p []byte, f func(line []byte)) {
	for len(p) > 0 {
		line, rest, _ := bytes.Cut(p, []byte("\n"))
		if len(bytes.TrimSpace(line)) > 0 {
			f(line)
		}
		p = rest
	}
}

// jsonData turns the text of a line or argument into publication data: the
// text itself when it is JSON (compacted), else the text as a JSON string.
func jsonData(text string) json.RawMessage {
	if trimmed := strings.TrimSpace(text); trimmed != "" && json.Valid([]byte(trimmed)) {
		var b bytes.Buffer
		if json.Compact(&b, []byte(trimmed)) == nil {
			return b.Bytes()
		}
	}
	b, _ := json.Marshal(text) // a string cannot fail
	return b
}

// parseSince parses --since: "offset:epoch".
func parseSince(s string) (*gwPosition, error) {
	off, epoch, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(off, 10, 64)
	if !ok || err != nil {
		return nil, usageError{fmt.Errorf("--since wants offset:epoch, such as 41:p3bX2q, not %q", s)}
	}
	return &gwPosition{Offset: n, Epoch: epoch}, nil
}

// gatewayPath gives a gateway URL without a path the gateway's WebSocket
// endpoint, /ws.
func gatewayPath(u *url.URL) {
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
		u.RawPath = ""
	}
}

// apiBaseURL returns the base of the backend API for rawURL, the address of
// a gateway, given as http(s):// or ws(s)://, with or without a path to its
// endpoints (/ws, /api or /api/<method>); the API's methods are at
// base/api/<method>.
func apiBaseURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("bad URL: %v", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "ws", "wss":
		u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
	default:
		return "", fmt.Errorf("the API URL must start with http:// or https://, not %q", rawURL)
	}
	if u.Host == "" {
		return "", fmt.Errorf("the API URL %q has no host", rawURL)
	}
	p := u.Path
	if i := strings.Index(p, "/api/"); i >= 0 {
		p = p[:i]
	}
	p = strings.TrimSuffix(p, "/")
	p = strings.TrimSuffix(p, "/api")
	p = strings.TrimSuffix(p, "/ws")
	u.Path, u.RawPath, u.RawQuery, u.Fragment = strings.TrimSuffix(p, "/"), "", "", ""
	return u.String(), nil
}

// apiClient calls the gateway's backend API.
type apiClient struct {
	base   string // the API's methods are at base/api/<method>
	key    string // sent as Authorization: apikey <key>; "" for none
	client *http.Client
}

// newAPIClient returns a client of the API at base, as apiBaseURL returns
// it, making up to conns requests at once, each bounded by timeout.
func newAPIClient(base, key string, tlsConfig *tls.Config, conns int, timeout time.Duration) *apiClient {
	return &apiClient{
		base: base,
		key:  key,
		client: &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				TLSClientConfig:     tlsConfig,
				MaxIdleConnsPerHost: conns,
				IdleConnTimeout:     30 * time.Second,
			},
		},
	}
}

// close lets go of the client's idle connections.
func (a *apiClient) close() { a.client.CloseIdleConnections() }

// apiCallError is a failed API request: the API's error reply with the
// HTTP status, or an HTTP status without one.
type apiCallError struct {
	status int
	err    *gwError // nil when the reply held none
	body   string   // the start of the reply, when it held no error
}

func (e *apiCallError) Error() string {
	status := fmt.Sprintf("HTTP %d %s", e.status, http.StatusText(e.status))
	if e.err != nil {
		return fmt.Sprintf("%s (error %d, %s)", e.err.Message, e.err.Code, status)
	}
	if e.body != "" {
		return fmt.Sprintf("%s: %s", status, strconv.Quote(e.body))
	}
	return status
}

func (e *apiCallError) Unwrap() error {
	if e.err == nil {
		return nil
	}
	return e.err
}

// call posts body to the API's method and returns the reply's JSON.
func (a *apiClient) call(ctx context.Context, method string, body any) (json.RawMessage, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/api/"+method, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.key != "" {
		req.Header.Set("Authorization", "apikey "+a.key)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error *gwError `json:"error"`
		}
		ce := &apiCallError{status: resp.StatusCode}
		if json.Unmarshal(reply, &e) == nil && e.Error != nil {
			ce.err = e.Error
		} else {
			ce.body = strings.TrimSpace(string(reply[:min(len(reply), 200)]))
		}
		return nil, ce
	}
	if !json.Valid(reply) {
		return nil, fmt.Errorf("the API's reply is not JSON: %q", reply[:min(len(reply), 200)])
	}
	return bytes.TrimSpace(reply), nil
}

// apiKeyFlag returns --api-key, or when it was not given, the key in the
// environment.
func apiKeyFlag(cmd *cobra.Command, key string) string {
	if cmd.Flags().Changed("api-key") {
		return key
	}
	return os.Getenv(apiKeyEnv)
}

// errNotGateway says that a server did not take the gateway's subprotocol.
var errNotGateway = errors.New("the server did not accept the subprotocol " + gatewaySubprotocol +
	": is this the WebSocket endpoint (/ws) of a Duplex gateway?")
