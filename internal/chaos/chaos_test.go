package chaos

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// TestChaos runs the invariant harness: CHAOS_SEEDS seeds (default 3)
// from CHAOS_SEED_BASE (default 1), or the one seed CHAOS_SEED, each with
// CHAOS_DURATION of traffic (default 4s). A failure prints the seed and
// the command that reruns it. CHAOS_SKIP (comma-separated request kinds,
// fault modes or "storm") leaves some trouble out, to look at one fault
// of gpt-load while another would hide it; it is for diagnosis only.
func TestChaos(t *testing.T) {
	seeds, d, err := chaosEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("CHAOS_SEEDS") == "" && os.Getenv("CHAOS_SEED") == "" {
		// make test's short run: (g) catches deadlines not applied, not a
		// busy machine (see deadlineSlack).
		old := deadlineSlack
		deadlineSlack = shortRunDeadlineSlack
		t.Cleanup(func() { deadlineSlack = old })
		t.Logf("short run: (g) allows %v over each deadline; make chaos allows %v", deadlineSlack, old)
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			var skip []string
			if s := os.Getenv("CHAOS_SKIP"); s != "" {
				skip = strings.Split(s, ",")
				t.Logf("CHAOS_SKIP=%s: leaving out %v", s, skip)
			} else if raceEnabled {
				// Under -race on two cores, multi-MiB bodies read too slowly
				// for SERVER_READ_TIMEOUT: 8 MiB chunked bodies got 408 for
				// 413, and stalled bodies' 408 came past (d)'s bound. The
				// short run in make test leaves them out; make chaos (no
				// -race) keeps them (docs/chaos.md).
				skip = raceSkip
				t.Logf("under -race: leaving out %v", skip)
			}
			res := Run(t, NewPlan(seed, d).Without(skip))
			t.Log(res.Stats())
			t.Logf("seed %d violations: %s", seed, res.Tally())
			for _, v := range res.Violations {
				if v.Invariant == Excused {
					t.Logf("excused by the spec: %s", v.Detail)
				}
			}
			if rep := res.Report(); rep != "" {
				t.Error("\n" + rep)
			}
		})
	}
}

// raceSkip is what the short run under -race leaves out.
var raceSkip = []string{"large_chat", "oversized_chunked"}

// chaosEnv reads the seeds and the per-seed duration.
func chaosEnv(getenv func(string) string) ([]uint64, time.Duration, error) {
	d := 4 * time.Second
	if s := getenv("CHAOS_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v < 3*time.Second || v > 10*time.Minute {
			return nil, 0, fmt.Errorf("CHAOS_DURATION=%q: want a duration from 3s to 10m (1 s of warm-up, 1 s of quiet end)", s)
		}
		d = v
	}
	if s := getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("CHAOS_SEED=%q: want a number", s)
		}
		return []uint64{v}, d, nil
	}
	n, base := uint64(3), uint64(1)
	if s := getenv("CHAOS_SEEDS"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v == 0 || v > 100000 {
			return nil, 0, fmt.Errorf("CHAOS_SEEDS=%q: want a count from 1 to 100000", s)
		}
		n = v
	}
	if s := getenv("CHAOS_SEED_BASE"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("CHAOS_SEED_BASE=%q: want a number", s)
		}
		base = v
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds, d, nil
}

func TestChaosEnv(t *testing.T) {
	tests := []struct {
		env   map[string]string
		seeds []uint64
		d     time.Duration
		bad   bool
	}{
		{env: nil, seeds: []uint64{1, 2, 3}, d: 4 * time.Second},
		{env: map[string]string{"CHAOS_SEED": "42", "CHAOS_SEEDS": "9"}, seeds: []uint64{42}, d: 4 * time.Second},
		{env: map[string]string{"CHAOS_SEEDS": "2", "CHAOS_SEED_BASE": "100", "CHAOS_DURATION": "5s"}, seeds: []uint64{100, 101}, d: 5 * time.Second},
		{env: map[string]string{"CHAOS_DURATION": "2s"}, bad: true},
		{env: map[string]string{"CHAOS_SEEDS": "0"}, bad: true},
		{env: map[string]string{"CHAOS_SEED": "x"}, bad: true},
	}
	for _, tc := range tests {
		seeds, d, err := chaosEnv(func(k string) string { return tc.env[k] })
		if (err != nil) != tc.bad || !tc.bad && (!reflect.DeepEqual(seeds, tc.seeds) || d != tc.d) {
			t.Errorf("chaosEnv(%v) = %v, %v, %v; want %v, %v, error %v", tc.env, seeds, d, err, tc.seeds, tc.d, tc.bad)
		}
	}
}

// TestPlanReproducible checks that a seed draws the same plan every time
// and another seed another one: what makes a failing seed reproducible.
func TestPlanReproducible(t *testing.T) {
	a, b := NewPlan(7, 4*time.Second), NewPlan(7, 4*time.Second)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("NewPlan(7) drew two different plans:\n%s\n%s", a.Summary(), b.Summary())
	}
	if c := NewPlan(8, 4*time.Second); reflect.DeepEqual(a.Requests, c.Requests) {
		t.Errorf("NewPlan(8) drew the requests of seed 7")
	}
	for seed := range uint64(50) {
		p := NewPlan(seed, 4*time.Second)
		ok := map[string]int{}
		for _, k := range p.Sim.Keys {
			if k.State == providersim.KeyOK {
				for _, m := range models {
					if !contains(k.DeniedModels, m) {
						ok[m]++
					}
				}
			}
		}
		for _, m := range models {
			if ok[m] < 2 {
				t.Errorf("seed %d: %d healthy keys may use %s; want ≥ 2", seed, ok[m], m)
			}
		}
		for _, f := range p.Faults {
			if f.At > p.Duration-quietEnd || f.At < warmUp {
				t.Errorf("seed %d: a fault step at %v, in the warm-up or the quiet end", seed, f.At)
			}
		}
		for _, s := range p.Storms {
			if s.At < warmUp || s.At+s.For > p.Duration-quietEnd {
				t.Errorf("seed %d: a storm from %v to %v, in the warm-up or the quiet end", seed, s.At, s.At+s.For)
			}
		}
	}
}

func TestWithout(t *testing.T) {
	p := NewPlan(3, 4*time.Second)
	q := p.Without([]string{"flagged", "5xx", "storm"})
	if len(q.Requests) != len(p.Requests) || len(q.Storms) != 0 {
		t.Fatalf("Without changed the number of requests or kept the storm")
	}
	for i, r := range q.Requests {
		if r.Kind == Flagged || r.At != p.Requests[i].At {
			t.Errorf("request %d = %v at %v; want no flagged, same time", i, r.Kind, r.At)
		}
	}
	for _, f := range q.Faults {
		if f.Fault == providersim.Fault5xx {
			t.Errorf("fault step %v kept", f)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestChecks feeds the invariant checks readings and answers made up to
// hold or break each invariant, so the harness is known to see what it
// must before it is pointed at gpt-load.
func TestChecks(t *testing.T) {
	p := Plan{Seed: 1, Env: NewPlan(1, 3*time.Second).Env, Sim: providersim.Config{
		Models: models,
		Keys: []providersim.Key{
			{Key: "sk-chaos-test-0000"},
			{Key: "sk-chaos-test-0001", DeniedModels: []string{"whisper-1"}},
			{Key: "sk-chaos-test-0002", State: providersim.KeyRevoked},
		},
	}, Faults: []FaultStep{{At: time.Second, Target: 0, Fault: providersim.Fault5xx}, {At: 2 * time.Second, Target: 0}}}
	p.Sim.Targets = 1
	for _, tc := range []struct {
		from, to time.Duration
		want     string
	}{{500 * time.Millisecond, 1500 * time.Millisecond, "target 0 5xx"}, {1200 * time.Millisecond, 1300 * time.Millisecond, "target 0 5xx"},
		{2500 * time.Millisecond, 3 * time.Second, "no fault"}, {0, 900 * time.Millisecond, "no fault"}} {
		if got := p.faultsIn(tc.from, tc.to); got != tc.want {
			t.Errorf("faultsIn(%v, %v) = %q; want %q", tc.from, tc.to, got, tc.want)
		}
	}
	pv := func(i int) string { return secret.Mask(p.Sim.Keys[i].Key) }
	sim := providersim.Stats{Keys: []providersim.KeyStats{
		{Preview: pv(0)}, {Preview: pv(1), Limited: 1, Outcomes: map[string]int64{"gateway_401": 1}},
		{Preview: pv(2), Outcomes: map[string]int64{"revoked": 1}},
	}}
	excluded := func(model string) KeyView {
		v := KeyView{Preview: pv(1), State: "active"}
		v.ModelsExcluded = append(v.ModelsExcluded, struct {
			Model string `json:"model"`
			Until string `json:"until"`
		}{model, ""})
		return v
	}
	keyTests := []struct {
		name string
		view KeyView
		want []Invariant
	}{
		{"healthy active", KeyView{Preview: pv(0), State: "active"}, nil},
		{"healthy blacklisted", KeyView{Preview: pv(0), State: "blacklisted"}, []Invariant{HealthyInRotation}},
		{"cooling, never limited", KeyView{Preview: pv(0), State: "cooling"}, []Invariant{CoolingOnlyWhenLimited}},
		{"cooling, limited", KeyView{Preview: pv(1), State: "cooling"}, nil},
		{"excluded for a denied model", excluded("whisper-1"), nil},
		{"excluded for an allowed model", excluded("gpt-4o"), []Invariant{HealthyInRotation}},
		{"excluded for an unknown model", excluded("gpt-5o"), nil},
		{"bad key blacklisted", KeyView{Preview: pv(2), State: "blacklisted"}, nil},
		{"healthy blacklisted on a 401, never met a gateway", KeyView{Preview: pv(0), State: "blacklisted", LastStatus: 401}, []Invariant{HealthyInRotation}},
		{"healthy blacklisted on a gateway's 401", KeyView{Preview: pv(1), State: "blacklisted", LastStatus: 401}, []Invariant{Excused}},
		{"healthy blacklisted on a 403 after a gateway's 401", KeyView{Preview: pv(1), State: "blacklisted", LastStatus: 403}, []Invariant{HealthyInRotation}},
	}
	for _, tc := range keyTests {
		t.Run(tc.name, func(t *testing.T) {
			if got := invariants(checkKeys(p, time.Second, []KeyView{tc.view}, sim)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("checkKeys(%+v) = %v; want %v", tc.view, got, tc.want)
			}
		})
	}
	if got := invariants(checkBadKeys(p, []KeyView{{Preview: pv(2), State: "active"}}, sim)); !reflect.DeepEqual(got, []Invariant{BadKeysOut}) {
		t.Errorf("checkBadKeys(revoked key active) = %v; want (c)", got)
	}
	if got := checkBadKeys(p, []KeyView{{Preview: pv(2), State: "blacklisted"}}, sim); len(got) != 0 {
		t.Errorf("checkBadKeys(revoked key blacklisted) = %v; want none", got)
	}

	flagged403 := `{"error":{"code":403,"message":"gpt-4o requires moderation on OpenAI. Your input was flagged for \"harassment\". No credits were charged.","metadata":{"reasons":["harassment"],"flagged_input":"x","provider_name":"OpenAI","model_slug":"gpt-4o"}},"user_id":"u"}`
	proxy503 := `{"error":{"message":"no key available","type":"gpt_load_error","code":"no_available_keys"}}`
	ans := func(k Kind, at time.Duration, status int, body string) Answer {
		return Answer{Request: Request{Kind: k, Model: "gpt-4o"}, Start: at, End: at + 50*time.Millisecond, Status: status, Body: []byte(body)}
	}
	answerTests := []struct {
		name string
		a    Answer
		want []Invariant
	}{
		{"flagged as the provider's 403", ans(Flagged, 0, 403, flagged403), nil},
		{"flagged as gpt-load's 503", ans(Flagged, 0, 503, proxy503), []Invariant{MistakesAsProvider}},
		{"flagged as 502 during a fault", ans(Flagged, 1500*time.Millisecond, 502, "<html>"), nil},
		{"flagged as 502 with no fault", ans(Flagged, 2500*time.Millisecond, 502, "<html>"), []Invariant{MistakesAsProvider}},
		{"flagged as gpt-load's 503 during a fault", ans(Flagged, 1500*time.Millisecond, 503, proxy503), []Invariant{MistakesAsProvider}},
		{"flagged as gpt-load's 504 during a fault", ans(Flagged, 1500*time.Millisecond, 504, `{"error":{"message":"m","type":"gpt_load_error","code":"upstream_timeout"}}`), nil},
		{"stalled body 408", ans(StalledBody, 0, 408, `{"error":{"message":"m","type":"gpt_load_error","code":"request_timeout"}}`), nil},
		{"oversized 413", ans(Oversized, 0, 413, `{"error":{"message":"m","type":"gpt_load_error","code":"request_too_large"}}`), nil},
		{"oversized as 502 during a fault", ans(Oversized, 1500*time.Millisecond, 502, ""), []Invariant{MistakesAsProvider}},
		{"healthy 503", ans(Chat, 0, 503, proxy503), nil},
		{"unknown model ending on a revoked key", ans(UnknownModel, 0, 401, `{"error":{"message":"Incorrect API key provided: `+pv(2)+`. You can find…","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`), nil},
		{"unknown model ending on a healthy key's 401", ans(UnknownModel, 0, 401, `{"error":{"message":"Incorrect API key provided: `+pv(0)+`.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`), []Invariant{MistakesAsProvider}},
		{"flagged retried onto a key denied the model", ans(Flagged, 0, 403, "{\"error\":{\"message\":\"Project `proj_sim` does not have access to model `gpt-4o`\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}"), []Invariant{MistakesAsProvider}},
		{"hung", Answer{Request: Request{Kind: Chat}, Hung: true}, []Invariant{Answered}},
		{"flagged as a 200 cut short during a fault", cut(ans(Flagged, 1500*time.Millisecond, 200, `{"id":"chatcmpl-stalled",`)), nil},
		{"flagged as a 200 cut short with no fault", cut(ans(Flagged, 2500*time.Millisecond, 200, `{"id":"chatcmpl-stalled",`)), []Invariant{MistakesAsProvider}},
		{"unknown model, padded past 4 KiB", padded(t, Answer{Request: Request{Kind: UnknownModel, Model: "gpt-5o"}},
			`{"error":{"message":"The model `+"`gpt-5o`"+` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"},"pad":"`+strings.Repeat("x", 64<<10)+`","key_hint":"k"}`), nil},
	}
	for _, tc := range answerTests {
		t.Run(tc.name, func(t *testing.T) {
			if got := invariants(checkAnswer(p, tc.a)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("checkAnswer(%s %d) = %v; want %v", tc.a.Kind, tc.a.Status, got, tc.want)
			}
		})
	}
}

// TestLeakScanner feeds the clients' key search what gpt-load could let
// through: a key in a header, split across two reads of a body, after an
// escape, in a gzip or a deflate body; and what it must not flag.
func TestLeakScanner(t *testing.T) {
	keys := []string{"sk-chaos-test-0000", "sk-chaos-test-0001"}
	k := keys[1]
	zip := func(coding string, s string) []byte {
		var b bytes.Buffer
		var w io.WriteCloser
		switch coding {
		case "gzip":
			w = gzip.NewWriter(&b)
		case "deflate":
			w = zlib.NewWriter(&b)
		default:
			w, _ = flate.NewWriter(&b, flate.DefaultCompression)
		}
		io.WriteString(w, s)
		w.Close()
		return b.Bytes()
	}
	tests := []struct {
		name   string
		header http.Header
		chunks [][]byte
		leaks  int
	}{
		{"clean", http.Header{"X-Api-Key": {secret.Mask(k)}}, [][]byte{[]byte(`{"error":"` + secret.Mask(k) + `"}`)}, 0},
		{"a header", http.Header{"Location": {"https://x/?key=" + k}}, nil, 1},
		{"two headers", http.Header{"X-Api-Key": {k}, "Www-Authenticate": {`Bearer realm="` + keys[0] + `"`}}, nil, 2},
		{"the body, split across reads", nil, [][]byte{[]byte(`{"m":"\u0027` + k[:7]), []byte(k[7:12]), []byte(k[12:] + `"}`)}, 1},
		{"the body, after %3D", nil, [][]byte{[]byte(`auth%3D` + k)}, 1},
		{"a prefix only", nil, [][]byte{[]byte(k[:len(k)-1] + "\n")}, 0},
		{"gzip", http.Header{"Content-Encoding": {"GZIP"}}, [][]byte{zip("gzip", `{"e":"`+k+`"}`)}, 1},
		{"deflate", http.Header{"Content-Encoding": {"deflate"}}, [][]byte{zip("deflate", `{"e":"`+k+`"}`)}, 1},
		{"raw deflate", http.Header{"Content-Encoding": {"deflate"}}, [][]byte{zip("raw", `{"e":"`+k+`"}`)}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			resp := &http.Response{StatusCode: 500, Header: h, Body: io.NopCloser(&chunkReader{chunks: tc.chunks})}
			var a Answer
			sc := newLeakScanner(keys)
			receive(resp, &a, sc, false, nil)
			a.Leaks = sc.found
			if got := len(checkLeaks(Plan{}, a)); got != tc.leaks {
				t.Errorf("found %d leaks (%v); want %d", got, a.Leaks, tc.leaks)
			}
			for _, l := range a.Leaks {
				if strings.Contains(l, k) || strings.Contains(l, keys[0]) {
					t.Errorf("the report %q quotes the key", l)
				}
			}
		})
	}
}

// TestClientsSeeLeaks points the clients at the simulator itself, with
// no gpt-load in between, in its echo_key mode: what (f) must flag when
// nothing masks, through the very code the chaos runs use.
func TestClientsSeeLeaks(t *testing.T) {
	keys := []string{"sk-chaos-leak-0000", "sk-chaos-leak-0001"}
	sim, err := providersim.Start(providersim.Config{Models: models, Keys: []providersim.Key{{Key: keys[0]}, {Key: keys[1], State: providersim.KeyRevoked}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.SetFault(0, providersim.FaultEchoKey)
	c := &http.Client{Transport: &keyed{keys: keys}}
	inHeader, inBody := 0, 0
	for n := range 12 {
		a := send(context.Background(), c, sim.URLs()[0], "", Request{N: n, Kind: Chat, Model: models[0]}, 5*time.Second, keys)
		for _, l := range a.Leaks {
			if strings.HasPrefix(l, "header") {
				inHeader++
			} else {
				inBody++
			}
		}
	}
	if inHeader < 12*3 || inBody == 0 {
		t.Errorf("found %d keys in headers and %d in bodies; want 3 a request in headers and some in error bodies", inHeader, inBody)
	}
}

// keyed sends each request with the next key, as gpt-load would.
type keyed struct {
	keys []string
	n    int
}

func (k *keyed) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+k.keys[k.n%len(k.keys)])
	k.n++
	return http.DefaultTransport.RoundTrip(r)
}

// chunkReader returns its chunks one Read each.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.chunks[0])
	if n == len(r.chunks[0]) {
		r.chunks = r.chunks[1:]
	} else {
		r.chunks[0] = r.chunks[0][n:]
	}
	return n, nil
}

// TestDeadlineChecks checks (g)'s bound by the faults a request met, and
// (h).
func TestDeadlineChecks(t *testing.T) {
	p := NewPlan(1, 3*time.Second) // REQUEST_TIMEOUT 1, RESPONSE_TIMEOUT 2, STREAM_IDLE_TIMEOUT 2, QUEUE_TIMEOUT 1, MAX_RETRIES 3
	rt := 4 * time.Second          // SERVER_READ_TIMEOUT
	ans := func(k Kind, n int, took time.Duration, faults ...providersim.Fault) Answer {
		return Answer{Request: Request{Kind: k, N: n}, Start: time.Second, End: time.Second + took, Status: 200, Faults: faults}
	}
	tests := []struct {
		name  string
		a     Answer // its End is set by the test
		bound time.Duration
	}{
		{"a chat, one attempt", ans(Chat, 0, 0, ""), 7 * time.Second},
		{"a stalled error body, then a retry", ans(Chat, 0, 0, providersim.FaultStallError, ""), 19 * time.Second},
		{"a stalled 200 body", ans(Chat, 0, 0, providersim.FaultStallBody), 9 * time.Second},
		{"a stalled stream in its window", ans(Stream, 0, 0, providersim.FaultStallBody), 17 * time.Second},
		{"a body never read, then a retry", ans(LargeChat, 0, 0, providersim.FaultNoRead, ""), 9*time.Second + rt},
		{"a stalled client body", ans(StalledBody, 0, 0), rt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Deadline(p.Env, tc.a); got != tc.bound {
				t.Errorf("Deadline = %v; want %v", got, tc.bound)
			}
			for _, c := range []struct {
				took time.Duration
				want []Invariant
			}{{tc.bound, nil}, {tc.bound + deadlineSlack - 100*time.Millisecond, nil}, {tc.bound + deadlineSlack + 100*time.Millisecond, []Invariant{WithinDeadlines}}} {
				a := tc.a
				a.End = a.Start + c.took
				if got := invariants(checkDeadline(p, a)); !reflect.DeepEqual(got, c.want) {
					t.Errorf("checkDeadline after %v = %v; want %v", c.took, got, c.want)
				}
			}
		})
	}
	if got := checkDeadline(p, Answer{Request: Request{Kind: Chat}, Hung: true, End: time.Minute}); len(got) != 0 {
		t.Errorf("checkDeadline(hung) = %v; want none: (d)'s", got)
	}

	const mb = 1 << 20
	memTests := []struct {
		m    Memory
		want []Invariant
	}{
		{Memory{RSSBase: 40 * mb, RSSAfter: 51 * mb, HeapBase: 8 * mb, HeapAfter: 11 * mb}, nil},
		{Memory{RSSBase: 40 * mb, RSSAfter: 53 * mb, HeapBase: 8 * mb, HeapAfter: 8 * mb}, []Invariant{MemoryBack}},
		{Memory{RSSBase: 40 * mb, RSSAfter: 41 * mb, HeapBase: 8 * mb, HeapAfter: 13 * mb}, []Invariant{MemoryBack}},
		{Memory{RSSBase: 40 * mb, RSSAfter: 120 * mb, HeapBase: 8 * mb, HeapAfter: 80 * mb}, []Invariant{MemoryBack, MemoryBack}},
		{Memory{RSSBase: 40 * mb, RSSAfter: 30 * mb, HeapBase: 8 * mb, HeapAfter: 7 * mb}, nil},
		{Memory{Heap: true, RSSBase: 40 * mb, RSSAfter: 200 * mb, HeapBase: 8 * mb, HeapAfter: 11 * mb}, nil},
		{Memory{Heap: true, RSSBase: 40 * mb, RSSAfter: 40 * mb, HeapBase: 8 * mb, HeapAfter: 13 * mb}, []Invariant{MemoryBack}},
	}
	for _, tc := range memTests {
		if got := invariants(checkMemory(tc.m)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("checkMemory(%+v) = %v; want %v", tc.m, got, tc.want)
		}
	}
	if r, err := rss(); err != nil || r < 1<<20 {
		t.Errorf("rss() = %d, %v; want this process's resident set", r, err)
	}
}

// cut makes a's body end short, as a stalled upstream's cut does.
func cut(a Answer) Answer {
	a.Err = "body: unexpected EOF"
	return a
}

// padded has the client receive body as a 404 into a.
func padded(t *testing.T, a Answer, body string) Answer {
	t.Helper()
	resp := &http.Response{StatusCode: 404, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
	receive(resp, &a, newLeakScanner(nil), false, nil)
	if len(a.Body) > keepBody {
		t.Fatalf("kept %d bytes of the body; want at most %d", len(a.Body), keepBody)
	}
	return a
}

func invariants(vs []Violation) []Invariant {
	var l []Invariant
	for _, v := range vs {
		l = append(l, v.Invariant)
	}
	return l
}
