package cli

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTLSSelfSigned(t *testing.T) {
	var out bytes.Buffer
	cfg, err := (&tlsServerFlags{selfSigned: true}).config(&out)
	if err != nil {
		t.Fatal(err)
	}
	cert := cfg.Certificates[0]
	want := "SHA-256 fingerprint " + fingerprint(cert.Certificate[0]) + "\n"
	if !strings.HasSuffix(out.String(), want) || len(fingerprint(cert.Certificate[0])) != 32*3-1 {
		t.Errorf("printed %q, want it to end in %q", out.String(), want)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: time.Now()}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots}); err == nil {
		t.Error("the certificate verifies for example.com")
	}
}

func TestTLSFlagsRefused(t *testing.T) {
	for _, f := range []tlsServerFlags{
		{selfSigned: true, cert: "c.pem"},
		{cert: "c.pem"},
		{key: "k.pem"},
	} {
		_, err := f.config(new(bytes.Buffer))
		if !errors.As(err, new(usageError)) {
			t.Errorf("%+v: %v, want a usage error", f, err)
		}
	}
	if cfg, err := (&tlsServerFlags{}).config(new(bytes.Buffer)); cfg != nil || err != nil {
		t.Errorf("no flags: %v, %v; want nil, nil", cfg, err)
	}
	if _, err := (&tlsServerFlags{cert: "/nonexistent.pem", key: "/nonexistent.key"}).config(new(bytes.Buffer)); err == nil || errors.As(err, new(usageError)) {
		t.Errorf("missing files: %v, want a plain error", err)
	}
}
