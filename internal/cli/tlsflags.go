package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// tlsServerFlags are the TLS flags of a command that listens: a
// certificate and key from files, or a certificate made at start.
type tlsServerFlags struct {
	cert, key  string
	selfSigned bool
}

// register adds --tls-cert, --tls-key and --tls-self-signed to fl.
func (f *tlsServerFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.cert, "tls-cert", "", "serve TLS with this certificate chain `file` (PEM)")
	fl.StringVar(&f.key, "tls-key", "", "private key `file` for --tls-cert (PEM)")
	fl.BoolVar(&f.selfSigned, "tls-self-signed", false,
		"serve TLS with a certificate made at start for localhost, 127.0.0.1 and ::1; its SHA-256 fingerprint is printed")
}

// enabled reports whether a TLS flag is set.
func (f *tlsServerFlags) enabled() bool { return f.cert != "" || f.key != "" || f.selfSigned }

// config returns the TLS configuration the flags ask for, or nil when no
// TLS flag is set. For --tls-self-signed it writes the certificate's
// SHA-256 fingerprint to w, as one line a client can check it by.
// NextProtos is left empty: the caller sets it (http/1.1, h2).
func (f *tlsServerFlags) config(w io.Writer) (*tls.Config, error) {
	switch {
	case !f.enabled():
		return nil, nil
	case f.selfSigned && (f.cert != "" || f.key != ""):
		return nil, usageError{errors.New("--tls-self-signed makes its own certificate: it takes no --tls-cert or --tls-key")}
	case f.selfSigned:
		cert, err := selfSignedCert(time.Now())
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "TLS certificate made at start, SHA-256 fingerprint %s\n", fingerprint(cert.Certificate[0]))
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	case f.cert == "" || f.key == "":
		return nil, usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// selfSignedCert makes an ECDSA P-256 certificate for localhost, 127.0.0.1
// and ::1, valid from an hour before now for 30 days.
func selfSignedCert(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "duplex self-signed"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// fingerprint is the SHA-256 of a DER certificate, as colon-separated
// upper-case hex (the form browsers and openssl show).
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
