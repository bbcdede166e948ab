package upstream

import (
	"fmt"
	"net/http"
	"strings"
)

// AuthStyle is how an API key is sent to a target.
type AuthStyle uint8

const (
	// Bearer sends "Authorization: Bearer KEY" (OpenAI and most others).
	Bearer AuthStyle = iota
	// Azure sends "api-key: KEY" (Azure OpenAI).
	Azure
	// Anthropic sends "x-api-key: KEY".
	Anthropic
	// Gemini sends "x-goog-api-key: KEY", never in the URL.
	Gemini
)

var styleNames = [...]string{Bearer: "bearer", Azure: "azure", Anthropic: "anthropic", Gemini: "gemini"}

func (s AuthStyle) String() string { return styleNames[s] }

// ParseAuthStyle parses a style name other than "auto".
func ParseAuthStyle(name string) (AuthStyle, error) {
	for i, n := range styleNames {
		if strings.EqualFold(name, n) {
			return AuthStyle(i), nil
		}
	}
	return 0, fmt.Errorf("unknown auth style %q", name)
}

// StyleForHost picks the style a host expects (docs/api.md, "Upstream auth
// styles").
func StyleForHost(host string) AuthStyle {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case strings.HasSuffix(host, ".openai.azure.com"):
		return Azure
	case host == "api.anthropic.com":
		return Anthropic
	case host == "generativelanguage.googleapis.com":
		return Gemini
	}
	return Bearer
}

// Canonical header names, so Set and Del do not canonicalise per request.
const (
	hdrAuthorization = "Authorization"
	hdrAPIKey        = "Api-Key"
	hdrXAPIKey       = "X-Api-Key"
	hdrGoogAPIKey    = "X-Goog-Api-Key"
)

// CredentialHeaders are the headers that can carry a key, in any style.
var CredentialHeaders = [...]string{hdrAuthorization, hdrAPIKey, hdrXAPIKey, hdrGoogAPIKey}

// Apply removes every credential header from h and sets key in style s.
// The header's value slice is slot when given (a request's own, so that
// setting the key allocates at most the "Bearer " value), else a new one;
// h must not outlive slot's owner.
func (s AuthStyle) Apply(h http.Header, key string, slot *[1]string) {
	for _, name := range CredentialHeaders {
		delete(h, name)
	}
	if slot == nil {
		slot = new([1]string)
	}
	name := hdrAuthorization
	switch s {
	case Azure:
		name, slot[0] = hdrAPIKey, key
	case Anthropic:
		name, slot[0] = hdrXAPIKey, key
	case Gemini:
		name, slot[0] = hdrGoogAPIKey, key
	default:
		slot[0] = "Bearer " + key
	}
	h[name] = slot[:]
}
