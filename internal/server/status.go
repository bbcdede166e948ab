package server

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// The status page is three embedded files put together once: the HTML with
// the stylesheet and the script inline, so the page is one request and
// works offline. The Content-Security-Policy allows exactly that style and
// that script by their SHA-256 hashes, fetches to this origin only, and
// nothing else: no other script, style, frame, form target or origin.
//
//go:embed status/status.html status/status.css status/status.js
var statusFiles embed.FS

// statusPage is the built page and its policy. It is immutable.
type statusPage struct {
	body []byte
	csp  string
	etag string
}

func buildStatusPage() statusPage {
	read := func(name string) string {
		b, err := statusFiles.ReadFile("status/" + name)
		if err != nil {
			panic("handler: embedded status page: " + err.Error()) // cannot happen: go:embed checked it
		}
		return string(b)
	}
	css, js := read("status.css"), read("status.js")
	html := strings.NewReplacer("{{CSS}}", css, "{{JS}}", js).Replace(read("status.html"))
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	sum := sha256.Sum256([]byte(html))
	return statusPage{
		body: []byte(html),
		csp: "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
			"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
	}
}

// status serves the status page (docs/api.md, "Status page"). It needs no
// token: it holds nothing secret, and asks for the token itself when the
// JSON it reads needs one.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.statusPage.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", s.statusPage.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.statusPage.body))
}
