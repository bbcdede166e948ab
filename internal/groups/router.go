package groups

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"unsafe"

	"github.com/gpt-load/gpt-load/internal/secret"
)

// Routing errors of ByModel; the server answers them in OpenAI's error
// shape.
var (
	// ErrForbidden: only groups the client's token may not use serve the
	// model: 403 group_forbidden.
	ErrForbidden = errors.New("group forbidden")
	// ErrModelNotFound: no group serves the model and there is no default
	// group: 404 model_not_found, naming the model or saying none was given.
	ErrModelNotFound = errors.New("model not found")
)

// PathPrefix starts a path that names its group: /proxy/NAME/….
const PathPrefix = "/proxy/"

// Router decides which group serves a request (docs/groups.md, "Routing").
// It is immutable once built and safe for concurrent use; a reload builds
// a new one. Its lookups do not allocate.
type Router struct {
	groups []*Spec // name order
	index  map[string]int
	def    int // index of the default group; -1: none

	// exact maps a literal model of MODELS, or a MODEL_MAP alias, to the
	// groups that serve it, in name order.
	exact map[string][]route
	// globs are the MODELS patterns holding a *, in name order of their
	// groups, found by their literal prefix, else their literal suffix, so
	// that a model is tried only against the globs it can match:
	// byPrefix[p] lists the globs whose prefix is p, for each length in
	// prefixLens; bySuffix likewise for the globs without a prefix;
	// anywhere the globs with neither (*, *x*). Each list is in name order.
	globs      []globRoute
	prefixLens []int
	byPrefix   map[string][]int
	suffixLens []int
	bySuffix   map[string][]int
	anywhere   []int

	// tokens are the configured client tokens by SHA-256 digest, so that
	// finding one compares fixed-size values in constant time whatever the
	// lengths; allow[i] is the groups tokens[i] may use (nil: every one).
	tokens []digest
	allow  [][]uint64
	// open[g]: group g serves clients without a known token.
	open    []bool
	anyOpen bool

	fallback [][]*Spec
}

type route struct {
	group int
	model string // sent upstream
}

// globRoute is a MODELS pattern holding a *, taken apart once so that
// most models are told apart by their length and first bytes.
type globRoute struct {
	group          int
	prefix, suffix string   // before the first * and after the last
	mids           []string // between, in order; none empty
	minLen         int
}

func compileGlob(group int, pattern string) globRoute {
	g := globRoute{group: group}
	first, rest, _ := strings.Cut(pattern, "*")
	i := strings.LastIndexByte(rest, '*')
	g.prefix, g.suffix = first, rest[i+1:]
	g.minLen = len(g.prefix) + len(g.suffix)
	if i >= 0 {
		for m := range strings.SplitSeq(rest[:i], "*") {
			if m != "" {
				g.mids = append(g.mids, m)
				g.minLen += len(m)
			}
		}
	}
	return g
}

// match is Match(pattern, model).
func (g *globRoute) match(model string) bool {
	if len(model) < g.minLen || !strings.HasPrefix(model, g.prefix) || !strings.HasSuffix(model, g.suffix) {
		return false
	}
	model = model[len(g.prefix) : len(model)-len(g.suffix)]
	for _, m := range g.mids {
		j := strings.Index(model, m)
		if j < 0 {
			return false
		}
		model = model[j+len(m):]
	}
	return true
}

type digest [4]uint64

func digestOf(token string) digest {
	// Sum256 only reads its input: the token's bytes are not copied.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	var d digest
	for i := range d {
		d[i] = binary.LittleEndian.Uint64(sum[i*8:])
	}
	return d
}

// NewRouter builds a router over specs (as Load returns them: unique
// names, FALLBACK naming groups of specs; the order does not matter) and
// the top-level AUTH_KEY, which may use every group.
func NewRouter(specs []*Spec, authKey secret.Key) *Router {
	specs = slices.SortedFunc(slices.Values(specs), func(a, b *Spec) int { return strings.Compare(a.Name, b.Name) })
	r := &Router{
		groups:   specs,
		index:    make(map[string]int, len(specs)),
		def:      -1,
		exact:    map[string][]route{},
		byPrefix: map[string][]int{},
		bySuffix: map[string][]int{},
		open:     make([]bool, len(specs)),
		fallback: make([][]*Spec, len(specs)),
	}
	words := (len(specs) + 63) / 64
	tokenIndex := map[string]int{}
	if !authKey.Empty() {
		r.tokens = append(r.tokens, digestOf(authKey.Reveal()))
		r.allow = append(r.allow, nil)
		tokenIndex[authKey.Reveal()] = 0
	}
	for g, s := range specs {
		r.index[s.Name] = g
		if s.Name == DefaultName {
			r.def = g
		}
		// An alias wins over the group's MODELS: it is listed first.
		for _, alias := range sortedKeys(s.ModelMap) {
			r.exact[alias] = append(r.exact[alias], route{group: g, model: s.ModelMap[alias]})
		}
		for _, m := range s.Models {
			if strings.Contains(m, "*") {
				r.addGlob(compileGlob(g, m))
				continue
			}
			if _, aliased := s.ModelMap[m]; !aliased {
				r.exact[m] = append(r.exact[m], route{group: g, model: m})
			}
		}
		r.open[g] = len(s.Tokens) == 0 && authKey.Empty()
		r.anyOpen = r.anyOpen || r.open[g]
		for _, t := range s.Tokens {
			i, ok := tokenIndex[t.Reveal()]
			if !ok {
				i = len(r.tokens)
				tokenIndex[t.Reveal()] = i
				r.tokens = append(r.tokens, digestOf(t.Reveal()))
				r.allow = append(r.allow, make([]uint64, words))
			}
			if r.allow[i] != nil { // the top-level token may use every group anyway
				r.allow[i][g/64] |= 1 << (g % 64)
			}
		}
	}
	for g, s := range specs {
		for _, f := range s.Fallback {
			if i, ok := r.index[f]; ok && i != g {
				r.fallback[g] = append(r.fallback[g], specs[i])
			}
		}
	}
	return r
}

func (r *Router) addGlob(gr globRoute) {
	i := len(r.globs)
	r.globs = append(r.globs, gr)
	switch {
	case gr.prefix != "":
		if !slices.Contains(r.prefixLens, len(gr.prefix)) {
			r.prefixLens = append(r.prefixLens, len(gr.prefix))
			slices.Sort(r.prefixLens)
		}
		r.byPrefix[gr.prefix] = append(r.byPrefix[gr.prefix], i)
	case gr.suffix != "":
		if !slices.Contains(r.suffixLens, len(gr.suffix)) {
			r.suffixLens = append(r.suffixLens, len(gr.suffix))
			slices.Sort(r.suffixLens)
		}
		r.bySuffix[gr.suffix] = append(r.bySuffix[gr.suffix], i)
	default:
		r.anywhere = append(r.anywhere, i)
	}
}

// Client is who a request comes from, as far as routing cares: which
// configured token it presented, if any. Its zero value presented none.
// A Client is only meaningful to the Router that made it.
type Client struct {
	r  *Router
	id int // 1 + index into r.tokens; 0: no configured token
}

// Client finds the configured token the request presented, comparing it
// with every configured token in constant time. An empty or unknown token
// gives a Client that is not Known.
func (r *Router) Client(token string) Client {
	if token == "" || len(r.tokens) == 0 {
		return Client{r: r}
	}
	d := digestOf(token)
	id := 0
	for i, t := range r.tokens {
		x := (t[0] ^ d[0]) | (t[1] ^ d[1]) | (t[2] ^ d[2]) | (t[3] ^ d[3])
		// x == 0 exactly when the digests are equal; no branch on it.
		eq := int(((x | -x) >> 63) ^ 1)
		id = subtle.ConstantTimeSelect(eq, i+1, id)
	}
	return Client{r: r, id: id}
}

// Known reports whether the client presented a configured token: the
// top-level AUTH_KEY or one of a group's.
func (c Client) Known() bool { return c.id != 0 }

// Known reports whether token is a configured token, for the auth
// middleware: the top-level AUTH_KEY or one of a group's.
func (r *Router) Known(token string) bool { return r.Client(token).Known() }

// Open reports whether some group serves clients without a token; when
// none does, a request without a known token can be refused (401) before
// routing.
func (r *Router) Open() bool { return r.anyOpen }

// Allowed reports whether c may use group s: the top-level AUTH_KEY may
// use every group; a token named by groups only those; without a known
// token, only a group that has no tokens while there is no top-level
// AUTH_KEY.
func (r *Router) Allowed(s *Spec, c Client) bool {
	g, ok := r.index[s.Name]
	if !ok || r.groups[g] != s {
		return false
	}
	return r.allowed(g, c)
}

func (r *Router) allowed(g int, c Client) bool {
	if c.id == 0 || c.r != r {
		return r.open[g]
	}
	a := r.allow[c.id-1]
	return a == nil || a[g/64]&(1<<(g%64)) != 0
}

// Prefix reads a path of the form /proxy/NAME/…: prefixed is false for
// any other path. For a prefixed path, s is the group, nil when no group
// is named NAME (404 group_not_found), and rest is the path without
// /proxy/NAME, "/" at least.
func (r *Router) Prefix(path string) (s *Spec, rest string, prefixed bool) {
	if !strings.HasPrefix(path, PathPrefix) {
		return nil, path, false
	}
	name, _, _ := strings.Cut(path[len(PathPrefix):], "/")
	rest = path[len(PathPrefix)+len(name):]
	if rest == "" {
		rest = "/"
	}
	if g, ok := r.index[name]; ok {
		return r.groups[g], rest, true
	}
	return nil, rest, true
}

// ByModel picks the group for an un-prefixed request for model
// (docs/groups.md, "Routing"): the first group in name order whose MODEL_MAP
// aliases or MODELS match it among those c may use; else the default
// group; upstreamModel is the model to send, the alias's target or model
// itself. The error is ErrForbidden when only groups c may not use serve
// the model (or only a default group c may not use is left), and
// ErrModelNotFound when nothing serves it and there is no default group.
// An empty model matches no MODELS.
func (r *Router) ByModel(model string, c Client) (s *Spec, upstreamModel string, err error) {
	best, bestModel := len(r.groups), ""
	forbidden := false
	if model != "" {
		for _, rt := range r.exact[model] {
			if r.allowed(rt.group, c) {
				best, bestModel = rt.group, rt.model
				break
			}
			forbidden = true
		}
		for _, n := range r.prefixLens {
			if n > len(model) {
				break
			}
			best, bestModel, forbidden = r.scanGlobs(r.byPrefix[model[:n]], model, c, best, bestModel, forbidden)
		}
		for _, n := range r.suffixLens {
			if n > len(model) {
				break
			}
			best, bestModel, forbidden = r.scanGlobs(r.bySuffix[model[len(model)-n:]], model, c, best, bestModel, forbidden)
		}
		best, bestModel, forbidden = r.scanGlobs(r.anywhere, model, c, best, bestModel, forbidden)
	}
	switch {
	case best < len(r.groups):
		return r.groups[best], bestModel, nil
	case forbidden:
		return nil, "", ErrForbidden
	case r.def >= 0 && r.allowed(r.def, c):
		return r.groups[r.def], model, nil
	case r.def >= 0:
		return nil, "", ErrForbidden
	}
	return nil, "", ErrModelNotFound
}

// scanGlobs tries model against the globs list (indices into r.globs, in
// name order) before group best: the first that matches and c may use
// becomes best; one that matches but c may not use sets forbidden.
func (r *Router) scanGlobs(list []int, model string, c Client, best int, bestModel string, forbidden bool) (int, string, bool) {
	for _, i := range list {
		gr := &r.globs[i]
		if gr.group >= best {
			break
		}
		if !gr.match(model) {
			continue
		}
		if r.allowed(gr.group, c) {
			return gr.group, model, forbidden
		}
		forbidden = true
	}
	return best, bestModel, forbidden
}

// Fallback returns the groups s falls back to, in order (its FALLBACK; not
// theirs). The slice is shared: do not modify it.
func (r *Router) Fallback(s *Spec) []*Spec {
	if g, ok := r.index[s.Name]; ok {
		return r.fallback[g]
	}
	return nil
}

// Groups returns every group in name order. The slice is shared: do not
// modify it.
func (r *Router) Groups() []*Spec { return r.groups }

// Group returns the group named name, or nil.
func (r *Router) Group(name string) *Spec {
	if g, ok := r.index[name]; ok {
		return r.groups[g]
	}
	return nil
}

// Default returns the default group, or nil when there is none.
func (r *Router) Default() *Spec {
	if r.def < 0 {
		return nil
	}
	return r.groups[r.def]
}
