package proxy

import (
	"net/http"
	"testing"
)

func TestUpstreamAcceptEncoding(t *testing.T) {
	for _, tc := range []struct {
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
	} {
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
