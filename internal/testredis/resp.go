package testredis

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Error is an error reply of the server ("-ERR ...").
type Error string

func (e Error) Error() string { return "redis: " + string(e) }

// adminConn is a minimal RESP2 client for the harness's own commands:
// readiness, CLIENT KILL, SHUTDOWN, CLUSTER INFO. It does not depend on the
// client library under test.
type adminConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialAdmin(addr string, tlsConf *tls.Config, password string, timeout time.Duration) (*adminConn, error) {
	d := &net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	a := &adminConn{c: c, r: bufio.NewReader(c)}
	if password != "" {
		if _, err := a.do(timeout, "AUTH", password); err != nil {
			c.Close()
			return nil, err
		}
	}
	return a, nil
}

func (a *adminConn) close() error { return a.c.Close() }

// do sends one command and reads its reply: a string for simple and bulk
// strings, an int64 for integers, []any for arrays, nil for null, an Error
// for an error reply.
func (a *adminConn) do(timeout time.Duration, args ...string) (any, error) {
	a.c.SetDeadline(time.Now().Add(timeout))
	buf := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, arg := range args {
		buf = fmt.Appendf(buf, "$%d\r\n%s\r\n", len(arg), arg)
	}
	if _, err := a.c.Write(buf); err != nil {
		return nil, err
	}
	v, err := a.read()
	if err != nil {
		return nil, err
	}
	if e, ok := v.(Error); ok {
		return nil, e
	}
	return v, nil
}

func (a *adminConn) read() (any, error) {
	line, err := a.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errors.New("testredis: malformed reply")
	}
	kind, rest := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return rest, nil
	case '-':
		return Error(rest), nil
	case ':':
		return strconv.ParseInt(rest, 10, 64)
	case '$':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(a.r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = a.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("testredis: unknown reply type %q", kind)
}
