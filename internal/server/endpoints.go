package server

import (
	"errors"
	"io/fs"
	"net/http"
	"runtime"
	"time"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// Health is the /health answer.
type Health struct {
	Status      string `json:"status"` // healthy, degraded or unhealthy
	HealthyKeys int    `json:"healthy_keys"`
	TotalKeys   int    `json:"total_keys"`
	Uptime      string `json:"uptime"`
	Timestamp   string `json:"timestamp"`
	// Redis is "up" or "down" when state is shared through Redis.
	Redis string `json:"redis,omitempty"`
	// Groups are each group's health, with GROUPS_DIR.
	Groups []GroupHealth `json:"groups,omitempty"`
}

func (s *Server) redisState() string { return redisStateOf(s.groupList()) }

// redisStateOf is "up" when every group's link to Redis is, "down" when
// one is not, "" without Redis.
func redisStateOf(gs []*group) string {
	state := ""
	for _, g := range gs {
		switch {
		case g.cluster == nil:
		case !g.cluster.Up():
			return "down"
		default:
			state = "up"
		}
	}
	return state
}

// GroupHealth is one group's part of /health (docs/groups.md).
type GroupHealth struct {
	Name        string `json:"name"`
	Status      string `json:"status"`
	HealthyKeys int    `json:"healthy_keys"`
	TotalKeys   int    `json:"total_keys"`
}

// healthOf is a group's status: unhealthy with no usable key, degraded
// with keys or targets out, else healthy.
func healthOf(g *group) (status string, c keymanager.Counts) {
	c = g.keys.Counts()
	usableTargets, benchedTargets := g.targets.Usable()
	switch {
	// Unhealthy only when no key is usable. With every target benched the
	// proxy still sends first attempts to the one benched longest, and a
	// readiness probe must not take every replica out at once because one
	// upstream is down.
	case c.Active == 0:
		return "unhealthy", c
	case c.Active < c.Total || benchedTargets > 0 || usableTargets == 0:
		return "degraded", c
	}
	return "healthy", c
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := Health{Uptime: s.uptime(), Timestamp: now(), Redis: s.redisState()}
	list := s.groupList()
	serving, degraded := 0, false
	for _, g := range list {
		st, c := healthOf(g)
		h.HealthyKeys += c.Active
		h.TotalKeys += c.Total
		if st != "unhealthy" {
			serving++
		}
		degraded = degraded || st != "healthy"
		if g.name != "" {
			h.Groups = append(h.Groups, GroupHealth{Name: g.name, Status: st, HealthyKeys: c.Active, TotalKeys: c.Total})
		}
	}
	status := http.StatusOK
	switch {
	// 503 only when no group can serve (docs/groups.md).
	case serving == 0:
		h.Status, status = "unhealthy", http.StatusServiceUnavailable
	case degraded:
		h.Status = "degraded"
	default:
		h.Status = "healthy"
	}
	writeJSON(w, status, h)
}

// pickGroups is the groups a management call covers: the one ?group=
// names, else every group. A name no group has is answered 404
// group_not_found, and ok is false.
func (s *Server) pickGroups(w http.ResponseWriter, r *http.Request) (gs []*group, named bool, ok bool) {
	name := r.URL.Query().Get("group")
	if name == "" {
		return s.groupList(), false, true
	}
	if set := s.groups.Load(); set != nil {
		if g := set.byName[name]; g != nil {
			return []*group{g}, true, true
		}
	}
	apierr.Write(w, apierr.New(http.StatusNotFound, apierr.CodeGroupNotFound, "no group is named "+quoteName(name)))
	return nil, false, false
}

// Stats is the /stats answer.
type Stats struct {
	// Group names the group these figures are of (with GROUPS_DIR).
	Group      string       `json:"group,omitempty"`
	Keys       KeyStats     `json:"keys"`
	Requests   RequestStats `json:"requests"`
	Targets    []TargetStat `json:"targets"`
	Memory     MemoryStats  `json:"memory,omitzero"`
	System     SystemStats  `json:"system,omitzero"`
	KeyDetails []KeyDetail  `json:"key_details,omitzero"`
	// KeyTotal is how many keys match the filter of key_details, the page
	// being at most limit of them; set with ?keys=1.
	KeyTotal *int `json:"total,omitempty"`
	// Redis and Cluster are set when state is shared through Redis:
	// the connection state and the request totals of every replica.
	Redis     string        `json:"redis,omitempty"`
	Cluster   *ClusterStats `json:"cluster,omitempty"`
	Uptime    string        `json:"uptime,omitempty"`
	Timestamp string        `json:"timestamp,omitempty"`
	// Groups are each group's figures, when /stats covers several
	// (docs/groups.md); the figures above are then their sums.
	Groups []Stats `json:"groups,omitempty"`
}

// KeyStats counts keys by state.
type KeyStats struct {
	Total        int `json:"total"`
	Healthy      int `json:"healthy"`
	Cooling      int `json:"cooling"`
	Blacklisted  int `json:"blacklisted"`
	CurrentIndex int `json:"current_index"`
}

// RequestStats counts client requests (not attempts).
type RequestStats struct {
	TotalCount   int64 `json:"total_count"`
	SuccessCount int64 `json:"success_count"`
	FailureCount int64 `json:"failure_count"`
	RetryCount   int64 `json:"retry_count"`
	InFlight     int64 `json:"in_flight"`
}

// ClusterStats are the request counters of every replica together, as
// last flushed to Redis (each replica flushes about twice a second).
type ClusterStats struct {
	TotalCount   int64 `json:"total_count"`
	SuccessCount int64 `json:"success_count"`
	FailureCount int64 `json:"failure_count"`
	RetryCount   int64 `json:"retry_count"`
}

// TargetStat is one upstream's counters.
type TargetStat struct {
	// Group names the target's group when /stats covers several.
	Group    string `json:"group,omitempty"`
	URL      string `json:"url"`
	Requests uint64 `json:"requests"`
	Failures uint64 `json:"failures"`
	State    string `json:"state"` // active, benched or probing
	// Reason and BenchedUntil are set while the target is benched.
	Reason       string `json:"reason,omitempty"`
	BenchedUntil string `json:"benched_until,omitempty"`
}

// MemoryStats is a summary of the Go runtime's memory use.
type MemoryStats struct {
	AllocMB      float64 `json:"alloc_mb"`
	HeapInuseMB  float64 `json:"heap_inuse_mb"`
	SysMB        float64 `json:"sys_mb"`
	NumGC        uint32  `json:"num_gc"`
	PauseTotalMs float64 `json:"gc_pause_total_ms"`
}

// SystemStats describes the process.
type SystemStats struct {
	Goroutines int    `json:"goroutines"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// KeyDetail is one key in /stats?keys=1.
type KeyDetail struct {
	// Group names the key's group when /stats covers several.
	Group            string `json:"group,omitempty"`
	Preview          string `json:"preview"`
	State            string `json:"state"`
	Requests         uint64 `json:"requests"`
	Failures         uint64 `json:"failures"`
	LastStatus       int    `json:"last_status"`
	CoolingUntil     string `json:"cooling_until,omitempty"`
	BlacklistedSince string `json:"blacklisted_since,omitempty"`
	// Reason says why the key is out of rotation; empty when active.
	Reason string `json:"reason"`
	// Quota is what the key's last rate-limit headers said; null when
	// none were seen.
	Quota          *KeyQuota       `json:"quota"`
	ModelsExcluded []ModelExcluded `json:"models_excluded"`
}

// KeyQuota is a key's quota as its last rate-limit headers said; a
// figure the headers did not give is null.
type KeyQuota struct {
	RequestsRemaining *int64  `json:"requests_remaining"`
	TokensRemaining   *int64  `json:"tokens_remaining"`
	ResetAt           *string `json:"reset_at"`
	SeenAt            string  `json:"seen_at"`
}

// ModelExcluded is a model a key may not serve until a time.
type ModelExcluded struct {
	Model string `json:"model"`
	Until string `json:"until"`
}

// keyDetail is a key's /stats?keys=1 entry.
func keyDetail(k keymanager.Snapshot) KeyDetail {
	d := KeyDetail{Preview: k.Preview, State: k.State.String(), Requests: k.Requests,
		Failures: k.Failures, LastStatus: k.LastStatus, Reason: secret.Redact(k.Reason),
		ModelsExcluded: make([]ModelExcluded, 0, len(k.Models))}
	switch k.State {
	case keymanager.Cooling:
		d.CoolingUntil = rfc3339(k.Until)
	case keymanager.Blacklisted:
		d.BlacklistedSince = rfc3339(k.Since)
	}
	if q := k.Quota; !q.Seen.IsZero() {
		d.Quota = &KeyQuota{SeenAt: rfc3339(q.Seen), ResetAt: optional(rfc3339(q.Reset))}
		if q.RequestsRemaining >= 0 {
			d.Quota.RequestsRemaining = &q.RequestsRemaining
		}
		if q.TokensRemaining >= 0 {
			d.Quota.TokensRemaining = &q.TokensRemaining
		}
	}
	for _, m := range k.Models {
		d.ModelsExcluded = append(d.ModelsExcluded, ModelExcluded{Model: m.Model, Until: rfc3339(m.Until)})
	}
	return d
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	details := false
	var pg page
	if v := r.URL.Query().Get("keys"); v == "1" || v == "true" {
		var bad *apierr.Error
		if pg, bad = parsePage(r.URL.Query(), keymanager.Active, keymanager.Cooling, keymanager.Blacklisted); bad != nil {
			apierr.Write(w, bad)
			return
		}
		details = true
	}
	list, named, ok := s.pickGroups(w, r)
	if !ok {
		return
	}
	if len(list) == 1 {
		st := s.statsOf(list[0], details, pg)
		if named || list[0].name != "" {
			st.Group = list[0].name
		}
		writeJSON(w, http.StatusOK, st)
		return
	}
	// Every group, each named, and their sum at the top (docs/groups.md,
	// "What it shows").
	st := Stats{Targets: []TargetStat{}, Memory: memoryStats(), System: systemStats(), Uptime: s.uptime(),
		Timestamp: now(), Redis: redisStateOf(list)}
	off, lim, total := pg.offset, pg.limit, 0
	for _, g := range list {
		gp := pg
		gp.offset, gp.limit = off, lim
		gst := s.statsOf(g, details, gp)
		gst.Group, gst.Memory, gst.System, gst.Uptime, gst.Timestamp = g.name, MemoryStats{}, SystemStats{}, "", ""
		st.Keys.Total += gst.Keys.Total
		st.Keys.Healthy += gst.Keys.Healthy
		st.Keys.Cooling += gst.Keys.Cooling
		st.Keys.Blacklisted += gst.Keys.Blacklisted
		st.Requests.TotalCount += gst.Requests.TotalCount
		st.Requests.SuccessCount += gst.Requests.SuccessCount
		st.Requests.FailureCount += gst.Requests.FailureCount
		st.Requests.RetryCount += gst.Requests.RetryCount
		for _, t := range gst.Targets {
			t.Group = g.name
			st.Targets = append(st.Targets, t)
		}
		if gst.Cluster != nil {
			if st.Cluster == nil {
				st.Cluster = &ClusterStats{}
			}
			st.Cluster.TotalCount += gst.Cluster.TotalCount
			st.Cluster.SuccessCount += gst.Cluster.SuccessCount
			st.Cluster.FailureCount += gst.Cluster.FailureCount
			st.Cluster.RetryCount += gst.Cluster.RetryCount
		}
		if details {
			for _, d := range gst.KeyDetails {
				d.Group = g.name
				st.KeyDetails = append(st.KeyDetails, d)
			}
			total += *gst.KeyTotal
			off = max(0, off-*gst.KeyTotal)
			lim -= len(gst.KeyDetails)
			gst.KeyDetails, gst.KeyTotal = nil, nil
		}
		st.Groups = append(st.Groups, gst)
	}
	st.Requests.InFlight = s.inflight.Load()
	if details {
		st.KeyTotal = &total
		if st.KeyDetails == nil {
			st.KeyDetails = []KeyDetail{}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// statsOf is one group's /stats.
func (s *Server) statsOf(g *group, details bool, pg page) Stats {
	c := g.keys.Counts()
	cnt := g.proxy.Totals()
	st := Stats{
		Keys: KeyStats{Total: c.Total, Healthy: c.Active, Cooling: c.Cooling, Blacklisted: c.Blacklisted,
			CurrentIndex: g.keys.CurrentIndex()},
		Requests: RequestStats{
			TotalCount:   cnt.Total,
			SuccessCount: cnt.Success,
			FailureCount: cnt.Failure,
			RetryCount:   cnt.Retries,
			InFlight:     g.proxy.InFlight(),
		},
		Targets:   []TargetStat{},
		Memory:    memoryStats(),
		System:    systemStats(),
		Uptime:    s.uptime(),
		Timestamp: now(),
	}
	now := g.targets.Now()
	if g.cluster != nil {
		st.Redis = redisStateOf([]*group{g})
		t := g.cluster.ClusterTotals()
		st.Cluster = &ClusterStats{TotalCount: t.Total, SuccessCount: t.Success, FailureCount: t.Failure, RetryCount: t.Retries}
	}
	for _, t := range g.targets.Targets() {
		st.Targets = append(st.Targets, TargetStat{URL: t.String(), Requests: t.Requests(), Failures: t.Failures(),
			State: t.State(now), Reason: t.Reason(), BenchedUntil: rfc3339(t.BenchedUntil())})
	}
	if details {
		keys, total := g.keys.Page(pg.filter, pg.offset, max(pg.limit, 0))
		st.KeyDetails, st.KeyTotal = make([]KeyDetail, 0, len(keys)), &total
		for _, k := range keys {
			st.KeyDetails = append(st.KeyDetails, keyDetail(k))
		}
	}
	return st
}

// Blacklist is the /blacklist answer.
type Blacklist struct {
	Keys []BlacklistedKey `json:"blacklisted_keys"`
	// Count is how many entries this answer lists, Total how many match
	// the filter (more than Count when the list is paged).
	Count     int    `json:"count"`
	Total     int    `json:"total"`
	Timestamp string `json:"timestamp"`
}

// BlacklistedKey is a key out of rotation, blacklisted or cooling.
type BlacklistedKey struct {
	// Group names the key's group (with GROUPS_DIR).
	Group       string `json:"group,omitempty"`
	Preview     string `json:"preview"`
	Reason      string `json:"reason"`
	Type        string `json:"type"` // permanent (blacklisted) or temporary (cooling)
	Status      int    `json:"status"`
	BlacklistAt string `json:"blacklistAt"`
	// Until is the cooling deadline; null for a blacklisted key, which has
	// none.
	Until     *string `json:"until"`
	FailCount int     `json:"failCount"`
}

func (s *Server) blacklist(w http.ResponseWriter, r *http.Request) {
	pg, bad := parsePage(r.URL.Query(), keymanager.Cooling, keymanager.Blacklisted)
	if bad != nil {
		apierr.Write(w, bad)
		return
	}
	list, _, ok := s.pickGroups(w, r)
	if !ok {
		return
	}
	b := Blacklist{Keys: []BlacklistedKey{}, Timestamp: now()}
	off, lim := pg.offset, pg.limit
	for _, g := range list {
		keys, total := g.keys.Page(pg.filter, off, max(lim, 0))
		b.Total += total
		off = max(0, off-total)
		lim -= len(keys)
		for _, k := range keys {
			typ := "permanent"
			if k.State == keymanager.Cooling {
				typ = "temporary"
			}
			// A reason may quote an upstream error, and those quote keys.
			b.Keys = append(b.Keys, BlacklistedKey{
				Group: g.name, Preview: k.Preview, Reason: secret.Redact(k.Reason), Type: typ, Status: k.LastStatus,
				BlacklistAt: rfc3339(k.Since), Until: optional(rfc3339(k.Until)), FailCount: k.FailCount,
			})
		}
	}
	b.Count = len(b.Keys)
	writeJSON(w, http.StatusOK, b)
}

// ResetKeys is the /reset-keys answer.
type ResetKeys struct {
	Message     string `json:"message"`
	HealthyKeys int    `json:"healthy_keys"`
	TotalKeys   int    `json:"total_keys"`
	Timestamp   string `json:"timestamp"`
}

func (s *Server) resetKeys(w http.ResponseWriter, r *http.Request) {
	list, named, ok := s.pickGroups(w, r)
	if !ok {
		return
	}
	message := "keys reloaded from the keys file and every key's state cleared"
	var err error
	if named {
		message = "keys of the group " + quoteName(list[0].name) + " reloaded from its keys file and their states cleared"
		err = s.resetGroups(list)
	} else {
		err = s.reset()
	}
	switch {
	case errors.Is(err, cluster.ErrResetNotShared):
		message += " on this replica only: Redis is unreachable, so the other replicas keep their states, and this one takes the shared states back when Redis returns"
	case err == nil && s.cluster != nil:
		message += " on every replica"
	case err != nil:
		s.log.WithError(err).Error("reset-keys: keeping the old keys")
		// The client learns what kind of problem it is; the path and the
		// error text are for the log only (docs/api.md, "Bad input and
		// faults").
		apierr.Write(w, &apierr.Error{Status: http.StatusInternalServerError, Code: apierr.CodeKeysFileUnusable,
			Message: "could not reload the keys file (" + keysFileProblem(err) + "); the old keys stay; the server log says more", Err: err})
		return
	}
	rk := ResetKeys{Message: message, Timestamp: now()}
	for _, g := range list {
		c := g.keys.Counts()
		rk.HealthyKeys += c.Active
		rk.TotalKeys += c.Total
	}
	writeJSON(w, http.StatusOK, rk)
}

// keysFileProblem names the kind of a keys file error in words that hold
// no path and no Go error text.
func keysFileProblem(err error) string {
	switch {
	case errors.Is(err, keymanager.ErrNoKeys):
		return "it holds no keys"
	case errors.Is(err, fs.ErrNotExist):
		return "it does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "it cannot be read"
	}
	return "it is not a valid keys file"
}

func (s *Server) uptime() string { return time.Since(s.started).Round(time.Second).String() }

func now() string { return time.Now().UTC().Format(time.RFC3339) }

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func memoryStats() MemoryStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	const mb = 1 << 20
	return MemoryStats{
		AllocMB:      round2(float64(m.Alloc) / mb),
		HeapInuseMB:  round2(float64(m.HeapInuse) / mb),
		SysMB:        round2(float64(m.Sys) / mb),
		NumGC:        m.NumGC,
		PauseTotalMs: round2(float64(m.PauseTotalNs) / 1e6),
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func systemStats() SystemStats {
	return SystemStats{
		Goroutines: runtime.NumGoroutine(),
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
	}
}

// optional is s, or nil (JSON null) when s is empty.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
