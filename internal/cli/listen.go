package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexws/duplex/websocket"
)

// listenWriteTimeout bounds one message typed to a client: a client that
// reads nothing for this long is not worth holding the other clients for.
const listenWriteTimeout = 10 * time.Second

// listenServer is the state of duplex listen: its clients, numbered from 1
// in the order they connect, and where it prints. out gets a line for
// every connect, message and disconnect; log gets what goes wrong with
// what was typed and with handshakes.
type listenServer struct {
	accept    websocket.AcceptOptions
	readLimit int64
	out, log  *console
	once      bool
	done      context.CancelFunc // with --once, called when the client leaves

	mu      sync.Mutex
	next    int
	clients map[int]*listenClient
	taken   bool // with --once, a client has been accepted
}

// listenClient is one connected client.
type listenClient struct {
	conn *websocket.Conn

	mu       sync.Mutex
	closedBy string // set when this side began the close, saying how
}

// serve is the connHandler of duplex listen.
func (s *listenServer) serve(stop context.Context, w http.ResponseWriter, r *http.Request) {
	if !s.take() {
		w.Header().Set("Connection", "close")
		http.Error(w, "duplex listen --once serves one client, and has it", http.StatusServiceUnavailable)
		return
	}
	c, err := websocket.Accept(w, r, &s.accept)
	if err != nil {
		s.log.printf("handshake from %s refused: %v", r.RemoteAddr, err)
		s.untake()
		return
	}
	c.SetReadLimit(s.readLimit)
	cl := &listenClient{conn: c}
	id := s.add(cl)
	connected := fmt.Sprintf("[%d] connected from %s: %s", id, r.RemoteAddr, r.URL.RequestURI())
	if p := c.Subprotocol(); p != "" {
		connected += ", subprotocol " + p
	}
	s.out.printf("%s", connected)

	release := closeOnStop(stop, c)
	err = s.readLoop(id, c)
	if release() {
		cl.setClosedBy(fmt.Sprintf("closed with %s %q", describeCode(websocket.StatusGoingAway), goingAway))
	}
	s.remove(id)
	c.CloseNow()
	s.out.printf("[%d] %s", id, cl.describeEnd(err))
	if s.once {
		s.done()
	}
}

// take reserves the one place of --once, and reports whether it was free.
// Without --once there is always room.
func (s *listenServer) take() bool {
	if !s.once {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken {
		return false
	}
	s.taken = true
	return true
}

// untake frees the place of --once after a handshake that failed.
func (s *listenServer) untake() {
	s.mu.Lock()
	s.taken = false
	s.mu.Unlock()
}

func (s *listenServer) add(cl *listenClient) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.clients[s.next] = cl
	return s.next
}

func (s *listenServer) remove(id int) {
	s.mu.Lock()
	delete(s.clients, id)
	s.mu.Unlock()
}

// client returns client id, or nil.
func (s *listenServer) client(id int) *listenClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[id]
}

// ids returns the numbers of the connected clients, in order.
func (s *listenServer) ids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int, 0, len(s.clients))
	for id := range s.clients {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// readLoop prints the messages of client id until its connection ends,
// and returns why it ended. Its context never ends: the connection ends
// through Close, by the client, by a /close typed, or as the server stops.
func (s *listenServer) readLoop(id int, c *websocket.Conn) error {
	for {
		typ, p, err := c.Read(context.Background())
		if err != nil {
			return err
		}
		s.out.printf("[%d] < %s", id, describeMessage(typ, p, wireMessage{}, false, true))
	}
}

func (cl *listenClient) setClosedBy(how string) {
	cl.mu.Lock()
	if cl.closedBy == "" {
		cl.closedBy = how
	}
	cl.mu.Unlock()
}

// describeEnd says how the connection ended, given what ended its reads.
func (cl *listenClient) describeEnd(err error) string {
	cl.mu.Lock()
	closedBy := cl.closedBy
	cl.mu.Unlock()
	var ce *websocket.CloseError
	var pe *websocket.ProtocolError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("failed: closed with %s: %v", describeCode(pe.Code), err)
	case closedBy != "" && errors.As(err, &ce):
		return closedBy + "; the client answered"
	case closedBy != "":
		return closedBy + "; no answer: " + err.Error()
	case errors.As(err, &ce):
		return fmt.Sprintf("disconnected: the client closed with %s %q", describeCode(ce.Code), ce.Reason)
	}
	return "disconnected without a close: " + err.Error()
}

// listenHelp is what /help prints.
const listenHelp = `a line is sent to every client as text; commands:
  /to N <line>             send to client N only
  /binary <hex|base64>     send binary (also after /to N)
  //text                   send "/text"
  /close N [code [reason]] close client N (code 1000 by default)
  /list                    list the clients`

// command carries out a line typed on stdin.
func (s *listenServer) command(line string) {
	name, arg, _ := strings.Cut(line, " ")
	switch name {
	case "/to":
		idText, msg, _ := strings.Cut(arg, " ")
		id, err := strconv.Atoi(idText)
		if err != nil {
			s.log.printf("/to wants a client number and a message, as in /to 2 hello")
			return
		}
		s.send([]int{id}, msg)
	case "/close":
		idText, closeArgs, _ := strings.Cut(arg, " ")
		id, err := strconv.Atoi(idText)
		if err != nil {
			s.log.printf("/close wants a client number, then a code and a reason if you like")
			return
		}
		code, reason, err := parseCloseArgs(closeArgs)
		if err != nil {
			s.log.printf("%v", err)
			return
		}
		s.closeClient(id, code, reason)
	case "/list":
		ids := s.ids()
		if len(ids) == 0 {
			s.out.printf("no clients")
			return
		}
		s.out.printf("clients: %s", joinInts(ids))
	case "/help":
		for l := range strings.SplitSeq(listenHelp, "\n") {
			s.log.printf("%s", l)
		}
	default:
		s.send(nil, line)
	}
}

// send sends the message msg describes to the clients ids, or to every
// client when ids is nil, one after the other, and prints to whom it went.
func (s *listenServer) send(ids []int, msg string) {
	typ, p, err := parseListenMessage(msg)
	if err != nil {
		s.log.printf("%v", err)
		return
	}
	if ids == nil {
		if ids = s.ids(); len(ids) == 0 {
			s.log.printf("no client is connected: nothing sent")
			return
		}
	}
	var sent []int
	for _, id := range ids {
		cl := s.client(id)
		if cl == nil {
			s.log.printf("no client %d (/list lists them)", id)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), listenWriteTimeout)
		err := cl.conn.Write(ctx, typ, p)
		cancel()
		if err != nil {
			s.log.printf("[%d] not sent: %v", id, err)
			continue
		}
		sent = append(sent, id)
	}
	if len(sent) > 0 {
		s.out.printf("[%s] > %s", joinInts(sent), describeMessage(typ, p, wireMessage{}, false, true))
	}
}

// closeClient closes client id with code and reason. The close handshake
// runs in the client's handler, which prints its end: Close here waits for
// the answer at most the close timeout, while typing goes on.
func (s *listenServer) closeClient(id int, code websocket.StatusCode, reason string) {
	cl := s.client(id)
	if cl == nil {
		s.log.printf("no client %d (/list lists them)", id)
		return
	}
	cl.setClosedBy(fmt.Sprintf("closed with %s %q", describeCode(code), reason))
	if err := cl.conn.Close(code, reason); err != nil && websocket.CloseStatus(err) == -1 {
		s.log.printf("[%d] close: %v", id, err)
	}
}

// parseListenMessage turns a typed message into a WebSocket message:
// "/binary X" is binary from hex or base64, "//x" the text "/x", other
// lines starting with / are unknown commands, and the rest text as typed.
func parseListenMessage(msg string) (websocket.MessageType, []byte, error) {
	switch {
	case strings.HasPrefix(msg, "//"):
		return websocket.MessageText, []byte(msg[1:]), nil
	case strings.HasPrefix(msg, "/binary "):
		p, err := decodeBinary(strings.TrimPrefix(msg, "/binary "))
		return websocket.MessageBinary, p, err
	case strings.HasPrefix(msg, "/"):
		name, _, _ := strings.Cut(msg, " ")
		return 0, nil, fmt.Errorf("unknown command %s (/help lists them; //text sends /text)", name)
	}
	return websocket.MessageText, []byte(msg), nil
}

// joinInts formats ids as "1 2 3".
func joinInts(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(id)
	}
	return strings.Join(parts, " ")
}
