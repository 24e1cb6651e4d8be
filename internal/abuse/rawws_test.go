package abuse

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rawConn is an attacker's TCP connection, written byte by byte as the
// attack needs: the handshake, then frames that a well-behaved client
// library would never send.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// dialTCP opens a TCP connection to addr from ip; rcvbuf, when positive,
// caps the socket's receive buffer, so that a client that does not read
// stalls the server's writes after a few KiB instead of the many MiB
// loopback buffers by default.
func dialTCP(ctx context.Context, addr string, ip net.IP, rcvbuf int) (*rawConn, error) {
	d := localDialer(ip)
	if rcvbuf > 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Closing resets the connection: thousands of attacks a second would
	// otherwise fill the loopback's ports with TIME_WAIT.
	c.(*net.TCPConn).SetLinger(0)
	return &rawConn{Conn: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// upgradeRequest is a WebSocket handshake request for path, with extra
// header lines (each ending in \r\n).
func upgradeRequest(host, path, extra string) string {
	var key [16]byte
	rand.Read(key[:])
	return "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\n" +
		extra + "\r\n"
}

// dialWS opens a WebSocket connection by hand from ip and returns it
// with the handshake's HTTP status (101 when upgraded).
func dialWS(ctx context.Context, g *target, ip net.IP, extra string, rcvbuf int) (*rawConn, int, error) {
	c, err := dialTCP(ctx, g.addr, ip, rcvbuf)
	if err != nil {
		return nil, 0, err
	}
	path := "/"
	if g.kind == "serve" {
		path = "/ws"
		extra = "Sec-WebSocket-Protocol: duplex.v1.json\r\n" + extra
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// The request is written while the response is read, as an HTTP
	// client does: a server may answer before it has read all of a
	// request it refuses (431 for a header too large) and then close,
	// which resets a connection still being written to; the answer came
	// first.
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, upgradeRequest(g.addr, path, extra))
		wrote <- err
	}()
	status, err := c.readResponseHead()
	if status != 0 {
		c.SetWriteDeadline(time.Now()) // a refused request need not be sent whole
	}
	werr := <-wrote
	c.SetDeadline(time.Time{})
	if err == nil && status == 0 {
		err = werr
	}
	if err != nil || (werr != nil && status == http.StatusSwitchingProtocols) {
		c.Close()
		return nil, status, errors.Join(err, werr)
	}
	return c, status, nil
}

// readResponseHead reads an HTTP response's status line and headers and
// returns the status.
func (c *rawConn) readResponseHead() (int, error) {
	line, err := c.br.ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("status line %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, fmt.Errorf("status line %q", line)
	}
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return status, err
		}
		if line == "\r\n" {
			return status, nil
		}
	}
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// appendFrame appends a masked client frame: fin, rsv1, opcode, and the
// payload length announced (which may differ from len(payload), for
// frames never finished).
func appendFrame(b []byte, fin, rsv1 bool, op byte, length int, payload []byte) []byte {
	first := op
	if fin {
		first |= 0x80
	}
	if rsv1 {
		first |= 0x40
	}
	b = append(b, first)
	switch {
	case length < 126:
		b = append(b, 0x80|byte(length))
	case length <= 0xffff:
		b = append(b, 0x80|126, byte(length>>8), byte(length))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(length))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, p := range payload {
		b = append(b, p^mask[i%4])
	}
	return b
}

// frame is one frame read from the server.
type frame struct {
	op      byte
	payload []byte
}

// readFrame reads one (unmasked) server frame, keeping at most 64 KiB of
// its payload.
func (c *rawConn) readFrame() (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return frame{}, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(c.br, ext[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	keep := min(n, 64<<10)
	f := frame{op: h[0] & 0x0f, payload: make([]byte, keep)}
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, err
	}
	if _, err := io.CopyN(io.Discard, c.br, int64(n-keep)); err != nil {
		return f, err
	}
	return f, nil
}

// awaitClose reads until the server's close frame or the end of the
// connection, within d, and names how it ended: the close code, "none"
// when the connection ended without one, or "open" when it did not end.
func (c *rawConn) awaitClose(d time.Duration) string {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := c.readFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "open"
			}
			return "none"
		}
		if f.op == opClose {
			if len(f.payload) < 2 {
				return "1005"
			}
			return strconv.Itoa(int(binary.BigEndian.Uint16(f.payload)))
		}
	}
}

// awaitEnd waits, within d, for the server to end the connection, reading
// and discarding what it sends; it names the first HTTP status it saw
// ("431"), "closed" when it closed without one, or "open".
func (c *rawConn) awaitEnd(d time.Duration) string {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	status := ""
	line, err := c.br.ReadString('\n')
	if err == nil {
		if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
			status = f[1]
		}
		_, err = io.Copy(io.Discard, c.br)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if status != "" {
			return status + " open"
		}
		return "open"
	}
	if status != "" {
		return status
	}
	return "closed"
}

// statusText is net/http's name for a status, for notes.
func statusText(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }
