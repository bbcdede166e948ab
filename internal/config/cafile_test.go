package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA returns a self-signed CA certificate and a leaf for "upstream.test"
// signed by it, both parsed.
func testCA(t *testing.T) (ca, leaf *x509.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "config test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), DNSNames: []string{"upstream.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(leafDER)
	return ca, leaf
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func TestLoadUpstreamCAFile(t *testing.T) {
	ca, leaf := testCA(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("ca.pem", "# the test CA\n"+pemOf(ca))
	// A bundle may carry other blocks (a key someone pasted along); only
	// the certificates count.
	mixed := write("mixed.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"+pemOf(ca))

	opts := func(pool *x509.CertPool) x509.VerifyOptions {
		return x509.VerifyOptions{DNSName: "upstream.test", Roots: pool}
	}
	for _, tt := range []struct{ name, path string }{{"one CA", good}, {"CA after a key block", mixed}} {
		t.Run(tt.name, func(t *testing.T) {
			c := load(t, env{"UPSTREAM_CA_FILE": tt.path})
			if c.UpstreamCAFile != tt.path || c.UpstreamRootCAs == nil {
				t.Fatalf("Load(UPSTREAM_CA_FILE=%q) = file %q, roots %v; want the file and a pool", tt.path, c.UpstreamCAFile, c.UpstreamRootCAs)
			}
			if _, err := leaf.Verify(opts(c.UpstreamRootCAs)); err != nil {
				t.Errorf("leaf signed by the file's CA does not verify against UpstreamRootCAs: %v", err)
			}
		})
	}
	t.Run("unset", func(t *testing.T) {
		c := load(t, env{})
		if c.UpstreamRootCAs != nil {
			t.Errorf("Load(empty env).UpstreamRootCAs = %v; want nil (the system roots)", c.UpstreamRootCAs)
		}
		if _, err := leaf.Verify(opts(nil)); err == nil {
			t.Error("the test leaf verifies against the system roots; the trusted case above proves nothing")
		}
	})

	bad := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.pem"), "cannot read the file: no such file or directory"},
		{"a directory", dir, "cannot read the file"},
		{"empty", write("empty.pem", ""), "holds no PEM certificate"},
		{"not PEM", write("der.crt", string(ca.Raw)), "holds no PEM certificate"},
		{"only a key", write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "holds no PEM certificate"},
		{"broken certificate", write("broken.pem", pemOf(ca)+"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "certificate 2 does not parse"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env{"UPSTREAM_CA_FILE": tt.path}.get)
			want := `UPSTREAM_CA_FILE="` + tt.path + `": ` + tt.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load(UPSTREAM_CA_FILE=%q) error = %v; want it to contain %q", tt.path, err, want)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != 1 {
				t.Errorf("Load(UPSTREAM_CA_FILE=%q) error has %d lines; want 1", tt.path, n)
			}
			if c.UpstreamRootCAs != nil {
				t.Errorf("Load(UPSTREAM_CA_FILE=%q).UpstreamRootCAs = %v; want nil beside the error", tt.path, c.UpstreamRootCAs)
			}
		})
	}
}
