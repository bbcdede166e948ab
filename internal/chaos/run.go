package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
	"github.com/gpt-load/gpt-load/internal/testserver"
	"github.com/gpt-load/gpt-load/internal/wait"
)

// Result is one seed's run.
type Result struct {
	Plan       Plan
	Answers    []Answer
	Sim        providersim.Stats // at the end
	Readings   int               // of gpt-load's keys during the run
	Violations []Violation       // deduplicated by invariant and subject, first seen first
	Counts     map[Invariant]int // violations before deduplication
	Memory     Memory            // (h)'s readings
}

// Bound is how long a client waits for a request before it counts as
// hung (SPEC §18: no request outlives its timeouts): each attempt's
// connect (REQUEST_TIMEOUT, MAX_RETRIES+1 times), one attempt that is not
// retried (RESPONSE_TIMEOUT for the headers, then STREAM_IDLE_TIMEOUT of
// silence in the body; for a stream, after at most §20's 10 s commit
// window), one error body read to its 10 s deadline (a stalled 5xx body,
// §18, issue 19), the wait for a key (QUEUE_TIMEOUT), and 2 s of slack
// for a loaded machine. A body the client stalls gets
// SERVER_READ_TIMEOUT and the slack. Invariant (g) judges each request's
// time more closely, by the faults it met (Deadline).
func Bound(env map[string]string, k Kind) time.Duration {
	sec := func(name string) time.Duration {
		n, _ := strconv.Atoi(env[name])
		return time.Duration(n) * time.Second
	}
	const slack = 2 * time.Second
	if k == StalledBody {
		return sec("SERVER_READ_TIMEOUT") + slack
	}
	retries, _ := strconv.Atoi(env["MAX_RETRIES"])
	b := time.Duration(retries+1)*sec("REQUEST_TIMEOUT") + sec("RESPONSE_TIMEOUT") + sec("STREAM_IDLE_TIMEOUT") +
		errorBodyRead + sec("QUEUE_TIMEOUT") + slack
	if k == Stream || k == CancelStream || k == UnknownModel || k == ForeignFile {
		b += commitWindow // some of these ask for a stream
	}
	if k == LargeChat {
		b += sec("SERVER_READ_TIMEOUT") // the body is read whole before the first attempt
	}
	return b
}

// Run starts the plan's provider and gpt-load in front of it (the real
// http.Server, on loopback), plays the fault schedule and the requests,
// reads gpt-load's keys every 200 ms and at the end, and checks the
// invariants. Servers are closed when t's cleanup runs.
//
// gpt-load runs in this process, with the simulator and the clients, so
// (h)'s memory is the process's: the baseline is read once both servers
// served a few requests (a chat, a stream, a large body) and the clients'
// connections were closed; the final reading once every request ended,
// the simulator's stalls were ended (Unstall) and every idle connection
// (clients to gpt-load, gpt-load to the simulator) was closed, after a GC
// and debug.FreeOSMemory. What the harness keeps of the run (answers,
// readings, gpt-load's log in memory) is small against the slack.
func Run(t testing.TB, p Plan) *Result {
	t.Helper()
	sim, err := providersim.Start(p.Sim)
	if err != nil {
		t.Fatalf("providersim.Start: %v", err)
	}
	t.Cleanup(sim.Close)
	var keys []string
	for _, k := range p.Sim.Keys {
		keys = append(keys, k.Key)
	}
	srv := testserver.Start(t, testserver.Options{Keys: keys, Upstreams: sim.URLs(), Env: p.Env, Live: true})

	res := &Result{Plan: p, Counts: map[Invariant]int{}}
	seen := map[string]bool{}
	var mu sync.Mutex
	add := func(vs []Violation) {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range vs {
			res.Counts[v.Invariant]++
			if id := string(v.Invariant) + "\x00" + v.Subject; !seen[id] {
				seen[id] = true
				res.Violations = append(res.Violations, v)
			}
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	defer client.CloseIdleConnections()
	ctl := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer ctl.CloseIdleConnections()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answers := make([]Answer, len(p.Requests))
	warmUpServers(ctx, client, srv.URL, srv.Addr, keys)
	client.CloseIdleConnections()
	sim.Unstall() // closes its idle connections
	res.Memory.Heap = raceEnabled
	res.Memory.RSSBase, res.Memory.HeapBase, res.Memory.DetailBase = settledDetail()

	// Which fault modes each request's upstream attempts met.
	met := make([][]providersim.Fault, len(p.Requests))
	sim.SetTrace(func(at providersim.Attempt) {
		n, err := strconv.Atoi(at.Header.Get(providersim.TraceHeader))
		if err != nil || n < 0 || n >= len(met) {
			return
		}
		mu.Lock()
		met[n] = append(met[n], at.Fault)
		mu.Unlock()
	})
	sim.Reset() // the clock starts with the traffic
	start := time.Now()
	var wg sync.WaitGroup

	// The fault schedule.
	wg.Add(1)
	go func() {
		defer wg.Done()
		type step struct {
			at time.Duration
			do func()
		}
		var steps []step
		for _, f := range p.Faults {
			steps = append(steps, step{f.At, func() { sim.SetFault(f.Target, f.Fault) }})
		}
		for _, s := range p.Storms {
			steps = append(steps, step{s.At, func() { sim.SetStorm(true, s.RetryAfter) }},
				step{s.At + s.For, func() { sim.SetStorm(false, 0) }})
		}
		slices.SortStableFunc(steps, func(a, b step) int { return int(a.at - b.at) })
		for _, s := range steps {
			if !wait.Until(ctx, start.Add(s.at)) {
				return
			}
			s.do()
		}
	}()

	// Readings of gpt-load's keys while the traffic runs.
	readingsDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-readingsDone:
				return
			case <-tk.C:
			}
			at := time.Since(start)
			views, err := readKeys(ctx, ctl, srv.URL)
			if err != nil {
				continue // a slow reading under load is no finding
			}
			add(checkKeys(p, at, views, sim.Snapshot()))
			mu.Lock()
			res.Readings++
			mu.Unlock()
		}
	}()

	// The clients, open loop.
	var cw sync.WaitGroup
	for i, r := range p.Requests {
		if !wait.Until(ctx, start.Add(r.At)) {
			break
		}
		cw.Add(1)
		go func() {
			defer cw.Done()
			began := time.Since(start)
			a := send(ctx, client, srv.URL, srv.Addr, r, Bound(p.Env, r.Kind), keys)
			a.Start, a.End = began, time.Since(start)
			answers[i] = a
		}()
	}
	cw.Wait()
	close(readingsDone)
	cancel()
	wg.Wait()
	mu.Lock()
	for i := range answers {
		answers[i].Faults = met[i]
	}
	mu.Unlock()
	res.Answers = answers
	for _, a := range answers {
		add(checkAnswer(p, a))
		add(checkLeaks(p, a))
		add(checkDeadline(p, a))
	}

	// The final reading: /stats?keys=1, then /blacklist, then the
	// simulator (which saw every answer gpt-load acted on).
	end := time.Since(start)
	views, err := readKeys(context.Background(), ctl, srv.URL)
	if err != nil {
		t.Fatalf("seed %d: final /stats?keys=1: %v", p.Seed, err)
	}
	listed, err := readBlacklist(context.Background(), ctl, srv.URL)
	if err != nil {
		t.Fatalf("seed %d: final /blacklist: %v", p.Seed, err)
	}
	res.Sim = sim.Snapshot()
	add(checkKeys(p, end, views, res.Sim))
	add(checkKeys(p, end, listed, res.Sim))
	add(checkBadKeys(p, views, res.Sim))

	// (h): every request ended; end the simulator's stalls (gpt-load's
	// attempts on them, if any still run, then end too) and close every
	// idle connection, then read memory until it settles.
	sim.SetTrace(nil)
	sim.Unstall()
	client.CloseIdleConnections()
	ctl.CloseIdleConnections()
	for end := time.Now().Add(5 * time.Second); sim.InFlight() > 0 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	sim.Unstall() // the idle connections of attempts that just ended
	memoryAfter(&res.Memory)
	add(checkMemory(res.Memory))
	if res.Failed() && os.Getenv("CHAOS_LOG") != "" && srv.Logs != nil {
		// For diagnosis: gpt-load's own account of the keys and targets.
		for line := range strings.SplitSeq(srv.Logs.String(), "\n") {
			if !strings.Contains(line, `"msg":"request"`) {
				t.Log(line)
			}
		}
	}
	return res
}

// warmUpServers sends a few requests through gpt-load before the
// baseline of (h) is read, so that what any first request builds once
// (connections' buffers, the spool's temporary directory, the large
// bodies' shared filler, the proxy's pools) is in it: chats, a stream and
// a large chat, one after the other, each on its own key by rotation.
func warmUpServers(ctx context.Context, c *http.Client, base, addr string, keys []string) {
	for i, k := range []Kind{Chat, Chat, Stream, LargeChat} {
		r := Request{N: i, Kind: k, Model: models[0], Size: 1 << 20}
		send(ctx, c, base, addr, r, 5*time.Second, keys)
	}
	padding()
}

// readKeys reads every key of gpt-load's /stats?keys=1.
func readKeys(ctx context.Context, c *http.Client, base string) ([]KeyView, error) {
	var st struct {
		KeyDetails []KeyView `json:"key_details"`
	}
	if err := getJSON(ctx, c, base+"/stats?keys=1&limit=10000", &st); err != nil {
		return nil, err
	}
	return st.KeyDetails, nil
}

// readBlacklist reads /blacklist as key views: "permanent" entries are
// blacklisted keys, "temporary" ones cooling.
func readBlacklist(ctx context.Context, c *http.Client, base string) ([]KeyView, error) {
	var bl struct {
		Keys []struct {
			Preview string `json:"preview"`
			Reason  string `json:"reason"`
			Type    string `json:"type"`
			Status  int    `json:"status"`
		} `json:"blacklisted_keys"`
	}
	if err := getJSON(ctx, c, base+"/blacklist?limit=10000", &bl); err != nil {
		return nil, err
	}
	var views []KeyView
	for _, k := range bl.Keys {
		state := "cooling"
		if k.Type == "permanent" {
			state = "blacklisted"
		}
		views = append(views, KeyView{Preview: k.Preview, State: state, Reason: k.Reason + " (per /blacklist)", LastStatus: k.Status})
	}
	return views, nil
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Report describes the violations of r, grouped by invariant, with the
// command that reruns the seed; "" when there are none.
func (r *Result) Report() string {
	if !r.Failed() {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos seed %d: invariants violated; rerun with: CHAOS_SEED=%d go test ./internal/chaos -run TestChaos -v\n",
		r.Plan.Seed, r.Plan.Seed)
	fmt.Fprintf(&b, "  plan: %s\n", r.Plan.Summary())
	for _, inv := range Invariants {
		var vs []Violation
		for _, v := range r.Violations {
			if v.Invariant == inv {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "  (%s): %d distinct (%d in all)\n", inv, len(vs), r.Counts[inv])
		for i, v := range vs {
			if i == 8 {
				fmt.Fprintf(&b, "    … and %d more\n", len(vs)-i)
				break
			}
			fmt.Fprintf(&b, "    %s\n", v.Detail)
		}
	}
	return b.String()
}

// Failed reports whether some invariant was violated (what the spec
// excuses does not count).
func (r *Result) Failed() bool {
	for _, v := range r.Violations {
		if v.Invariant != Excused {
			return true
		}
	}
	return false
}

// Tally counts the distinct violations of each invariant, and what the
// spec excuses, in a line: "a=3 b=0 c=0 d=1 e=5 excused=1".
func (r *Result) Tally() string {
	var parts []string
	count := func(inv Invariant) (n int) {
		for _, v := range r.Violations {
			if v.Invariant == inv {
				n++
			}
		}
		return n
	}
	for _, inv := range Invariants {
		parts = append(parts, fmt.Sprintf("%s=%d", string(inv)[:1], count(inv)))
	}
	parts = append(parts, fmt.Sprintf("excused=%d", count(Excused)))
	return strings.Join(parts, " ")
}

// Stats describes the run in a line, for the log.
func (r *Result) Stats() string {
	status := map[int]int{}
	hung := 0
	for _, a := range r.Answers {
		status[a.Status]++
		if a.Hung {
			hung++
		}
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(status)) {
		parts = append(parts, fmt.Sprintf("%d×%d", s, status[s]))
	}
	var outs []string
	for _, o := range slices.Sorted(maps.Keys(r.Sim.Outcomes)) {
		if n := r.Sim.Outcomes[o]; n > 0 {
			outs = append(outs, fmt.Sprintf("%s %d", o, n))
		}
	}
	slow := slices.Clone(r.Answers)
	slices.SortFunc(slow, func(a, b Answer) int { return int((b.End - b.Start) - (a.End - a.Start)) })
	var slowest []string
	for _, a := range slow[:min(3, len(slow))] {
		s := fmt.Sprintf("#%d %s %d in %.1fs", a.N, a.Kind, a.Status, (a.End - a.Start).Seconds())
		if a.Err != "" {
			s += " (" + a.Err + ")"
		}
		slowest = append(slowest, s)
	}
	met := map[providersim.Fault]int{}
	for _, a := range r.Answers {
		for _, f := range a.Faults {
			if f != providersim.FaultNone {
				met[f]++
			}
			if f == providersim.FaultNoRead && a.Kind == LargeChat && a.Size >= 2<<20 {
				met["no_read of a large body"]++
			}
		}
	}
	var mets []string
	for _, f := range slices.Sorted(maps.Keys(met)) {
		mets = append(mets, fmt.Sprintf("%s %d", f, met[f]))
	}
	m := r.Memory
	return fmt.Sprintf("seed %d: answers %s (hung %d; slowest: %s); provider: %d attempts (%s); faults met by attempts: %s; %d readings of the keys; memory: anonymous RSS %.1f → %.1f MiB, live heap %.1f → %.1f MiB (judged: %s; runtime before: %s; after: %s)",
		r.Plan.Seed, strings.Join(parts, " "), hung, strings.Join(slowest, ", "), r.Sim.Attempts, strings.Join(outs, ", "), strings.Join(mets, ", "), r.Readings,
		mib(m.RSSBase), mib(m.RSSAfter), mib(m.HeapBase), mib(m.HeapAfter), map[bool]string{false: "RSS and heap", true: "heap"}[m.Heap],
		m.DetailBase, m.DetailAfter)
}
