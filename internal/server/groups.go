package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/classify"
	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/groups"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/metrics"
	"github.com/gpt-load/gpt-load/internal/middleware"
	"github.com/gpt-load/gpt-load/internal/modelname"
	"github.com/gpt-load/gpt-load/internal/outcome"
	"github.com/gpt-load/gpt-load/internal/proxy"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// group is one key pool (docs/groups.md): its keys, targets, proxy,
// metrics and link to the other replicas. Without GROUPS_DIR the server
// has one, the top-level configuration.
type group struct {
	name    string
	spec    *groups.Spec // nil without GROUPS_DIR
	cfg     *config.Config
	keys    *keymanager.Manager
	targets *upstream.Balancer
	proxy   *proxy.Proxy
	metrics *metrics.Metrics
	// cluster links replicas through Redis; nil without REDIS_URL.
	cluster *cluster.Cluster
}

// groupSet is what GROUPS_DIR configures, swapped whole on SIGHUP.
type groupSet struct {
	router *groups.Router
	list   []*group // in name order
	byName map[string]*group
}

func (gs *groupSet) of(s *groups.Spec) *group {
	if s == nil {
		return nil
	}
	return gs.byName[s.Name]
}

// allKeys is every group's keys, for masking: a key of one group must be
// masked in another's answers (proxy.Options.RedactKeys). Keys returns the
// same slice until refresh.
type allKeys struct {
	s   *Server
	cur atomic.Pointer[[]*keymanager.Key]
}

func (a *allKeys) Keys() []*keymanager.Key {
	if p := a.cur.Load(); p != nil {
		return *p
	}
	return a.refresh()
}

func (a *allKeys) Len() int { return len(a.Keys()) }

// refresh collects the keys again, after a reload or reset.
func (a *allKeys) refresh() []*keymanager.Key {
	var all []*keymanager.Key
	for _, g := range a.s.groupList() {
		all = append(all, g.keys.Keys()...)
	}
	a.cur.Store(&all)
	return all
}

// groupList is every group served now.
func (s *Server) groupList() []*group {
	if gs := s.groups.Load(); gs != nil {
		return gs.list
	}
	if s.main == nil {
		return nil // being built
	}
	return []*group{s.main}
}

// presentedToken is the first client token r carries, in the forms the
// auth middleware accepts.
func presentedToken(r *http.Request) (token string) {
	middleware.EachToken(r, func(t string) bool { token = t; return true })
	return token
}

// dispatch routes a proxied request to its group (docs/groups.md,
// "Routing"): by the /proxy/NAME/ prefix, else by the requested model,
// else to the default group; then serves it there, falling back to the
// group's FALLBACK groups while none has answered.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	gs := s.groups.Load()
	client := gs.router.Client(presentedToken(r))
	spec, rest, prefixed := gs.router.Prefix(r.URL.Path)
	if prefixed {
		if spec == nil {
			name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, groups.PathPrefix), "/")
			apierr.Write(w, apierr.New(http.StatusNotFound, apierr.CodeGroupNotFound, "no group is named "+quoteName(name)))
			return
		}
		if !gs.router.Allowed(spec, client) {
			s.forbid(w, client, spec.Name)
			return
		}
		r = withPath(r, rest)
		s.serveGroups(w, r, gs, gs.of(spec), nil, "")
		return
	}
	if !client.Known() && !gs.router.Open() {
		unauthorized(w)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == "/v1/models" {
		s.listModels(w, r, gs, client)
		return
	}
	// The model: from the path (Gemini, Azure), else from the body, read
	// here once and handed to the group's proxy.
	model := modelname.FromPath(r.URL.Path)
	var body *proxy.Body
	read := false
	if model == "" {
		var err error
		body, err = gs.list[0].proxy.ReadBody(r)
		if err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) {
				apierr.Write(w, ae)
			}
			return
		}
		defer body.Close()
		read = true
		model = body.Model(r.URL.Path, r.Header.Get("Content-Type"))
	}
	spec, upstreamModel, err := gs.router.ByModel(model, client)
	switch {
	case errors.Is(err, groups.ErrForbidden):
		s.forbid(w, client, "")
		return
	case err != nil:
		msg := "no group serves the model " + quoteName(model)
		if model == "" {
			msg = "the request names no model, and there is no default group to send it to"
		}
		apierr.Write(w, apierr.New(http.StatusNotFound, apierr.CodeModelNotFound, msg))
		return
	}
	if !read {
		body = nil
	}
	s.serveGroups(w, r, gs, gs.of(spec), &modelRead{model: model, body: body, read: read}, upstreamModel)
}

// modelRead is what routing by model read: the model and the body.
type modelRead struct {
	model string
	body  *proxy.Body
	read  bool
}

// forbid answers a client whose token may not use the group: 401 when it
// presented no known token, else 403 group_forbidden.
func (s *Server) forbid(w http.ResponseWriter, c groups.Client, name string) {
	if !c.Known() {
		unauthorized(w)
		return
	}
	msg := "this token may not use the group that serves the request"
	if name != "" {
		msg = "this token may not use the group " + quoteName(name)
	}
	apierr.Write(w, apierr.New(http.StatusForbidden, apierr.CodeGroupForbidden, msg))
}

func unauthorized(w http.ResponseWriter) {
	apierr.Write(w, apierr.New(http.StatusUnauthorized, apierr.CodeInvalidAuth,
		"invalid or missing gpt-load token: send it as Authorization: Bearer <token>"))
}

// quoteName quotes a client-given name for a message, cut short.
func quoteName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + s + `"`
}

// withPath is r for path instead of its own (the /proxy/NAME/ prefix
// removed, or a model rewritten in it).
func withPath(r *http.Request, path string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = path, ""
	r2.URL = &u
	return r2
}

// serveGroups serves r on g, then on g's FALLBACK groups while each fails
// in a way another group may mend and nothing has reached the client
// (docs/groups.md, "Fallback"). A fallback is the operator's routing: it
// is followed whether or not the client's token may address that group.
func (s *Server) serveGroups(w http.ResponseWriter, r *http.Request, gs *groupSet, g *group, mr *modelRead, upstreamModel string) {
	chain := []*group{g}
	for _, f := range gs.router.Fallback(g.spec) {
		chain = append(chain, gs.of(f))
	}
	outer := outcome.FromContext(r.Context())
	if len(chain) == 1 && (mr == nil || mr.model == upstreamModel) {
		// The common case: one group, nothing to rewrite.
		if mr != nil && mr.read {
			g.proxy.ServeRouted(w, r, proxy.Handover{Body: mr.body, Read: true})
		} else {
			g.proxy.ServeHTTP(w, r)
		}
		if outer != nil {
			outer.Group = g.name
		}
		return
	}
	if mr == nil || !mr.read {
		// Falling back replays the body: read it once, here.
		body, err := g.proxy.ReadBody(r)
		if err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) {
				apierr.Write(w, ae)
			}
			return
		}
		defer body.Close()
		model := ""
		if mr != nil {
			model = mr.model
		}
		mr = &modelRead{model: model, body: body, read: true}
	}
	var names []string
	prior := 0
	for i, gi := range chain {
		more := i < len(chain)-1
		ri, bodyi := s.forGroup(r, gi, mr, upstreamModel, i == 0)
		var rec outcome.Record
		ctx := outcome.NewContext(r.Context(), &rec)
		h := proxy.Handover{Body: bodyi, Read: true, Prior: prior, More: more}
		names = append(names, gi.name)
		if !more {
			gi.proxy.ServeRouted(w, ri.WithContext(ctx), h)
			finishChain(outer, &rec, names)
			return
		}
		fw := &fallbackWriter{w: w}
		gi.proxy.ServeRouted(fw, ri.WithContext(ctx), h)
		if fw.held && fallbackable(&rec, prior) && r.Context().Err() == nil {
			s.log.WithFields(logrus.Fields{"group": gi.name, "status": rec.Status, "next": chain[i+1].name}).
				Debug("group could not serve the request: falling back")
			prior = rec.Attempts
			continue
		}
		fw.release()
		finishChain(outer, &rec, names)
		return
	}
}

// forGroup is r as group g sends it: the requested model rewritten to g's
// upstream model (MODEL_MAP) when it maps one; upstreamModel is the
// routed group's, known already for the first.
func (s *Server) forGroup(r *http.Request, g *group, mr *modelRead, upstreamModel string, first bool) (*http.Request, *proxy.Body) {
	target := mr.model
	if first {
		target = upstreamModel
	} else if m, ok := g.spec.ModelMap[mr.model]; ok {
		target = m
	}
	if target == "" || target == mr.model {
		return r, mr.body
	}
	if p, ok := groups.RewritePathModel(r.URL.Path, target); ok {
		return withPath(r, p), mr.body
	}
	if b := mr.body.Bytes(); b != nil {
		if nb, ok := groups.RewriteJSONModel(b, target); ok {
			return r, proxy.BodyOf(nb)
		}
	}
	// A body in a file, or a multipart form: sent as the client wrote it
	// (docs/groups.md, "Routing").
	return r, mr.body
}

// fallbackable reports whether a group's answer, recorded in rec, is one
// another group may mend: no usable key, or attempts that ran out on key
// or target faults; never a client's mistake.
func fallbackable(rec *outcome.Record, prior int) bool {
	if rec.Status < 400 || rec.Status == outcome.StatusClientClosed {
		return false
	}
	if rec.Attempts == prior {
		// No attempt here: no usable key or upstream (503). A 429 here is
		// MAX_CONCURRENT_REQUESTS, which every group shares: no other
		// group would take the request either.
		return rec.Status == http.StatusServiceUnavailable
	}
	switch rec.Fault {
	case classify.KeyPermanent, classify.KeyRateLimited, classify.KeyModel, classify.TargetError:
		return true
	}
	return false
}

// finishChain fills the access line's record from the last group's,
// naming every group tried.
func finishChain(outer, last *outcome.Record, names []string) {
	if outer == nil {
		return
	}
	*outer = *last
	outer.Group = strings.Join(names, ",")
}

// fallbackWriter holds an error answer back, so that another group may
// serve the request instead; a success (or anything that is not an error)
// goes to the client at once. An error answer over holdMax is let through
// as it comes: it is not held for a fallback.
type fallbackWriter struct {
	w      http.ResponseWriter
	header http.Header
	status int
	buf    bytes.Buffer
	held   bool // an error answer is being held
	passed bool // the answer is going to the client
}

// holdMax bounds a held error answer.
const holdMax = 1 << 20

func (f *fallbackWriter) Header() http.Header {
	if f.passed {
		return f.w.Header()
	}
	if f.header == nil {
		f.header = f.w.Header().Clone()
	}
	return f.header
}

func (f *fallbackWriter) WriteHeader(code int) {
	if f.passed || f.held {
		if f.passed {
			f.w.WriteHeader(code)
		}
		return
	}
	if code >= 400 {
		f.held, f.status = true, code
		return
	}
	if code < 200 {
		// An informational answer goes through; the final one follows.
		f.copyHeader()
		f.w.WriteHeader(code)
		return
	}
	f.pass(code)
}

func (f *fallbackWriter) copyHeader() {
	if f.header == nil {
		return
	}
	dst := f.w.Header()
	clear(dst)
	for k, v := range f.header {
		dst[k] = v
	}
}

func (f *fallbackWriter) pass(code int) {
	f.copyHeader()
	f.passed = true
	f.w.WriteHeader(code)
}

func (f *fallbackWriter) Write(p []byte) (int, error) {
	if !f.held && !f.passed {
		f.WriteHeader(http.StatusOK)
	}
	if f.passed {
		return f.w.Write(p)
	}
	if f.buf.Len()+len(p) > holdMax {
		// Too large to hold: not a fallback any more.
		f.release()
		return f.w.Write(p)
	}
	return f.buf.Write(p)
}

// Flush passes a flush on once the answer goes to the client.
func (f *fallbackWriter) Flush() {
	if f.passed {
		http.NewResponseController(f.w).Flush()
	}
}

// Unwrap lets the proxy set deadlines on the connection.
func (f *fallbackWriter) Unwrap() http.ResponseWriter { return f.w }

// release sends a held answer to the client.
func (f *fallbackWriter) release() {
	if !f.held || f.passed {
		return
	}
	f.held = false
	f.pass(f.status)
	f.w.Write(f.buf.Bytes())
	f.buf.Reset()
}

// buildGroups builds a group per spec and the router over them.
func (s *Server) buildGroups(ctx context.Context, specs []*groups.Spec, ready <-chan struct{}) error {
	gs := &groupSet{router: groups.NewRouter(specs, s.cfg.AuthKey), byName: map[string]*group{}}
	for _, spec := range gs.router.Groups() {
		g, err := s.newGroup(ctx, spec.Name, spec, spec.Config, spec.Keys, ready)
		if err != nil {
			for _, made := range gs.list {
				made.close()
			}
			return fmt.Errorf("group %q: %w", spec.Name, err)
		}
		gs.list = append(gs.list, g)
		gs.byName[spec.Name] = g
	}
	if len(gs.list) == 0 {
		return errNoGroups
	}
	s.groups.Store(gs)
	main := gs.byName[groups.DefaultName]
	if main == nil {
		main = gs.list[0]
	}
	s.setMain(main)
	s.allKeys.refresh()
	return nil
}

// errNoGroups is the error when GROUPS_DIR leaves nothing to serve.
var errNoGroups = errors.New("GROUPS_DIR and the top-level configuration give no group to serve")

// reloadGroups is SIGHUP with GROUPS_DIR (docs/groups.md, "Reloading"):
// groups are read again; a new group is built, a removed one stops; a
// group whose settings are unchanged keeps its keys' states and reloads
// its keys; one whose settings changed is built anew, its kept keys
// carrying their states over; a group whose files are broken keeps its
// previous version. The problems are returned, naming group, file and
// variable.
func (s *Server) reloadGroups() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.groups.Load()
	getenv := s.opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	specs, loadErr := groups.Load(s.cfg, getenv)
	broken := map[string]bool{}
	for _, name := range groups.Broken(loadErr) {
		broken[name] = true
	}
	var next []*groups.Spec
	seen := map[string]bool{}
	for _, spec := range specs {
		seen[spec.Name] = true
		next = append(next, spec)
	}
	for _, g := range old.list {
		if broken[g.name] && !seen[g.name] {
			// Broken now: its previous version stays.
			next = append(next, g.spec)
			seen[g.name] = true
		}
	}
	gs := &groupSet{router: groups.NewRouter(next, s.cfg.AuthKey), byName: map[string]*group{}}
	ready := make(chan struct{})
	defer close(ready)
	var made, dropped []*group
	for _, spec := range gs.router.Groups() {
		prev := old.byName[spec.Name]
		var g *group
		switch {
		case prev != nil && prev.spec == spec:
			g = prev // kept as it was (broken now)
		case prev != nil && sameSettings(prev.spec, spec):
			g = &group{name: prev.name, spec: spec, cfg: spec.Config, keys: prev.keys, targets: prev.targets,
				proxy: prev.proxy, metrics: prev.metrics, cluster: prev.cluster}
			s.reloadKeys(g, spec.Keys, spec.Duplicates)
		default:
			if prev != nil {
				// The new version's series take the same group label.
				prev.metrics.Close()
			}
			var err error
			g, err = s.newGroup(context.Background(), spec.Name, spec, spec.Config, spec.Keys, ready)
			if err != nil {
				for _, m := range made {
					m.close()
				}
				return errors.Join(loadErr, fmt.Errorf("group %q: %w", spec.Name, err))
			}
			if prev != nil {
				carryStates(prev.keys, g.keys)
			}
			made = append(made, g)
		}
		gs.list = append(gs.list, g)
		gs.byName[spec.Name] = g
	}
	for _, g := range old.list {
		if cur := gs.byName[g.name]; cur == nil || cur.keys != g.keys {
			dropped = append(dropped, g)
		}
	}
	s.groups.Store(gs)
	main := gs.byName[groups.DefaultName]
	if main == nil {
		main = gs.list[0]
	}
	s.setMain(main)
	s.allKeys.refresh()
	for _, g := range gs.list {
		g.proxy.KeysChanged()
	}
	for _, g := range dropped {
		g.close()
	}
	if len(made) > 0 || len(dropped) > 0 {
		s.groupsChanged()
	}
	s.log.WithFields(logrus.Fields{"groups": len(gs.list), "built": len(made), "removed": len(dropped),
		"broken": len(broken)}).Info("groups reloaded")
	return loadErr
}

// sameSettings reports whether b configures a group as a does, keys and
// routing aside: then the group keeps its targets, proxy and Redis link.
func sameSettings(a, b *groups.Spec) bool {
	ca, cb := a.Config, b.Config
	if len(ca.Upstreams) != len(cb.Upstreams) {
		return false
	}
	for i := range ca.Upstreams {
		if ca.Upstreams[i].String() != cb.Upstreams[i].String() {
			return false
		}
	}
	return ca.AuthStyle == cb.AuthStyle && ca.MaxRetries == cb.MaxRetries &&
		ca.BlacklistThreshold == cb.BlacklistThreshold && ca.KeyCooldown == cb.KeyCooldown &&
		ca.ModelCooldown == cb.ModelCooldown && ca.QueueTimeout == cb.QueueTimeout &&
		ca.KeyRecheckInterval == cb.KeyRecheckInterval && ca.StartIndex == cb.StartIndex
}

// carryStates gives the keys of to that from also holds from's states: a
// group rebuilt by a reload keeps what it learned of its kept keys.
func carryStates(from, to *keymanager.Manager) {
	was := map[string]keymanager.Snapshot{}
	for _, k := range from.Keys() {
		if s := k.Snapshot(); s.State != keymanager.Active {
			was[k.Secret().Reveal()] = s
		}
	}
	if len(was) == 0 {
		return
	}
	for _, k := range to.Keys() {
		if s, ok := was[k.Secret().Reveal()]; ok {
			to.Apply(k, keymanager.Change{State: s.State, Since: s.Since, Until: s.Until,
				Reason: s.Reason, Status: s.LastStatus, FailCount: s.FailCount})
		}
	}
}

// GroupInfo describes a group for the startup log: no key, no token.
type GroupInfo struct {
	Name      string
	Keys      int
	Upstreams []string
	Models    []string
	Aliases   []string
	Fallback  []string
	Tokens    int // how many client tokens the group has
}

// Groups describes the groups served, in name order; nil without
// GROUPS_DIR.
func (s *Server) Groups() []GroupInfo {
	gs := s.groups.Load()
	if gs == nil {
		return nil
	}
	out := make([]GroupInfo, 0, len(gs.list))
	for _, g := range gs.list {
		gi := GroupInfo{Name: g.name, Keys: g.keys.Len(), Models: g.spec.Models, Fallback: g.spec.Fallback, Tokens: len(g.spec.Tokens)}
		for _, t := range g.targets.Targets() {
			gi.Upstreams = append(gi.Upstreams, t.String())
		}
		for a := range g.spec.ModelMap {
			gi.Aliases = append(gi.Aliases, a)
		}
		out = append(out, gi)
	}
	return out
}
