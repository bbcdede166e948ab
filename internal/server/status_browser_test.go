package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/redis/go-redis/v9"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/testredis"
)

// These tests drive a real headless Chromium against a running gpt-load and
// assert on the page as rendered. Without Chromium they skip, except in CI
// (CI=true), where they fail: .ci/run installs it.

// browserWait bounds each wait on the page; generous because the machine
// is shared and the server runs under -race.
const browserWait = 20 * time.Second

// chromium returns the path of a Chromium binary, or "".
func chromium() string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab and everything its console said.
type browser struct {
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
	dialogs []string
}

// newBrowser starts Chromium with a fresh profile, stopped at the end of
// the test.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromium()
	if exe == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed; the status page tests need it in CI (.ci/run installs it: apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium): skipping the status page's browser test; with CI=true this fails")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // root in containers; the page is our own
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)

	b := &browser{ctx: bctx}
	msgs := chromedp.Console(bctx) // also starts the browser
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	// Every dialog is a confirmation of ours: record it and accept it.
	dialogs := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, ev.Message)
			b.mu.Unlock()
			chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return b
}

// do runs actions, failing the test on error.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page into v.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wait waits until the JavaScript condition cond holds in the page, within
// browserWait. The check runs in the page as a promise, not through
// chromedp.Poll, whose new Function the page's policy forbids.
func (b *browser) wait(t *testing.T, what, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	expr := `new Promise(resolve => { const f = () => { let ok = false; try { ok = !!(` + cond +
		`); } catch (e) {} if (ok) resolve(true); else setTimeout(f, 20); }; f(); })`
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise)); err != nil {
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, cond, err, body)
	}
}

// checkConsole fails on anything the page logged as a warning or error,
// an exception or a policy violation. 401 answers are expected network
// entries when the page is asking for a token.
func (b *browser) checkConsole(t *testing.T, allow401 bool) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		switch m.Type {
		case chromedp.ConsoleError, chromedp.ConsoleException, chromedp.ConsoleWarning:
		default:
			continue
		}
		if allow401 && m.Source == "network" && strings.Contains(m.Text, "401") {
			continue
		}
		t.Errorf("console %s (source %q): %s", m.Type, m.Source, m.Text)
	}
}

func (b *browser) dialogCount() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}

// mixedUpstream answers 401 invalid_api_key for bad, 429 with a five-minute
// Retry-After for limited, 404 model_not_found for the model o3-deep with
// noModel, and 200 with OpenAI's rate-limit headers otherwise. The 401
// quotes the whole key, as OpenAI does, so the page must never get to show
// it.
func mixedUpstream(bad, limited, noModel map[string]bool) http.HandlerFunc {
	var left atomic.Int64
	left.Store(5000)
	return func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case noModel[key] && strings.Contains(string(body), `"o3-deep"`):
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"message":"The model o3-deep does not exist or you do not have access to it.","type":"invalid_request_error","code":"model_not_found"}}`))
		case r.URL.Path == "/v1/missing-model":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}`))
		case bad[key]:
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s.","type":"invalid_request_error","code":"invalid_api_key"}}`, key)
		case limited[key]:
			w.Header().Set("Retry-After", "300")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}`))
		default:
			n := left.Add(-1)
			w.Header().Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(n, 10))
			w.Header().Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(n*80, 10))
			w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","choices":[]}`))
		}
	}
}

// mixedServer is gpt-load with AUTH_KEY over 12 keys, driven by real
// requests until 2 are blacklisted, 2 cooling and 8 active.
func mixedServer(t *testing.T) *server {
	t.Helper()
	keys := rawKeys("status", 12)
	bad := map[string]bool{keys[1]: true, keys[6]: true}
	limited := map[string]bool{keys[3]: true, keys[9]: true}
	noModel := map[string]bool{keys[4]: true}
	s := newServer(t, options{keys: keys, env: map[string]string{"AUTH_KEY": testAuthKey}, upstream: mixedUpstream(bad, limited, noModel)})
	want := keymanager.Counts{Total: 12, Active: 8, Cooling: 2, Blacklisted: 2}
	for i := 0; s.Keys.Counts() != want; i++ {
		if i == 100 {
			t.Fatalf("counts after 100 requests = %+v; want %+v", s.Keys.Counts(), want)
		}
		s.do(t, http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[]}`))
	}
	return s
}

// keyRow is a row of the keys table as the page shows it.
type keyRow struct {
	Preview, State, Reason, Rest, Requests, LastStatus string
}

const readKeyRows = `[...document.querySelectorAll('#keys tr')].map(tr => ({
	Preview: tr.cells[0].textContent, State: tr.cells[1].textContent.trim(), Reason: tr.cells[2].textContent,
	Rest: tr.cells[3].textContent, Requests: tr.cells[4].textContent, LastStatus: tr.cells[6].textContent}))`

// checkNoSecrets fails if the page's HTML or text holds a whole key or the
// token.
func checkNoSecrets(t *testing.T, b *browser, s *server) {
	t.Helper()
	dom := eval[string](t, b, `document.documentElement.outerHTML + '\n' + document.body.innerText + '\n' +
		[...document.querySelectorAll('input')].map(i => i.value).join('\n')`)
	checkNoRawKeys(t, "the status page's DOM", dom, s.Raw)
	if strings.Contains(dom, testAuthKey) {
		t.Errorf("the status page's DOM holds the AUTH_KEY")
	}
}

func TestStatusPageBrowser(t *testing.T) {
	s := mixedServer(t)
	b := newBrowser(t)
	b.do(t, "open /status", chromedp.Navigate(s.URL+"/status"))

	t.Run("asks for the token", func(t *testing.T) {
		b.wait(t, "the token form", `!document.getElementById('auth').hidden`)
		if msg := eval[string](t, b, `document.getElementById('auth-msg').textContent`); !strings.Contains(msg, "AUTH_KEY") {
			t.Errorf("token prompt = %q; want it to name AUTH_KEY", msg)
		}
		if eval[bool](t, b, `!document.getElementById('data').hidden`) {
			t.Errorf("key data shown without a token")
		}
		// The overall state comes from /health, which needs no token.
		b.wait(t, "the overall state", `document.getElementById('overall').textContent.includes('degraded')`)
	})

	t.Run("wrong token is refused clearly", func(t *testing.T) {
		// Enter in the field submits, as a person would; the page
		// handles the submit itself (its policy forbids form targets).
		b.do(t, "send a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-token\r"))
		b.wait(t, "the refusal", `document.getElementById('auth-msg').textContent.includes('refused')`)
		if eval[bool](t, b, `!document.getElementById('data').hidden`) {
			t.Errorf("key data shown after a wrong token")
		}
		if got := eval[string](t, b, `sessionStorage.getItem('gpt-load.token') || ''`); got != "" {
			t.Errorf("a refused token stays in sessionStorage")
		}
	})

	t.Run("right token shows every key", func(t *testing.T) {
		b.do(t, "send the token",
			chromedp.SendKeys(chromedp.ID("token"), testAuthKey),
			chromedp.Click(chromedp.CSS("#auth-form button")))
		b.wait(t, "12 key rows", `document.querySelectorAll('#keys tr').length === 12 && !document.getElementById('data').hidden`)
		if got := eval[string](t, b, `sessionStorage.getItem('gpt-load.token')`); got != testAuthKey {
			t.Errorf("sessionStorage token is not the one entered")
		}
		if got := eval[string](t, b, `localStorage.length + document.cookie`); got != "0" {
			t.Errorf("localStorage/cookies = %q; want nothing kept beyond the tab", got)
		}
		rows := eval[[]keyRow](t, b, readKeyRows)
		snaps, _ := s.Keys.Page(keymanager.Filter{}, 0, 100)
		for i, r := range rows {
			want := snaps[i]
			if r.Preview != want.Preview || r.Preview != secret.Mask(s.Raw[i]) {
				t.Errorf("row %d preview = %q; want %q", i, r.Preview, want.Preview)
			}
			if !strings.HasSuffix(r.State, want.State.String()) || !strings.ContainsAny(r.State, "✓◷✕") {
				t.Errorf("row %d state = %q; want an icon and %q", i, r.State, want.State)
			}
			switch want.State {
			case keymanager.Cooling:
				if !strings.HasPrefix(r.Rest, "in 4m") && !strings.HasPrefix(r.Rest, "in 5m") {
					t.Errorf("row %d (cooling) rest = %q; want a countdown of about 5 minutes", i, r.Rest)
				}
				if r.LastStatus != "429" {
					t.Errorf("row %d (cooling) last status = %q; want 429", i, r.LastStatus)
				}
			case keymanager.Blacklisted:
				if r.Rest != "until reset" || r.LastStatus != "401" || r.Reason == "" || r.Reason == "—" {
					t.Errorf("row %d (blacklisted) = %+v; want a reason, until reset, 401", i, r)
				}
			}
			if r.Requests != strconv.FormatUint(want.Requests, 10) {
				t.Errorf("row %d requests = %q; want %d", i, r.Requests, want.Requests)
			}
		}
		counts := eval[[]string](t, b, `['c-total','c-active','c-cooling','c-blacklisted'].map(id => document.getElementById(id).textContent)`)
		if strings.Join(counts, " ") != "12 8 2 2" {
			t.Errorf("counts = %v; want 12 8 2 2", counts)
		}
		if got := eval[string](t, b, `document.querySelector('#targets tr').textContent`); !strings.Contains(got, s.Up.URL) || !strings.Contains(got, "active") {
			t.Errorf("targets row = %q; want %s and active", got, s.Up.URL)
		}
		checkNoSecrets(t, b, s)
	})

	t.Run("refresh updates rows in place", func(t *testing.T) {
		// A mark on the DOM nodes survives a refresh only if the rows
		// are updated, not redrawn (which is what flickers).
		before := eval[string](t, b, `(document.querySelector('#keys tr').dataset.mark = 'kept', document.getElementById('updated').textContent)`)
		b.wait(t, "the next refresh", `document.getElementById('updated').textContent !== `+jsString(before))
		if got := eval[string](t, b, `document.querySelector('#keys tr').dataset.mark || ''`); got != "kept" {
			t.Errorf("first row after a refresh is a new node; want the same row updated in place")
		}
	})

	if dir := os.Getenv("STATUS_SCREENSHOT_DIR"); dir != "" {
		screenshot(t, b, s, filepath.Join(dir, "status-page.png"))
	}

	t.Run("countdown runs", func(t *testing.T) {
		first := eval[string](t, b, `document.querySelector('#keys td[data-until]').textContent`)
		b.wait(t, "the countdown to move", `document.querySelector('#keys td[data-until]').textContent !== `+jsString(first))
	})

	t.Run("filters by state with the keyboard, and by text", func(t *testing.T) {
		b.do(t, "press Enter on the cooling count",
			chromedp.Focus(chromedp.CSS(`#counts .card[data-state=cooling]`)),
			chromedp.KeyEvent("\r"))
		b.wait(t, "two cooling rows", `document.querySelectorAll('#keys tr').length === 2 &&
			[...document.querySelectorAll('#keys tr')].every(tr => tr.cells[1].textContent.includes('cooling'))`)
		if got := eval[string](t, b, `document.getElementById('range').textContent`); got != "1–2 of 2 matching" {
			t.Errorf("range = %q; want 1–2 of 2 matching", got)
		}
		b.do(t, "back to all keys", chromedp.Click(chromedp.CSS(`#counts .card[data-state=""]`)))
		b.wait(t, "12 rows", `document.querySelectorAll('#keys tr').length === 12`)
		want := secret.Mask(s.Raw[4])
		b.do(t, "search a preview", chromedp.SendKeys(chromedp.ID("f-q"), want))
		b.wait(t, "one row", `document.querySelectorAll('#keys tr').length === 1 && document.querySelector('#keys td').textContent === `+jsString(want))
		b.do(t, "clear the search", chromedp.SendKeys(chromedp.ID("f-q"), strings.Repeat(kb.Backspace, utf8.RuneCountInString(want))))
		b.wait(t, "12 rows", `document.querySelectorAll('#keys tr').length === 12`)
	})

	t.Run("reset keys after a confirmation", func(t *testing.T) {
		b.do(t, "click reset", chromedp.Click(chromedp.ID("reset")))
		b.wait(t, "the reset result", `document.getElementById('result').textContent.includes('Keys reset')`)
		if d := b.dialogCount(); len(d) != 1 || !strings.Contains(d[0], "Reset every key") {
			t.Errorf("dialogs = %q; want one confirmation", d)
		}
		if got, want := s.Keys.Counts(), (keymanager.Counts{Total: 12, Active: 12}); got != want {
			t.Errorf("counts after the page's reset = %+v; want %+v", got, want)
		}
		b.wait(t, "the page to show no blacklisted key", `document.getElementById('c-blacklisted').textContent === '0' &&
			document.getElementById('overall').textContent.includes('healthy')`)
	})

	b.checkConsole(t, true)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestStatusPageBrowserLargePool: 100,000 keys render as one page of rows,
// pages and filters go to the server, and the page reads on a phone in the
// dark scheme. The time to the first full render is logged for the closing
// note of issue 12.
func TestStatusPageBrowserLargePool(t *testing.T) {
	const n = 100_000
	s := newServer(t, options{keys: rawKeys("big", n)})
	for i, k := range s.Keys.Keys() {
		switch {
		case i%20 == 0:
			s.Keys.Blacklist(k, "invalid_api_key", http.StatusUnauthorized)
		case i%10 == 1:
			s.Keys.Cool(k, time.Now().Add(time.Hour), "rate_limit_exceeded", http.StatusTooManyRequests)
		}
	}
	b := newBrowser(t)
	start := time.Now()
	b.do(t, "open /status", chromedp.Navigate(s.URL+"/status"))
	b.wait(t, "the first page of keys", `document.body.dataset.rendered && document.querySelectorAll('#keys tr').length > 0`)
	took := time.Since(start)
	inPage := eval[string](t, b, `document.body.dataset.rendered`)
	t.Logf("%d keys: first page rendered %v after navigation (%s ms after the page started)", n, took.Round(time.Millisecond), inPage)

	rows := func() int { return eval[int](t, b, `document.querySelectorAll('#keys tr').length`) }
	if got := rows(); got != 100 {
		t.Errorf("rows = %d; want the page size, 100", got)
	}
	if got := eval[string](t, b, `document.getElementById('range').textContent`); got != "1–100 of 100,000" {
		t.Errorf("range = %q; want 1–100 of 100,000", got)
	}
	b.do(t, "next page", chromedp.Click(chromedp.ID("next")))
	b.wait(t, "the second page", `document.getElementById('range').textContent === '101–200 of 100,000' &&
		document.querySelector('#keys td').textContent === `+jsString(secret.Mask(s.Raw[100])))
	b.do(t, "show blacklisted keys", chromedp.Click(chromedp.CSS(`#counts .card[data-state=blacklisted]`)))
	b.wait(t, "blacklisted keys only", `document.getElementById('range').textContent === '1–100 of 5,000 matching'`)
	if got := rows(); got > 100 {
		t.Errorf("rows = %d; want at most 100", got)
	}
	b.do(t, "show all", chromedp.Click(chromedp.CSS(`#counts .card[data-state=""]`)))
	b.wait(t, "all keys", `document.getElementById('range').textContent === '1–100 of 100,000'`)

	t.Run("phone, dark", func(t *testing.T) {
		light := eval[string](t, b, `getComputedStyle(document.body).backgroundColor`)
		if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		}); err != nil {
			t.Fatalf("emulate dark scheme: %v", err)
		}
		b.do(t, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		b.wait(t, "the dark scheme", `getComputedStyle(document.body).backgroundColor !== `+jsString(light))
		// The page itself never scrolls sideways; wide tables scroll in
		// their own box.
		if w := eval[[]int](t, b, `[Math.max(document.documentElement.scrollWidth,
				...[...document.querySelectorAll('.panel, header')].map(e => Math.ceil(e.getBoundingClientRect().right))),
				document.documentElement.clientWidth]`); w[0] > w[1] || w[1] != 390 {
			t.Errorf("page is %d px wide in a %d px viewport; want no sideways scroll in 390 px", w[0], w[1])
		}
		if dir := os.Getenv("STATUS_SCREENSHOT_DIR"); dir != "" {
			shot, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			if err := os.WriteFile(filepath.Join(dir, "status-page-phone-dark.png"), shot, 0o644); err != nil {
				t.Fatalf("write screenshot: %v", err)
			}
		}
	})
	b.checkConsole(t, false)
}

// screenshot writes a PNG of the page after a few refreshes with traffic,
// so the charts have something to draw. Run with STATUS_SCREENSHOT_DIR=docs
// to refresh docs/status-page.png.
func screenshot(t *testing.T, b *browser, s *server, path string) {
	t.Helper()
	// One key may not use o3-deep: ask for it until the key is excluded.
	for i := 0; len(s.Keys.Keys()[4].Snapshot().Models) == 0; i++ {
		if i == 50 {
			t.Fatalf("key 4 not excluded for o3-deep after 50 requests")
		}
		s.do(t, http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"o3-deep","messages":[]}`))
	}
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	until := time.Now().Add(12 * time.Second)
	for i := 0; time.Now().Before(until); i++ {
		<-tick.C
		if i%4 == 0 {
			s.do(t, http.MethodGet, "/v1/missing-model", nil)
		}
		s.do(t, http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o","messages":[]}`))
	}
	b.wait(t, "charts with data", `!document.getElementById('v-rate').textContent.includes('collecting')`)
	shot, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(shot))
}

// TestStatusPageNoPileUp: while the proxy does not answer, the page sends
// no second request; it gives up after its timeout, says so, and carries on
// when the proxy answers again.
func TestStatusPageNoPileUp(t *testing.T) {
	s := newServer(t, options{})
	target, _ := url.Parse(s.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var (
		hold              atomic.Bool
		inflight, maxSeen atomic.Int32
		started           atomic.Int32
	)
	hold.Store(true)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stats" {
			started.Add(1)
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
			}
			if hold.Load() {
				<-r.Context().Done() // the page gives up
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	b := newBrowser(t)
	b.do(t, "open /status", chromedp.Navigate(front.URL+"/status"))
	b.wait(t, "the timeout notice", `document.getElementById('notice').textContent.includes('did not answer within 10 s')`)
	if got := started.Load(); got != 1 {
		t.Errorf("/stats requests while the first hung for 10 s = %d; want 1", got)
	}
	hold.Store(false)
	b.wait(t, "the keys once the proxy answers", `document.querySelectorAll('#keys tr').length === 3 && document.getElementById('notice').hidden`)
	if got := maxSeen.Load(); got != 1 {
		t.Errorf("most /stats requests in flight at once = %d; want 1", got)
	}
	// The abort shows in the console as a failed fetch at most; the page
	// itself logs nothing.
	b.mu.Lock()
	for _, m := range b.console {
		if m.Source != "network" && m.Type != chromedp.ConsoleLog {
			t.Errorf("console %s (source %q): %s", m.Type, m.Source, m.Text)
		}
	}
	b.mu.Unlock()
}

// TestStatusPageNewKeyFields: the page shows a key's reason, quota and
// excluded models when /stats gives them, and copes when it does not (the
// other tests). A front server adds the fields to a real /stats answer.
func TestStatusPageNewKeyFields(t *testing.T) {
	s := newServer(t, options{keys: rawKeys("fields", 2)})
	target, _ := url.Parse(s.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	seen := time.Now().Add(-2 * time.Minute).UTC().Format(time.RFC3339)
	until := time.Now().Add(42 * time.Minute).UTC().Format(time.RFC3339)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/stats" {
			return nil
		}
		var st map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		resp.Body.Close()
		details, _ := st["key_details"].([]any)
		for i, d := range details {
			d := d.(map[string]any)
			d["reason"] = ""
			d["quota"] = nil
			d["models_excluded"] = []any{}
			if i == 0 {
				d["reason"] = "served from the front"
				d["quota"] = map[string]any{"requests_remaining": 12, "tokens_remaining": 3400, "reset_at": nil, "seen_at": seen}
				d["models_excluded"] = []any{map[string]any{"model": "gpt-4o", "until": until}}
			}
		}
		body, _ := json.Marshal(st)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	front := httptest.NewServer(rp)
	t.Cleanup(front.Close)

	b := newBrowser(t)
	b.do(t, "open /status", chromedp.Navigate(front.URL+"/status"))
	b.wait(t, "two rows", `document.querySelectorAll('#keys tr').length === 2`)
	cells := eval[[][]string](t, b, `[...document.querySelectorAll('#keys tr')].map(tr => [...tr.cells].map(td => td.textContent))`)
	if got := cells[0][2]; got != "served from the front" {
		t.Errorf("reason = %q; want the one /stats gave", got)
	}
	// seen_at is two minutes ago to the second, and the page takes a
	// moment to render it.
	if got := cells[0][7]; !regexp.MustCompile(`^12 req · 3.4K tok \(2m 0\ds ago\)$`).MatchString(got) {
		t.Errorf("quota = %q; want 12 req · 3.4K tok (2m 0Ns ago)", got)
	}
	if got := cells[0][8]; !regexp.MustCompile(`^gpt-4o \(4[12]m \d\ds\)$`).MatchString(got) {
		t.Errorf("models excluded = %q; want gpt-4o (41m NNs)", got)
	}
	if got := cells[1][7] + cells[1][8]; got != "——" {
		t.Errorf("quota and models of a key without them = %q; want — and —", got)
	}
	b.checkConsole(t, false)
}

// TestStatusPageCluster: with state shared through Redis, the page shows
// Redis' state and the cluster's totals.
func TestStatusPageCluster(t *testing.T) {
	// A real Redis holding the totals other replicas flushed.
	rs := testredis.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	defer rdb.Close()
	if err := rdb.HSet(t.Context(), "{gpt-load:}counters", "total", 18342, "success", 18127, "failure", 215, "retries", 96).Err(); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, options{env: map[string]string{"REDIS_URL": rs.URL}})
	b := newBrowser(t)
	b.do(t, "open /status", chromedp.Navigate(s.URL+"/status"))
	b.wait(t, "the cluster totals", `!document.getElementById('cluster').hidden`)
	got := eval[string](t, b, `document.getElementById('cluster').textContent`)
	for _, want := range []string{"redis✓ up", "cluster requests18,342", "succeeded18,127", "failed215", "retries96"} {
		if !strings.Contains(got, want) {
			t.Errorf("cluster panel = %q; want it to contain %q", got, want)
		}
	}
	b.checkConsole(t, false)
}

// TestStatusPageReasonFromBlacklist: against a proxy whose key_details
// carry no reason (an older gpt-load), the page takes the reasons of keys
// out of rotation from /blacklist.
func TestStatusPageReasonFromBlacklist(t *testing.T) {
	s := newServer(t, options{keys: rawKeys("old", 3)})
	s.Keys.Blacklist(s.Keys.Keys()[1], "invalid_api_key", http.StatusUnauthorized)
	target, _ := url.Parse(s.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	var blacklistCalls atomic.Int32
	rp.ModifyResponse = func(resp *http.Response) error {
		switch resp.Request.URL.Path {
		case "/blacklist":
			blacklistCalls.Add(1)
			return nil
		case "/stats":
		default:
			return nil
		}
		var st map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		resp.Body.Close()
		details, _ := st["key_details"].([]any)
		for _, d := range details {
			delete(d.(map[string]any), "reason")
		}
		body, _ := json.Marshal(st)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	front := httptest.NewServer(rp)
	t.Cleanup(front.Close)

	b := newBrowser(t)
	b.do(t, "open /status", chromedp.Navigate(front.URL+"/status"))
	b.wait(t, "the reason from /blacklist", `document.querySelectorAll('#keys tr').length === 3 &&
		document.querySelectorAll('#keys tr')[1].cells[2].textContent === 'invalid_api_key'`)
	if blacklistCalls.Load() == 0 {
		t.Errorf("/blacklist was not asked")
	}
	b.checkConsole(t, false)
}

// TestStatusPageGroups: with GROUPS_DIR the page lists each group's keys
// and requests, and names the group of every upstream and key.
func TestStatusPageGroups(t *testing.T) {
	f := newGroupsFixture(t)
	send(t, http.MethodPost, f.srv.URL+"/proxy/backup/v1/chat/completions", adminToken, chat("x"))
	b := newBrowser(t)
	b.do(t, "open /status", chromedp.Navigate(f.srv.URL+"/status"))
	b.wait(t, "the token form", `!document.getElementById('auth').hidden`)
	b.do(t, "enter the token", chromedp.SendKeys(chromedp.ID("token"), adminToken+"\r"))
	b.wait(t, "the groups panel", `!document.getElementById('groups-panel').hidden && document.getElementById('groups').rows.length === 3`)
	rows := eval[[][]string](t, b, `[...document.getElementById('groups').rows].map(r => [...r.cells].map(c => c.textContent))`)
	want := [][]string{
		{"backup", "1 / 1", "0", "0", "1", "0", "0"},
		{"claude", "1 / 1", "0", "0", "0", "0", "0"},
		{"openai", "2 / 2", "0", "0", "0", "0", "0"},
	}
	if fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Errorf("groups table = %v; want %v", rows, want)
	}
	targets := eval[string](t, b, `document.getElementById('targets').textContent`)
	for _, g := range []string{"backup: ", "claude: ", "openai: "} {
		if !strings.Contains(targets, g) {
			t.Errorf("upstreams table lacks %q: %s", g, targets)
		}
	}
	// The page asked without a token first: its 401 is expected.
	b.checkConsole(t, true)
}
