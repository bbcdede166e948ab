package proxy

import (
	"net/http"
	"strconv"
	"strings"
)

// The Accept-Encoding sent upstream (docs/api.md, "Forwarding"): only
// codings the proxy can decode, so that every error body can be searched
// for pool keys (SPEC §9). Shared, read-only slices: a request's header
// map is its own, but these values are never written to.
var (
	acceptGzip     = []string{"gzip"}
	acceptIdentity = []string{"identity"}
)

// upstreamAcceptEncoding is the Accept-Encoding to ask the upstream with,
// from the client's: gzip when the client takes gzip (listed, or "*", with
// a q above 0), else identity. Either way the client can read the answer
// as it comes, so a 2xx passes byte for byte and is never decoded for it;
// a client that asked for br or zstd alone gets identity, which every
// client accepts. Asking for identity outright, rather than sending no
// Accept-Encoding, matters: without one, any coding is acceptable
// (RFC 9110, section 12.5.3).
func upstreamAcceptEncoding(client []string) []string {
	gzipQ, starQ := -1.0, -1.0
	for _, v := range client {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			name = strings.TrimSpace(name)
			switch {
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				gzipQ = qValue(params)
			case name == "*":
				starQ = qValue(params)
			}
		}
	}
	if gzipQ > 0 || gzipQ < 0 && starQ > 0 {
		return acceptGzip
	}
	return acceptIdentity
}

// qValue reads the weight from a coding's parameters ("q=0.5"); 1 when
// there is none, 0 when it cannot be read.
func qValue(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 0
		}
		return q
	}
	return 1
}

// contentEncoding is how a body is coded, as far as masking is concerned.
type contentEncoding uint8

const (
	encIdentity contentEncoding = iota
	encGzip
	// encDeflate is decoded too, though never asked for (zlib or raw: the
	// ambiguity is why), for an upstream that ignores Accept-Encoding.
	encDeflate
	encOther // a coding the proxy does not decode, or several
)

// encodingOf reads Content-Encoding, in any case (GZIP is gzip: codings
// are case-insensitive, RFC 9110 section 8.4.1).
func encodingOf(h http.Header) contentEncoding {
	ce := h.Values("Content-Encoding")
	switch {
	case len(ce) == 0:
		return encIdentity
	case len(ce) > 1:
		return encOther
	}
	switch v := strings.TrimSpace(ce[0]); {
	case v == "", strings.EqualFold(v, "identity"):
		return encIdentity
	case strings.EqualFold(v, "gzip"), strings.EqualFold(v, "x-gzip"):
		return encGzip
	case strings.EqualFold(v, "deflate"):
		return encDeflate
	}
	return encOther
}
