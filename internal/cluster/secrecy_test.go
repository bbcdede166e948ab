package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/cluster"
	"github.com/gpt-load/gpt-load/internal/testupstream"
)

// window is how long a piece of a key may not appear anywhere in Redis.
const window = 20

// digitlessKey is a key without digits: secret.Redact does not see it as
// key-shaped, so only the fingerprinting keeps it out of Redis.
func digitlessKey(seed uint64) string {
	const letters = "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
	r := rand.New(rand.NewPCG(seed, 0xd1617))
	var b strings.Builder
	b.WriteString("sk-proj-")
	for range 40 {
		b.WriteByte(letters[r.IntN(len(letters))])
	}
	return b.String()
}

// quotingError answers status with an error body that quotes a key in
// every field a provider might put it in: quoted, or the request's key
// when quoted is empty.
func quotingError(status int, quoted string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k := quoted
		if k == "" {
			k = testupstream.KeyOf(r.Header)
		}
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, status, fmt.Sprintf(
			`{"error":{"message":"Incorrect API key provided: %s.","type":"%s","param":"%s","code":"%s"}}`, k, k, k, k))
	}
}

// assertNoKeyIn fails if text holds any window-long piece of a key, in
// any case: a key with its case folded is most of the key.
func assertNoKeyIn(t *testing.T, what, text string, keys []string) {
	t.Helper()
	folded := strings.ToLower(text)
	for _, k := range keys {
		for i := 0; i+window <= len(k); i++ {
			if strings.Contains(folded, strings.ToLower(k[i:i+window])) {
				t.Errorf("%s holds characters %d-%d of the key %s:\n%s", what, i, i+window, preview(k), text)
				break
			}
		}
	}
}

// monitor records every command Redis runs, as MONITOR prints them, over
// its own connection (go-redis's Monitor is not race-free).
type monitor struct {
	conn net.Conn
	done chan struct{}
	once sync.Once

	mu sync.Mutex
	b  strings.Builder
}

func startMonitor(t testing.TB, addr string) *monitor {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR answered %q, %v", line, err)
	}
	m := &monitor{conn: c, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			m.mu.Lock()
			m.b.WriteString(line)
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() { m.stop() })
	return m
}

// stop ends the recording and returns what was recorded.
func (m *monitor) stop() string {
	m.once.Do(func() {
		m.conn.Close()
		<-m.done
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b.String()
}

// listener records every message published on a channel.
type listener struct {
	ps   *redis.PubSub
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	msgs []string
}

func listen(t testing.TB, rdb *redis.Client, channel string) *listener {
	t.Helper()
	ps := rdb.Subscribe(context.Background(), channel)
	if _, err := ps.Receive(context.Background()); err != nil { // the confirmation
		t.Fatalf("SUBSCRIBE %s: %v", channel, err)
	}
	l := &listener{ps: ps, done: make(chan struct{})}
	ch := ps.Channel()
	go func() {
		defer close(l.done)
		for m := range ch {
			l.mu.Lock()
			l.msgs = append(l.msgs, m.Payload)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *listener) stop() string {
	l.once.Do(func() {
		l.ps.Close()
		<-l.done
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

// dumpRedis returns every key in Redis with its type and value.
func dumpRedis(t testing.TB, rdb *redis.Client) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		name := iter.Val()
		typ := rdb.Type(ctx, name).Val()
		var val any
		switch typ {
		case "none":
			continue // expired meanwhile
		case "string":
			val = rdb.Get(ctx, name).Val()
		case "hash":
			val = rdb.HGetAll(ctx, name).Val()
		case "list":
			val = rdb.LRange(ctx, name, 0, -1).Val()
		case "set":
			val = rdb.SMembers(ctx, name).Val()
		case "zset":
			val = rdb.ZRangeWithScores(ctx, name, 0, -1).Val()
		default:
			t.Errorf("Redis key %q has type %s, which this dump cannot read", name, typ)
		}
		fmt.Fprintf(&b, "%s (%s) = %v\n", name, typ, val)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestNoRawKeyReachesRedis(t *testing.T) {
	f := newFixture(t, 10, 3)
	// Keys with digits, whose quotes a redactor would mask, and keys
	// without, which it would not; every failing key's error quotes it.
	invalid, noDigitsInvalid, noDigitsLimited := f.Keys[2], digitlessKey(1), digitlessKey(2)
	keys := append(f.Keys[:2:2], invalid, noDigitsInvalid, noDigitsLimited)
	f.opts.KeysFile = writeKeysFile(t, keys)
	f.Script.set(invalid, quotingError(http.StatusUnauthorized, ""))
	f.Script.set(noDigitsInvalid, quotingError(http.StatusUnauthorized, ""))
	f.Script.set(noDigitsLimited, quotingError(http.StatusTooManyRequests, ""))
	// A second upstream fails with 503 quoting one of the keys: its bench
	// reason comes from that body.
	broken := testupstream.New(t, quotingError(http.StatusServiceUnavailable, noDigitsInvalid))

	rdb := redisClient(t, f.Redis)
	mon := startMonitor(t, f.Redis.Addr)
	events := listen(t, rdb, channelName(defaultPrefix))

	opts := func(o *replicaOpts) {
		o.Upstreams = []string{f.Upstream.URL, broken.URL}
		o.Recheck = 300 * time.Millisecond // the re-checks are answered with quotes too
	}
	a, b := f.replica(t, "a", opts), f.replica(t, "b", opts)
	for _, k := range []string{invalid, noDigitsInvalid, noDigitsLimited} {
		blacklistThrough(t, a, k)
		waitFor(t, propagation, "b shows "+preview(k), func() bool {
			_, ok := b.benched(t, k)
			return ok
		})
	}
	waitFor(t, 5*time.Second, "b shows the broken upstream benched", func() bool {
		b.send(t)
		for _, ts := range b.stats(t).Targets {
			if ts.URL == broken.URL && ts.State == "benched" {
				return true
			}
		}
		return false
	})
	checks := func() (n int) {
		for _, r := range f.Upstream.Requests() {
			if r.Method == http.MethodGet && r.Path == "/v1/models" {
				n++
			}
		}
		return n
	}
	waitFor(t, 5*time.Second, "two re-checks", func() bool { return checks() >= 2 })

	stored := dumpRedis(t, rdb)
	if status := b.do(t, http.MethodPost, "/reset-keys", nil); status != http.StatusOK {
		t.Fatalf("b: POST /reset-keys = %d; want 200", status)
	}
	waitFor(t, propagation, "a's /blacklist empties after the reset", func() bool { return a.blacklist(t).Count == 0 })
	stored += dumpRedis(t, rdb)
	commands, published := mon.stop(), events.stop()

	// The checks below only mean something if the states did go through
	// Redis, under their fingerprints.
	for _, k := range []string{invalid, noDigitsInvalid, noDigitsLimited} {
		fp := cluster.Fingerprint(fpSecret, k)
		if !strings.Contains(stored, keyName(defaultPrefix, k)) {
			t.Errorf("Redis did not hold the state of %s under its fingerprint:\n%s", preview(k), stored)
		}
		if !strings.Contains(published, fp) {
			t.Errorf("no event about %s was published:\n%s", preview(k), published)
		}
	}
	if !strings.Contains(commands, "PUBLISH") && !strings.Contains(commands, `"publish"`) {
		t.Errorf("MONITOR saw no PUBLISH:\n%s", commands)
	}
	if !strings.Contains(stored, "{"+defaultPrefix+"}target:") {
		t.Errorf("Redis did not hold the benched target:\n%s", stored)
	}

	assertNoKeyIn(t, "stored data", stored, keys)
	assertNoKeyIn(t, "published messages", published, keys)
	assertNoKeyIn(t, "commands", commands, keys)
}

func TestPrefixIsolation(t *testing.T) {
	tests := []struct {
		name         string
		mine, theirs string
	}{
		{"distinct", "alpha:", "beta:"},
		// A prefix with glob characters must not reach another's keys
		// through SCAN patterns.
		{"star", "dep*:", "dep1:"},
		{"character class", "dep[0-9]:", "dep1:"},
		{"question mark", "dep?:", "dep1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 11, 3)
			bad := f.Keys[0]
			f.Script.set(bad, onlyFrom("theirs", invalidKey))
			rdb := redisClient(t, f.Redis)
			prefix := func(p string) func(*replicaOpts) { return func(o *replicaOpts) { o.Prefix = p } }
			theirs := f.replica(t, "theirs", prefix(tt.theirs))
			witness := f.replica(t, "witness", prefix(tt.theirs)) // shares theirs' prefix: the control
			mine := f.replica(t, "mine", prefix(tt.mine))

			blacklistThrough(t, theirs, bad)
			waitFor(t, propagation, "a replica with the same prefix shows the key", func() bool {
				_, ok := witness.benched(t, bad)
				return ok
			})
			if got, ok := mine.benched(t, bad); ok {
				t.Errorf("prefix %q shows a key blacklisted under %q: %+v", tt.mine, tt.theirs, got)
			}

			mine.sendOK(t, 4)
			waitFor(t, propagation+500*time.Millisecond, "each prefix counts its own requests", func() bool {
				st, sw, sm := theirs.stats(t), witness.stats(t), mine.stats(t)
				return sm.Cluster.TotalCount == 4 &&
					st.Cluster.TotalCount == int64(st.Requests.TotalCount+sw.Requests.TotalCount)
			})

			if status := mine.do(t, http.MethodPost, "/reset-keys", nil); status != http.StatusOK {
				t.Fatalf("POST /reset-keys = %d; want 200", status)
			}
			name := keyName(tt.theirs, bad)
			if rdb.Exists(context.Background(), name).Val() != 1 {
				t.Errorf("a reset under %q deleted %s", tt.mine, name)
			}
			if _, ok := theirs.benched(t, bad); !ok {
				t.Errorf("a reset under %q cleared a replica under %q", tt.mine, tt.theirs)
			}
			if _, ok := f.replica(t, "late-theirs", prefix(tt.theirs)).benched(t, bad); !ok {
				t.Errorf("a replica started under %q after a reset under %q does not show the key", tt.theirs, tt.mine)
			}
			if _, ok := f.replica(t, "late-mine", prefix(tt.mine)).benched(t, bad); ok {
				t.Errorf("a replica started under %q shows a key blacklisted under %q", tt.mine, tt.theirs)
			}
		})
	}
}
