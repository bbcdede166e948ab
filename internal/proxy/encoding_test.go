package proxy

import (
	"net/http"
	"strings"
	"testing"
)

// acceptCases seed TestUpstreamAcceptEncoding and its fuzz test.
var acceptCases = []struct {
	client []string
	want   string
}{
	{nil, "identity"},
	{[]string{""}, "identity"},
	{[]string{"gzip"}, "gzip"},
	{[]string{"GZIP"}, "gzip"},
	{[]string{"x-gzip"}, "gzip"},
	{[]string{"gzip, deflate, br, zstd"}, "gzip"},
	{[]string{"br", "gzip;q=0.1"}, "gzip"},
	{[]string{"br;q=1.0, deflate"}, "identity"},
	{[]string{"zstd"}, "identity"},
	{[]string{"identity"}, "identity"},
	{[]string{"*"}, "gzip"},
	{[]string{"*;q=0"}, "identity"},
	{[]string{"gzip;q=0, *"}, "identity"},
	{[]string{"gzip; Q=0.000"}, "identity"},
	{[]string{"gzip;q=nonsense"}, "identity"},
	{[]string{"gzip ; level=1 ; q=0.5"}, "gzip"},
}

func TestUpstreamAcceptEncoding(t *testing.T) {
	for _, tc := range acceptCases {
		got := upstreamAcceptEncoding(tc.client)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("upstreamAcceptEncoding(%q) = %q; want %q", tc.client, got, tc.want)
		}
	}
	common := []string{"gzip, deflate, br"}
	if n := testing.AllocsPerRun(100, func() { upstreamAcceptEncoding(common) }); n != 0 {
		t.Errorf("upstreamAcceptEncoding allocations = %v; want 0", n)
	}
}

// FuzzUpstreamAcceptEncoding: whatever the client sends, the upstream is
// asked for gzip or identity only, and for gzip only when the client named
// gzip or "*".
func FuzzUpstreamAcceptEncoding(f *testing.F) {
	for _, tc := range acceptCases {
		f.Add(strings.Join(tc.client, "\n"))
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := upstreamAcceptEncoding(strings.Split(v, "\n"))
		if len(got) != 1 || got[0] != "gzip" && got[0] != "identity" {
			t.Fatalf("upstreamAcceptEncoding(%q) = %q; want gzip or identity", v, got)
		}
		if got[0] == "gzip" && !strings.Contains(strings.ToLower(v), "gzip") && !strings.Contains(v, "*") {
			t.Fatalf("upstreamAcceptEncoding(%q) = gzip; the client did not name it", v)
		}
	})
}

func TestEncodingOf(t *testing.T) {
	for _, tc := range []struct {
		ce   []string
		want contentEncoding
	}{
		{nil, encIdentity},
		{[]string{""}, encIdentity},
		{[]string{"Identity"}, encIdentity},
		{[]string{"gzip"}, encGzip},
		{[]string{"GZIP"}, encGzip},
		{[]string{" x-gzip "}, encGzip},
		{[]string{"br"}, encOther},
		{[]string{"Deflate"}, encDeflate},
		{[]string{"gzip", "br"}, encOther},
		{[]string{"gzip, br"}, encOther},
	} {
		h := http.Header{}
		if tc.ce != nil {
			h["Content-Encoding"] = tc.ce
		}
		if got := encodingOf(h); got != tc.want {
			t.Errorf("encodingOf(%q) = %v; want %v", tc.ce, got, tc.want)
		}
	}
}
