// Package groups reads GROUPS_DIR into validated group specs and decides,
// for a request, which group serves it (docs/groups.md, "Routing"). It is
// pure logic: the server builds a key pool per Spec and asks a Router.
package groups

import (
	"net/url"
	"strings"

	"github.com/gpt-load/gpt-load/internal/ascii"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// DefaultName is the name of the group the top-level configuration forms.
const DefaultName = "default"

// maxNameLen bounds a group name: it appears in paths, metric labels and
// Redis keys.
const maxNameLen = 32

// Spec is one group as configured: read-only once Load returns it.
type Spec struct {
	Name string
	// Dir is the group's folder; "" for the top-level configuration.
	Dir string
	// Config is the effective configuration: the group's group.env over
	// the top-level one, KeysFile naming the group's keys.txt.
	Config *config.Config
	// Keys are the parsed keys of Config.KeysFile, in file order;
	// Duplicates counts the repeated lines dropped.
	Keys       []string
	Duplicates int
	// Models are MODELS as written: names, or globs where * matches any
	// run of characters (Match).
	Models []string
	// ModelMap maps a requested alias to the model sent upstream.
	ModelMap map[string]string
	// Tokens are the group's own client tokens (AUTH_KEY of group.env).
	Tokens []secret.Key
	// Fallback names the groups tried in order when this one cannot serve
	// a request; not followed further (a fallback's own Fallback is not).
	Fallback []string
	Dialect  Dialect
}

// Serves reports whether model is one of the group's MODELS or matches one
// of its globs (aliases of MODEL_MAP aside), e.g. to filter the group's
// upstream model list.
func (s *Spec) Serves(model string) bool {
	for _, p := range s.Models {
		if Match(p, model) {
			return true
		}
	}
	return false
}

// Dialect is the API a group's upstreams speak; FALLBACK joins only groups
// of one dialect, since a request of one cannot be sent to another.
type Dialect uint8

const (
	// OpenAI is the OpenAI-compatible API (bearer and Azure auth styles).
	OpenAI Dialect = iota
	// Anthropic is Anthropic's Messages API.
	Anthropic
	// Gemini is Google's Generative Language API.
	Gemini
	// Mixed is a group whose upstreams speak several dialects
	// (UPSTREAM_AUTH_STYLE=auto over hosts of different providers); it can
	// neither fall back nor be fallen back to.
	Mixed
)

var dialectNames = [...]string{OpenAI: "openai", Anthropic: "anthropic", Gemini: "gemini", Mixed: "mixed"}

func (d Dialect) String() string { return dialectNames[d] }

// dialectOf derives the dialect from an auth style.
func dialectOf(s upstream.AuthStyle) Dialect {
	switch s {
	case upstream.Anthropic:
		return Anthropic
	case upstream.Gemini:
		return Gemini
	}
	return OpenAI
}

// DialectOf returns the dialect of a configuration: its UPSTREAM_AUTH_STYLE,
// or with auto the style each upstream's host implies, Mixed when they
// differ.
func DialectOf(c *config.Config) Dialect {
	if c.AuthStyle != "auto" {
		s, err := upstream.ParseAuthStyle(c.AuthStyle)
		if err != nil {
			return OpenAI // config.Load has reported it
		}
		return dialectOf(s)
	}
	return dialectOfHosts(c.Upstreams)
}

func dialectOfHosts(us []*url.URL) Dialect {
	d := OpenAI
	for i, u := range us {
		h := dialectOf(upstream.StyleForHost(u.Hostname()))
		if i > 0 && h != d {
			return Mixed
		}
		d = h
	}
	return d
}

// ValidName reports whether name may name a group: letters, digits, - and
// _, at most 32 bytes.
func ValidName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !ascii.IsAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// Match reports whether model matches pattern, where * matches any run of
// characters, / included (model names like meta-llama/Llama-3 hold one),
// and every other character only itself. It does not allocate.
func Match(pattern, model string) bool {
	first, rest, star := strings.Cut(pattern, "*")
	if !star {
		return model == pattern
	}
	if !strings.HasPrefix(model, first) {
		return false
	}
	model = model[len(first):]
	var mids, last string
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		mids, last = rest[:i], rest[i+1:]
	} else {
		last = rest
	}
	if !strings.HasSuffix(model, last) {
		return false
	}
	model = model[:len(model)-len(last)]
	// Each middle part, leftmost first: taking the earliest occurrence
	// leaves the most room for the parts after it.
	for mids != "" {
		var m string
		m, mids, _ = strings.Cut(mids, "*")
		if m == "" {
			continue
		}
		j := strings.Index(model, m)
		if j < 0 {
			return false
		}
		model = model[j+len(m):]
	}
	return true
}
