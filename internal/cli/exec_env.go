package cli

import (
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// credentialHeaders are the request headers that carry the client's
// credentials: duplex exec passes them to the program only when
// --pass-header names them, so that a program that logs its environment
// does not log them.
var credentialHeaders = []string{"Authorization", "Cookie", "Proxy-Authorization"}

// cgiVariables are the variables execEnv sets from the request; a variable
// of the same name in duplex's own environment is not passed on, so the
// program never mistakes it for the client's.
var cgiVariables = []string{
	"DUPLEX_CONNECTION", "HTTPS", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_PORT",
	"REQUEST_METHOD", "REQUEST_URI", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
}

// execEnv returns the environment of the program run for request r, the
// conn-th connection: duplex's own environment without any HTTP_*
// variable or variable named in cgiVariables, then CGI-style variables
// (RFC 3875 section 4.1) for the request, then each request header as
// HTTP_NAME (upper case, "-" as "_"), several values joined with ", ".
//
// Headers left out: a name with a character other than a letter, digit or
// "-" (so that "X_Real_IP" cannot pose as "X-Real-IP"); "Proxy", which
// would become HTTP_PROXY, the proxy setting of many programs (httpoxy);
// and the credentialHeaders that pass does not name.
func execEnv(base []string, r *http.Request, conn int64, tls bool, pass []string) []string {
	env := make([]string, 0, len(base)+len(cgiVariables)+len(r.Header))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(name), "HTTP_") || slices.Contains(cgiVariables, name) {
			continue
		}
		env = append(env, kv)
	}
	remoteHost, remotePort, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		remoteHost = r.RemoteAddr
	}
	serverName, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		serverName = r.Host
	}
	serverPort := ""
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		_, serverPort, _ = net.SplitHostPort(local.String())
	}
	https := "off"
	if tls {
		https = "on"
	}
	env = append(env,
		"DUPLEX_CONNECTION="+strconv.FormatInt(conn, 10),
		"HTTPS="+https,
		"PATH_INFO="+r.URL.Path,
		"QUERY_STRING="+r.URL.RawQuery,
		"REMOTE_ADDR="+remoteHost,
		"REMOTE_PORT="+remotePort,
		"REQUEST_METHOD="+r.Method,
		"REQUEST_URI="+r.RequestURI,
		"SERVER_NAME="+serverName,
		"SERVER_PORT="+serverPort,
		"SERVER_PROTOCOL="+r.Proto,
		"SERVER_SOFTWARE=duplex/"+version(),
	)
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !headerPassed(name, pass) {
			continue
		}
		value := strings.Join(r.Header.Values(name), ", ")
		if strings.ContainsRune(value, 0) {
			continue // no environment can hold it
		}
		env = append(env, "HTTP_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+value)
	}
	return env
}

// headerPassed reports whether header name goes to the program.
func headerPassed(name string, pass []string) bool {
	if name == "" || strings.EqualFold(name, "Proxy") {
		return false
	}
	for _, c := range name {
		if !(c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	for _, h := range credentialHeaders {
		if strings.EqualFold(name, h) {
			return slices.ContainsFunc(pass, func(p string) bool { return strings.EqualFold(p, h) })
		}
	}
	return true
}
