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
}

func (s *Server) redisState() string {
	switch {
	case s.cluster == nil:
		return ""
	case s.cluster.Up():
		return "up"
	}
	return "down"
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	c := s.keys.Counts()
	usableTargets, benchedTargets := s.targets.Usable()
	h := Health{
		Status:      "healthy",
		HealthyKeys: c.Active,
		TotalKeys:   c.Total,
		Uptime:      s.uptime(),
		Timestamp:   now(),
		Redis:       s.redisState(),
	}
	status := http.StatusOK
	switch {
	// 503 only when no key is usable. With every target benched the proxy
	// still sends first attempts to the one benched longest, and a
	// readiness probe must not take every replica out at once because one
	// upstream is down.
	case c.Active == 0:
		h.Status, status = "unhealthy", http.StatusServiceUnavailable
	case c.Active < c.Total || benchedTargets > 0 || usableTargets == 0:
		h.Status = "degraded"
	}
	writeJSON(w, status, h)
}

// Stats is the /stats answer.
type Stats struct {
	Keys       KeyStats     `json:"keys"`
	Requests   RequestStats `json:"requests"`
	Targets    []TargetStat `json:"targets"`
	Memory     MemoryStats  `json:"memory"`
	System     SystemStats  `json:"system"`
	KeyDetails []KeyDetail  `json:"key_details,omitzero"`
	// KeyTotal is how many keys match the filter of key_details, the page
	// being at most limit of them; set with ?keys=1.
	KeyTotal *int `json:"total,omitempty"`
	// Redis and Cluster are set when state is shared through Redis:
	// the connection state and the request totals of every replica.
	Redis     string        `json:"redis,omitempty"`
	Cluster   *ClusterStats `json:"cluster,omitempty"`
	Uptime    string        `json:"uptime"`
	Timestamp string        `json:"timestamp"`
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
	c := s.keys.Counts()
	cnt := s.proxy.Totals()
	st := Stats{
		Keys: KeyStats{Total: c.Total, Healthy: c.Active, Cooling: c.Cooling, Blacklisted: c.Blacklisted,
			CurrentIndex: s.keys.CurrentIndex()},
		Requests: RequestStats{
			TotalCount:   cnt.Total,
			SuccessCount: cnt.Success,
			FailureCount: cnt.Failure,
			RetryCount:   cnt.Retries,
			InFlight:     s.proxy.InFlight(),
		},
		Targets:   []TargetStat{},
		Memory:    memoryStats(),
		System:    systemStats(),
		Uptime:    s.uptime(),
		Timestamp: now(),
	}
	now := s.targets.Now()
	if s.cluster != nil {
		st.Redis = s.redisState()
		t := s.cluster.ClusterTotals()
		st.Cluster = &ClusterStats{TotalCount: t.Total, SuccessCount: t.Success, FailureCount: t.Failure, RetryCount: t.Retries}
	}
	for _, t := range s.targets.Targets() {
		st.Targets = append(st.Targets, TargetStat{URL: t.String(), Requests: t.Requests(), Failures: t.Failures(),
			State: t.State(now), Reason: t.Reason(), BenchedUntil: rfc3339(t.BenchedUntil())})
	}
	if details {
		keys, total := s.keys.Page(pg.filter, pg.offset, pg.limit)
		st.KeyDetails, st.KeyTotal = make([]KeyDetail, 0, len(keys)), &total
		for _, k := range keys {
			st.KeyDetails = append(st.KeyDetails, keyDetail(k))
		}
	}
	writeJSON(w, http.StatusOK, st)
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
	keys, total := s.keys.Page(pg.filter, pg.offset, pg.limit)
	b := Blacklist{Keys: make([]BlacklistedKey, 0, len(keys)), Total: total, Timestamp: now()}
	for _, k := range keys {
		typ := "permanent"
		if k.State == keymanager.Cooling {
			typ = "temporary"
		}
		// A reason may quote an upstream error, and those quote keys.
		b.Keys = append(b.Keys, BlacklistedKey{
			Preview: k.Preview, Reason: secret.Redact(k.Reason), Type: typ, Status: k.LastStatus,
			BlacklistAt: rfc3339(k.Since), Until: optional(rfc3339(k.Until)), FailCount: k.FailCount,
		})
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
	message := "keys reloaded from the keys file and every key's state cleared"
	err := s.reset()
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
	c := s.keys.Counts()
	writeJSON(w, http.StatusOK, ResetKeys{
		Message:     message,
		HealthyKeys: c.Active, TotalKeys: c.Total, Timestamp: now(),
	})
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
