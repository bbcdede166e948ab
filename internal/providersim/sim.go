package providersim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/wait"
)

// Outcome is how the simulator answered one chat attempt.
type Outcome int

// The outcomes, in the order Stats lists them.
const (
	OK           Outcome = iota // 200
	RateLimited                 // 429 rate_limit_exceeded: the key's account is over its limit
	Storm                       // 429 rate_limit_exceeded: the IP-wide storm
	NoQuota                     // 429 insufficient_quota
	Revoked                     // 401 invalid_api_key (revoked, unknown or missing key)
	ModelDenied                 // 404 (403 for a project) model_not_found: a model that exists but this key may not use
	UnknownModel                // 404 model_not_found: a model no key has
	BadRequest                  // 400 invalid_request_error: the client's mistake
	Unavailable                 // 503: a target episode
	Flagged                     // 403: content refused by moderation (every key)
	ForeignFile                 // 403 or 404: a file of another project
	Reset                       // fault: connection reset, no answer
	Stalled                     // fault: a stall before or after the headers
	ServerError                 // fault: 500, 502 or 503
	Gateway                     // fault: a gateway's 401 to every key
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"ok", "rate_limited", "storm", "no_quota", "revoked",
	"model_denied", "unknown_model", "bad_request", "unavailable",
	"flagged", "foreign_file", "reset", "stalled", "server_error", "gateway_401"}

func (o Outcome) String() string { return outcomeNames[o] }

// counts are outcome counters. Fields are accessed atomically.
type counts [nOutcomes]atomic.Int64

func (c *counts) snapshot() map[string]int64 {
	m := make(map[string]int64, nOutcomes)
	for i := range c {
		m[outcomeNames[i]] = c[i].Load()
	}
	return m
}

func (c *counts) total() int64 {
	var n int64
	for i := range c {
		n += c[i].Load()
	}
	return n
}

func (c *counts) reset() {
	for i := range c {
		c[i].Store(0)
	}
}

// maxSeconds bounds the per-second series.
const maxSeconds = 3600

type second struct {
	attempts, ok, tooMany atomic.Int64
}

type keyState struct {
	idx     int
	cfg     Key
	preview string
	win     *window
	denied  map[string]bool
	files   map[string]bool
	counts  counts
	models  atomic.Int64 // GET /v1/models
	// limited counts the answers that told the key it is limited: a
	// rate-limit 429 of its account or of a storm, or rate-limit headers
	// showing nothing left; lastLimited is the clock time (ns) of the
	// last one, -1 before any.
	limited     atomic.Int64
	lastLimited atomic.Int64
}

// Sim is a running simulated provider. Create it with Start; it is safe
// for concurrent use.
type Sim struct {
	cfg      Config
	models   map[string]bool
	keys     map[string]*keyState
	keyList  []*keyState
	windows  []*window
	targets  []*target
	control  *http.Server
	ctlAddr  string
	serial   atomic.Uint64
	inFlight atomic.Int64
	maxIn    atomic.Int64

	mu       sync.Mutex   // guards Reset and stopEpis
	start    atomic.Int64 // clock start, Unix nanoseconds
	stopEpis context.CancelFunc
	// storm is the Retry-After of a storm set by SetStorm; -1: none.
	storm atomic.Int64
	// unstall is closed by Unstall, replaced by Reset (guarded by mu).
	unstall chan struct{}
	trace   atomic.Pointer[func(Attempt)]

	counts     counts
	modelsReqs atomic.Int64
	seconds    [maxSeconds]second
}

// target is one listener. Its server is replaced while it is down.
type target struct {
	sim    *Sim
	idx    int
	addr   string
	counts counts
	fault  atomic.Pointer[Fault] // set by SetFault

	mu  sync.Mutex
	srv *http.Server // nil while down
}

// Start validates cfg and starts its targets and the control endpoint on
// loopback ports chosen by the system. The clock starts now.
func Start(cfg Config) (*Sim, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Sim{cfg: cfg, models: map[string]bool{}, keys: map[string]*keyState{}}
	s.storm.Store(-1)
	for _, m := range cfg.Models {
		s.models[m] = true
	}
	accounts := map[string]*window{}
	for _, a := range cfg.Accounts {
		w := &window{acct: a}
		accounts[a.Name] = w
		s.windows = append(s.windows, w)
	}
	for i, k := range cfg.Keys {
		w := accounts[k.Account]
		if w == nil { // a key without an account has no limit
			w = &window{}
			s.windows = append(s.windows, w)
		}
		ks := &keyState{idx: i, cfg: k, preview: secret.Mask(k.Key), win: w, denied: map[string]bool{}, files: map[string]bool{}}
		for _, m := range k.DeniedModels {
			ks.denied[m] = true
		}
		for _, f := range k.Files {
			ks.files[f] = true
		}
		s.keys[k.Key] = ks
		s.keyList = append(s.keyList, ks)
	}
	for i := range cfg.Targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, err
		}
		t := &target{sim: s, idx: i, addr: ln.Addr().String()}
		t.serve(ln)
		s.targets = append(s.targets, t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.ctlAddr = ln.Addr().String()
	s.control = &http.Server{Handler: http.HandlerFunc(s.serveControl), ReadHeaderTimeout: 10 * time.Second}
	go s.control.Serve(ln)
	s.Reset()
	return s, nil
}

// URLs are the targets' base URLs, in order.
func (s *Sim) URLs() []string {
	u := make([]string, len(s.targets))
	for i, t := range s.targets {
		u[i] = "http://" + t.addr
	}
	return u
}

// ControlURL is the base URL of GET /stats and POST /reset.
func (s *Sim) ControlURL() string { return "http://" + s.ctlAddr }

// Close stops every listener and episode.
func (s *Sim) Close() {
	s.mu.Lock()
	if s.stopEpis != nil {
		s.stopEpis()
	}
	s.mu.Unlock()
	for _, t := range s.targets {
		t.down()
	}
	if s.control != nil {
		s.control.Close()
	}
}

// Reset zeroes every counter and limit window, brings every target up
// and restarts the clock and its episodes.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopEpis != nil {
		s.stopEpis()
	}
	now := time.Now()
	s.start.Store(now.UnixNano())
	s.unstall = make(chan struct{})
	for _, w := range s.windows {
		w.reset(now)
	}
	s.counts.reset()
	s.modelsReqs.Store(0)
	s.maxIn.Store(0)
	for i := range s.seconds {
		s.seconds[i].attempts.Store(0)
		s.seconds[i].ok.Store(0)
		s.seconds[i].tooMany.Store(0)
	}
	for _, k := range s.keyList {
		k.counts.reset()
		k.models.Store(0)
		k.limited.Store(0)
		k.lastLimited.Store(-1)
	}
	s.storm.Store(-1)
	for _, t := range s.targets {
		t.counts.reset()
		t.fault.Store(nil)
		if err := t.up(); err != nil {
			// The port was taken while the target was down; it stays down.
			continue
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopEpis = cancel
	for _, e := range s.cfg.Episodes {
		if e.Kind == EpisodeDown {
			go s.runDown(ctx, now, e)
		}
	}
}

// elapsed is the time on the simulator's clock.
func (s *Sim) elapsed() time.Duration {
	return time.Duration(time.Now().UnixNano() - s.start.Load())
}

// runDown closes the episode's target at its start and reopens it on the
// same address at its end.
func (s *Sim) runDown(ctx context.Context, start time.Time, e Episode) {
	t := s.targets[e.Target]
	if !wait.Until(ctx, start.Add(e.At.D())) {
		return
	}
	t.down()
	if !wait.Until(ctx, start.Add(e.At.D()+e.For.D())) {
		return
	}
	t.up()
}

func (t *target) serve(ln net.Listener) {
	srv := &http.Server{Handler: t, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	t.srv = srv
	go srv.Serve(ln)
}

// down closes the listener and every connection: new connections are
// refused, open ones reset.
func (t *target) down() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.srv != nil {
		t.srv.Close()
		t.srv = nil
	}
}

// up listens again on the target's address, if it is down.
func (t *target) up() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.srv != nil {
		return nil
	}
	var err error
	for range 50 { // the old socket may take a moment to let go of the port
		var ln net.Listener
		if ln, err = net.Listen("tcp", t.addr); err == nil {
			t.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

func (t *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/chat/completions" && r.Method == http.MethodPost:
		t.sim.work(w, r, t, chatRequest)
	case r.URL.Path == "/v1/audio/transcriptions" && r.Method == http.MethodPost:
		t.sim.work(w, r, t, transcriptionRequest)
	case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
		if t.faultNow(t.sim.elapsed()) == FaultGateway401 {
			t.sim.modelsReqs.Add(1)
			writeError(w, http.StatusUnauthorized, errInvalidKey(maskKey(bearer(r))))
			return
		}
		t.sim.listModels(w, r)
	default:
		writeError(w, http.StatusNotFound, errNoRoute(r.Method, r.URL.Path))
	}
}

// bearer is the key of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// maskKey is raw's masked preview, "" for no key.
func maskKey(raw string) string {
	if raw == "" {
		return ""
	}
	return secret.Mask(raw)
}

func (s *Sim) record(t *target, k *keyState, sec int, o Outcome) {
	s.counts[o].Add(1)
	t.counts[o].Add(1)
	if k != nil {
		k.counts[o].Add(1)
		if o == RateLimited || o == Storm {
			k.markLimited(s)
		}
	}
	if sec >= 0 && sec < maxSeconds {
		switch o {
		case OK:
			s.seconds[sec].ok.Add(1)
		case RateLimited, Storm, NoQuota:
			s.seconds[sec].tooMany.Add(1)
		}
	}
}

// markLimited records that the key was just told it is limited.
// noQuota reports whether the key is out of quota at elapsed time el:
// configured so, or past its NoQuotaAt.
func (k *keyState) noQuota(el time.Duration) bool {
	return k.cfg.State == KeyNoQuota || k.cfg.NoQuotaAt > 0 && el >= k.cfg.NoQuotaAt.D()
}

func (k *keyState) markLimited(s *Sim) {
	k.limited.Add(1)
	k.lastLimited.Store(int64(s.elapsed()))
}

// chatBody is the part of a chat request the simulator reads.
type chatBody struct {
	Model    *string         `json:"model"`
	Messages json.RawMessage `json:"messages"`
	Stream   bool            `json:"stream"`
}

// The kinds of work request.
const (
	chatRequest = iota
	transcriptionRequest
)

// parsed is what the simulator took from a work request: the model, or
// the client's mistake already answered.
type parsed struct {
	model  string
	stream bool
	body   []byte // raw JSON of a chat request, for the content checks
}

// work answers a chat completion or an audio transcription: episodes and
// faults first, then the key, the request, the model, the content, the
// account's limit, in the order a provider checks them.
func (s *Sim) work(w http.ResponseWriter, r *http.Request, t *target, kind int) {
	el := s.elapsed()
	sec := int(el / time.Second)
	if sec >= 0 && sec < maxSeconds {
		s.seconds[sec].attempts.Add(1)
	}
	if n := s.inFlight.Add(1); n > s.maxIn.Load() {
		for m := s.maxIn.Load(); n > m && !s.maxIn.CompareAndSwap(m, n); m = s.maxIn.Load() {
		}
	}
	defer s.inFlight.Add(-1)

	raw := bearer(r)
	k := s.keys[raw]
	f := t.faultNow(el)
	if tr := s.trace.Load(); tr != nil {
		(*tr)(Attempt{Header: r.Header, Target: t.idx, Fault: f, At: time.Now()})
	}
	if f != FaultNone {
		if s.misbehave(w, r, t, k, sec, f) {
			return
		}
	}
	preview := maskKey(raw)
	if f == FaultEchoKey {
		n := mix(s.serial.Add(1))
		ew := &echoWriter{ResponseWriter: w, key: raw, n: n,
			gzipOK: strings.Contains(strings.ToLower(r.Header.Get("Accept-Encoding")), "gzip")}
		defer ew.finish()
		w, preview = ew, raw
		if n>>32%3 == 0 {
			readAll(r)
			s.record(t, k, sec, ServerError)
			if n>>36%2 == 0 {
				writeError(w, http.StatusInternalServerError, errServer())
			} else {
				writeError(w, http.StatusServiceUnavailable, errOverloaded())
			}
			return
		}
	}
	for _, e := range s.cfg.Episodes {
		if e.Kind == Episode503 && e.Target == t.idx && e.Active(el) {
			s.record(t, k, sec, Unavailable)
			writeError(w, http.StatusServiceUnavailable, errOverloaded())
			return
		}
	}
	if on, ra := s.stormNow(el); on {
		s.record(t, k, sec, Storm)
		retryAfter(w.Header(), ra)
		writeError(w, http.StatusTooManyRequests, errIPRateLimit())
		return
	}
	if k == nil || k.cfg.State == KeyRevoked {
		s.record(t, k, sec, Revoked)
		writeError(w, http.StatusUnauthorized, errInvalidKey(preview))
		return
	}
	var p parsed
	var ok bool
	if kind == transcriptionRequest {
		p, ok = s.parseTranscription(w, r, t, k, sec)
	} else {
		p, ok = s.parseChat(w, r, t, k, sec)
	}
	if !ok {
		return
	}
	model := p.model
	switch {
	case !s.models[model]:
		s.record(t, k, sec, UnknownModel)
		writeError(w, http.StatusNotFound, errModelNotFound(model))
		return
	case k.denied[model] && k.cfg.DeniedAs == DeniedAsProject:
		s.record(t, k, sec, ModelDenied)
		writeError(w, http.StatusForbidden, errProjectNoModel("proj_sim"+k.cfg.Account, model))
		return
	case k.denied[model]:
		s.record(t, k, sec, ModelDenied)
		writeError(w, http.StatusNotFound, errModelNotFound(model))
		return
	case k.noQuota(el):
		s.record(t, k, sec, NoQuota)
		writeError(w, http.StatusTooManyRequests, errInsufficientQuota())
		return
	}
	if s.refuseContent(w, t, k, sec, model, p.body) {
		return
	}
	v := k.win.admit(time.Now(), s.cfg.TokensPerRequest)
	if k.win.acct.Headers {
		v.setHeaders(w.Header())
		if v.exhausted() {
			k.markLimited(s)
		}
	}
	if !v.ok {
		s.record(t, k, sec, RateLimited)
		if k.win.acct.RetryAfter {
			w.Header().Set("Retry-After", strconv.Itoa(int((v.reset+time.Second-1)/time.Second)))
		}
		limit := v.reqLimit
		if v.what == "tokens" {
			limit = v.tokLimit
		}
		writeError(w, http.StatusTooManyRequests, errRateLimit(model, "org-"+k.win.acct.Name, v.what, limit, v.used, v.reset))
		return
	}
	s.record(t, k, sec, OK)
	n := s.serial.Add(1)
	if p.stream {
		s.stream(w, r, model, n)
		return
	}
	if d := s.cfg.Latency.D(); d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-r.Context().Done():
			tm.Stop()
			return
		}
	}
	body := completion(model, n)
	if kind == transcriptionRequest {
		body = transcription()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// parseChat reads a chat request's JSON; a mistake is answered here.
func (s *Sim) parseChat(w http.ResponseWriter, r *http.Request, t *target, k *keyState, sec int) (parsed, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	var req chatBody
	if err == nil {
		err = json.Unmarshal(b, &req)
	}
	switch {
	case err != nil:
		s.record(t, k, sec, BadRequest)
		writeError(w, http.StatusBadRequest, errBadJSON())
		return parsed{}, false
	case req.Model == nil || *req.Model == "":
		s.record(t, k, sec, BadRequest)
		writeError(w, http.StatusBadRequest, errNoModel())
		return parsed{}, false
	case len(req.Messages) == 0 || string(req.Messages) == "null" || string(req.Messages) == "[]":
		s.record(t, k, sec, BadRequest)
		writeError(w, http.StatusBadRequest, errMissingParam("messages"))
		return parsed{}, false
	}
	return parsed{model: *req.Model, stream: req.Stream, body: b}, true
}

// parseTranscription reads a multipart/form-data transcription request
// (fields model and file), bounded; a mistake is answered here.
func (s *Sim) parseTranscription(w http.ResponseWriter, r *http.Request, t *target, k *keyState, sec int) (parsed, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		s.record(t, k, sec, BadRequest)
		writeError(w, http.StatusBadRequest, errMultipart())
		return parsed{}, false
	}
	defer r.MultipartForm.RemoveAll()
	model := r.FormValue("model")
	if model == "" {
		s.record(t, k, sec, BadRequest)
		writeError(w, http.StatusBadRequest, errNoModel())
		return parsed{}, false
	}
	if f := r.MultipartForm.File["file"]; len(f) == 0 {
		s.record(t, k, sec, BadRequest)
		writeError(w, http.StatusBadRequest, errMissingParam("file"))
		return parsed{}, false
	}
	return parsed{model: model}, true
}

// refuseContent answers what the provider refuses in the request itself,
// whatever the key: flagged content (every key), a file id the key's
// project does not own. It reports whether it answered.
func (s *Sim) refuseContent(w http.ResponseWriter, t *target, k *keyState, sec int, model string, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	if i := bytes.Index(body, []byte(s.cfg.FlagMarker)); i >= 0 {
		s.record(t, k, sec, Flagged)
		lo, hi := max(0, i-40), min(len(body), i+len(s.cfg.FlagMarker)+40)
		writeJSON(w, http.StatusForbidden, flaggedAnswer(model, string(body[lo:hi]), "user_sim"+k.cfg.Account))
		return true
	}
	for rest := body; ; {
		i := bytes.Index(rest, []byte(`"file-`))
		if i < 0 {
			return false
		}
		rest = rest[i+1:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return false
		}
		id := string(rest[:j])
		if !k.files[id] {
			s.record(t, k, sec, ForeignFile)
			status, b := foreignFileAnswer(s.cfg.ForeignFileAs, id)
			writeJSON(w, status, b)
			return true
		}
	}
}

// stream writes StreamChunks events StreamGap apart, flushing each, then
// [DONE]; it stops when the client goes away.
func (s *Sim) stream(w http.ResponseWriter, r *http.Request, model string, n uint64) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	gap := s.cfg.StreamGap.D()
	var tm *time.Timer
	for i := 1; i <= s.cfg.StreamChunks; i++ {
		if _, err := w.Write(chunk(model, n, "token ", i == s.cfg.StreamChunks)); err != nil {
			return
		}
		rc.Flush()
		if gap > 0 && i < s.cfg.StreamChunks {
			if tm == nil {
				tm = time.NewTimer(gap)
				defer tm.Stop()
			} else {
				tm.Reset(gap)
			}
			select {
			case <-tm.C:
			case <-r.Context().Done():
				return
			}
		}
	}
	io.WriteString(w, "data: [DONE]\n\n")
	rc.Flush()
}

// listModels answers GET /v1/models with the models the key may use; this
// is what gpt-load's re-check of a blacklisted key asks. Out-of-quota
// keys may list models, as at OpenAI.
func (s *Sim) listModels(w http.ResponseWriter, r *http.Request) {
	s.modelsReqs.Add(1)
	k := s.keys[bearer(r)]
	if k != nil {
		k.models.Add(1)
	}
	if k == nil || k.cfg.State == KeyRevoked {
		preview := ""
		if raw := bearer(r); raw != "" {
			preview = secret.Mask(raw)
		}
		writeError(w, http.StatusUnauthorized, errInvalidKey(preview))
		return
	}
	var ms []string
	for _, m := range s.cfg.Models {
		if !k.denied[m] {
			ms = append(ms, m)
		}
	}
	b := modelList(ms)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// Stats is what GET /stats of the control endpoint answers: every count
// since the clock started. Keys appear only as masked previews, in the
// order of the configuration.
type Stats struct {
	ElapsedMS   int64            `json:"elapsed_ms"`
	Attempts    int64            `json:"attempts"` // chat requests, all outcomes
	Outcomes    map[string]int64 `json:"outcomes"`
	ModelsReqs  int64            `json:"models_requests"`
	MaxInFlight int64            `json:"max_in_flight"`
	Targets     []TargetStats    `json:"targets"`
	Keys        []KeyStats       `json:"keys"`
	Seconds     []SecondStats    `json:"seconds"`
}

// TargetStats counts one target's chat attempts.
type TargetStats struct {
	URL      string           `json:"url"`
	Attempts int64            `json:"attempts"`
	Outcomes map[string]int64 `json:"outcomes"`
}

// KeyStats counts one key's chat attempts and model listings.
type KeyStats struct {
	Index   int    `json:"index"`
	Preview string `json:"preview"`
	Account string `json:"account"`
	// State is the key's state now: a key past its NoQuotaAt is no_quota.
	State      string           `json:"state"`
	Attempts   int64            `json:"attempts"`
	Outcomes   map[string]int64 `json:"outcomes"`
	ModelsReqs int64            `json:"models_requests"`
	// Limited counts the answers that told this key it is limited (a
	// rate-limit 429 of its account or a storm, or rate-limit headers
	// showing a limit used up); LastLimitedMS is the clock time of the
	// last, -1 before any. A client resting the key is right only after
	// one of them.
	Limited       int64 `json:"limited"`
	LastLimitedMS int64 `json:"last_limited_ms"`
}

// SecondStats counts the chat attempts of one second of the clock.
type SecondStats struct {
	Attempts int64 `json:"attempts"`
	OK       int64 `json:"ok"`
	TooMany  int64 `json:"too_many"` // 429s of any kind
}

// Snapshot returns the counts so far.
func (s *Sim) Snapshot() Stats {
	el := s.elapsed()
	st := Stats{
		ElapsedMS: el.Milliseconds(), Attempts: s.counts.total(), Outcomes: s.counts.snapshot(),
		ModelsReqs: s.modelsReqs.Load(), MaxInFlight: s.maxIn.Load(),
		Targets: []TargetStats{}, Keys: []KeyStats{}, Seconds: []SecondStats{},
	}
	for _, t := range s.targets {
		st.Targets = append(st.Targets, TargetStats{URL: "http://" + t.addr, Attempts: t.counts.total(), Outcomes: t.counts.snapshot()})
	}
	for _, k := range s.keyList {
		state := k.cfg.State
		if state == KeyOK && k.noQuota(el) {
			state = KeyNoQuota
		}
		st.Keys = append(st.Keys, KeyStats{Index: k.idx, Preview: k.preview, Account: k.cfg.Account, State: state,
			Attempts: k.counts.total(), Outcomes: k.counts.snapshot(), ModelsReqs: k.models.Load(),
			Limited: k.limited.Load(), LastLimitedMS: lastMS(k.lastLimited.Load())})
	}
	for i := 0; i <= int(el/time.Second) && i < maxSeconds; i++ {
		sc := &s.seconds[i]
		st.Seconds = append(st.Seconds, SecondStats{Attempts: sc.attempts.Load(), OK: sc.ok.Load(), TooMany: sc.tooMany.Load()})
	}
	return st
}

func (s *Sim) serveControl(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/stats" && r.Method == http.MethodGet:
		b, _ := json.Marshal(s.Snapshot())
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case r.URL.Path == "/reset" && r.Method == http.MethodPost:
		s.Reset()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"reset":true}`+"\n")
	default:
		writeError(w, http.StatusNotFound, errNoRoute(r.Method, r.URL.Path))
	}
}

// FetchStats reads GET /stats of a simulator's control endpoint.
func FetchStats(ctx context.Context, c *http.Client, controlURL string) (Stats, error) {
	var st Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, controlURL+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("providersim stats: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("providersim stats: %w", err)
	}
	return st, nil
}

func lastMS(ns int64) int64 {
	if ns < 0 {
		return -1
	}
	return time.Duration(ns).Milliseconds()
}
