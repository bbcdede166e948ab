// Command scenarios measures gpt-load against the provider simulator
// (internal/providersim) through the situations of issue 9: per-account
// limits with and without rate-limit headers, revoked and out-of-quota
// keys, keys without a model, an IP-wide 429 storm, bursts of concurrent
// streams, client mistakes and a target down; issue 18's hostile
// clients (content the provider refuses whatever the key); and issue
// 21's groups (a primary pool running out of quota, falling back). `make
// scenarios` runs it; -only names the scenarios to run.
//
// It builds gpt-load from this tree, and for each scenario starts a
// simulator on loopback, writes a keys file (or, for groups, GROUPS_DIR),
// starts the gpt-load binary with the scenario's environment, sends
// open-loop traffic (a fixed arrival rate, some of it streaming, some of
// it the client's own mistakes) for -duration, then reads the simulator's
// counts and gpt-load's /stats?keys=1 and prints one table row.
// Everything listens on 127.0.0.1, every wait is bounded, and every
// process it starts is stopped before it returns.
package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
	"github.com/gpt-load/gpt-load/internal/wait"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "scenarios:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("duration", 20*time.Second, "traffic per scenario")
	only := fs.String("only", "", "comma-separated scenario names to run (default all)")
	out := fs.String("out", "", "Markdown file to write the table into, e.g. docs/scenarios.md (default: print only)")
	title := fs.String("title", "Latest run", "section heading the table goes under in -out; a section of that name is replaced")
	bin := fs.String("gpt-load", "", "gpt-load binary to measure (default: build ./cmd/gpt-load)")
	rev := fs.String("rev", "", "build gpt-load from this git revision instead of the working tree, e.g. a commit before a change")
	keep := fs.Bool("keep", false, "keep the work directory (keys files, gpt-load logs)")
	list := fs.Bool("list", false, "list the scenarios and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	all := scenarios()
	if *list {
		for _, s := range all {
			fmt.Fprintf(stdout, "%-18s %s\n%-18s target: %s\n", s.name, s.setup, "", s.target)
		}
		return nil
	}
	var chosen []scenario
	for _, s := range all {
		if *only == "" || slices.Contains(strings.Split(*only, ","), s.name) {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		return fmt.Errorf("-only %q: no such scenario (see -list)", *only)
	}
	if *dur < 5*time.Second || *dur > 5*time.Minute {
		return fmt.Errorf("-duration %v: want 5s to 5m", *dur)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "gpt-load-scenarios-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(stderr, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	commit := gitDescribe(*out)
	switch {
	case *bin != "" && *rev != "":
		return errors.New("-gpt-load and -rev: give one")
	case *bin != "":
		commit = "binary " + *bin
	default:
		src := "."
		if *rev != "" {
			src = filepath.Join(work, "src")
			if err := checkout(ctx, *rev, src); err != nil {
				return err
			}
			commit = revision(*rev)
		}
		*bin, err = filepath.Abs(filepath.Join(work, "gpt-load"))
		if err != nil {
			return err
		}
		fmt.Fprintln(stderr, "building gpt-load")
		b := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/gpt-load")
		b.Dir, b.Stdout, b.Stderr = src, stderr, stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/gpt-load (run from the repository root): %w", err)
		}
	}
	started := time.Now().UTC()

	var reports []*report
	for i, s := range chosen {
		fmt.Fprintf(stderr, "[%d/%d] %s: %s\n", i+1, len(chosen), s.name, s.setup)
		r := runScenario(ctx, s, *bin, filepath.Join(work, s.name), *dur)
		reports = append(reports, r)
		if r.err != nil {
			fmt.Fprintf(stderr, "  failed: %v\n", r.err)
		} else {
			fmt.Fprintf(stderr, "  success %.2f %%, %.2f attempts/request, %d upstream 429s\n", r.success(), r.attemptsPerRequest(), r.tooMany())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	table := tableHeader
	for _, r := range reports {
		table += r.row()
	}
	fmt.Fprint(stdout, table)
	if *out == "" {
		return nil
	}
	section := fmt.Sprintf("Run %s, gpt-load at %s, %v of open-loop traffic per scenario, %s/%s, %d CPUs (shared).\n\n%s",
		started.Format("2006-01-02 15:04 UTC"), commit, *dur, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), table)
	if err := writeSection(*out, *title, section); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote the table under %q in %s\n", *title, *out)
	return nil
}

// gitDescribe names the commit measured and the last commit that changed
// the proxy's code (the runner's, the simulator's and the chaos harness's
// commits change neither).
func gitDescribe(out string) string {
	b, err := exec.Command("git", "describe", "--always", "--exclude", "*").Output()
	if err != nil {
		return "unknown commit"
	}
	s := "commit " + strings.TrimSpace(string(b))
	// Changes count, except to the file the tables go into.
	st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	for _, l := range strings.Split(strings.TrimSpace(string(st)), "\n") {
		if l != "" && (out == "" || !strings.HasSuffix(l, " "+filepath.ToSlash(filepath.Clean(out)))) {
			s += " with uncommitted changes"
			break
		}
	}
	p, err := exec.Command("git", "log", "-1", "--format=%h %s", "--", "cmd/gpt-load", "internal",
		":(exclude)internal/providersim", ":(exclude)internal/chaos").Output()
	if err == nil && len(p) > 0 {
		s += " (proxy code last changed in " + strings.TrimSpace(string(p)) + ")"
	}
	return s
}

// checkout writes the tree of git revision rev into dir.
func checkout(ctx context.Context, rev, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var errBuf strings.Builder
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			cmd.Wait()
			return fmt.Errorf("git archive %s: %w %s", rev, err, errBuf.String())
		}
		name := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(name, filepath.Clean(dir)+string(filepath.Separator)) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(name, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(name), 0o755); err == nil {
				var f *os.File
				if f, err = os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644); err == nil {
					_, err = io.Copy(f, tr)
					f.Close()
				}
			}
		}
		if err != nil {
			cmd.Wait()
			return err
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w %s", rev, err, strings.TrimSpace(errBuf.String()))
	}
	return nil
}

// revision names git revision rev for the table's header.
func revision(rev string) string {
	b, err := exec.Command("git", "log", "-1", "--format=%h %s", rev).Output()
	if err != nil {
		return "revision " + rev
	}
	return "commit " + strings.TrimSpace(string(b))
}

// runScenario runs s and measures it; errors land in the report.
func runScenario(ctx context.Context, s scenario, bin, dir string, d time.Duration) *report {
	r := &report{sc: s, duration: d}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.err = err
		return r
	}
	sim, err := providersim.Start(s.sim)
	if err != nil {
		r.err = fmt.Errorf("simulator: %w", err)
		return r
	}
	defer sim.Close()

	port, err := freePort()
	if err != nil {
		r.err = err
		return r
	}
	env := map[string]string{
		"HOST": "127.0.0.1", "PORT": fmt.Sprint(port), "KEYS_FILE": "keys.txt",
		"OPENAI_BASE_URL": strings.Join(sim.URLs(), ","),
		"LOG_LEVEL":       "warn", "LOG_ENABLE_REQUEST": "false",
	}
	for k, v := range s.env {
		env[k] = v
	}
	if len(s.groups) > 0 {
		// The groups hold every key: no top-level keys file.
		delete(env, "KEYS_FILE")
		env["GROUPS_DIR"] = "groups"
		err = writeGroups(filepath.Join(dir, "groups"), s)
	} else {
		err = writeKeys(filepath.Join(dir, "keys.txt"), s.sim.Keys, nil)
	}
	if err != nil {
		r.err = err
		return r
	}
	logPath := filepath.Join(dir, "gpt-load.log")
	proc, err := startProxy(ctx, bin, dir, env, logPath)
	if err != nil {
		r.err = err
		return r
	}
	defer proc.stop()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
	}}
	defer client.CloseIdleConnections()
	if err := proc.waitReady(ctx, client, base); err != nil {
		r.err = fmt.Errorf("%w; gpt-load log: %s", err, tail(logPath))
		return r
	}

	reqs := plan(s, d)
	sim.Reset() // the clock, limit windows and episodes start with the traffic
	start := time.Now()
	r.start = start
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for _, off := range s.probes {
			if !wait.Until(ctx, start.Add(off)) {
				return
			}
			p := &probe{offset: off, at: time.Now()}
			p.keys, _, p.err = proxyKeys(ctx, client, base)
			r.probes = append(r.probes, p)
		}
	}()
	r.results = drive(ctx, client, base, reqs, start, 30*time.Second)
	<-probed

	r.statsAt = time.Now()
	if r.keys, r.targetsBenched, err = proxyKeys(ctx, client, base); err != nil {
		r.err = err
		return r
	}
	if r.sim, err = providersim.FetchStats(ctx, client, sim.ControlURL()); err != nil {
		r.err = err
		return r
	}
	proc.stop() // flushes its log
	r.targetBenchings = countBenchings(logPath)
	r.compute()
	return r
}

// writeKeys writes a keys file of the keys of ks at the indexes given,
// or of every key when indexes is nil.
func writeKeys(path string, ks []providersim.Key, indexes []int) error {
	var b strings.Builder
	for i, k := range ks {
		if indexes == nil || slices.Contains(indexes, i) {
			b.WriteString(k.Key + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeGroups lays out GROUPS_DIR for s in dir (docs/groups.md, "Folder
// layout"): NAME/keys.txt with the group's keys, NAME/group.env with its
// settings.
func writeGroups(dir string, s scenario) error {
	for _, g := range s.groups {
		gd := filepath.Join(dir, g.name)
		if err := os.MkdirAll(gd, 0o700); err != nil {
			return err
		}
		if err := writeKeys(filepath.Join(gd, "keys.txt"), s.sim.Keys, g.keys); err != nil {
			return err
		}
		var env strings.Builder
		for _, k := range slices.Sorted(maps.Keys(g.env)) {
			fmt.Fprintf(&env, "%s=%s\n", k, g.env[k])
		}
		if err := os.WriteFile(filepath.Join(gd, "group.env"), []byte(env.String()), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// countBenchings counts the times gpt-load's log says it benched a target
// (a warning, so it is logged at LOG_LEVEL=warn): /stats shows only the
// state at the moment it is read.
func countBenchings(logPath string) int {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return -1
	}
	return strings.Count(string(b), `msg="upstream benched`)
}

// proxyKeys reads every key's state from gpt-load's /stats?keys=1, and
// counts the targets that are not active.
func proxyKeys(ctx context.Context, c *http.Client, base string) ([]keyView, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stats?keys=1&limit=10000", nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("gpt-load /stats: %w", err)
	}
	defer resp.Body.Close()
	var st struct {
		KeyDetails json.RawMessage `json:"key_details"`
		Targets    []struct {
			State string `json:"state"`
		} `json:"targets"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("gpt-load /stats: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, 0, fmt.Errorf("gpt-load /stats: %w", err)
	}
	benched := 0
	for _, t := range st.Targets {
		if t.State != "active" {
			benched++
		}
	}
	keys, err := parseKeyDetails(st.KeyDetails)
	return keys, benched, err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proxy is a running gpt-load process.
type proxy struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *os.File
	stopOnce sync.Once
}

// startProxy starts bin in dir with only env (and PATH) in its
// environment, so nothing of the caller's environment or a .env file
// leaks into the measurement.
func startProxy(ctx context.Context, bin, dir string, env map[string]string, logPath string) (*proxy, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting gpt-load: %w", err)
	}
	p := &proxy{cmd: cmd, exited: make(chan struct{}), log: f}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady waits until gpt-load answers /health, for at most 15 s.
func (p *proxy) waitReady(ctx context.Context, c *http.Client, base string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return errors.New("gpt-load exited at startup")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, base+"/health", nil)
		resp, err := c.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("gpt-load did not answer /health within 15 s")
}

// stop sends SIGTERM and waits up to 10 s, then kills. Calls after the
// first do nothing.
func (p *proxy) stop() {
	p.stopOnce.Do(func() {
		defer p.log.Close()
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// tail is the end of a log file, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return oneLine(string(b))
}

// writeSection puts body under "## title" in the Markdown file at path,
// replacing that section if present (up to the next "## " heading) and
// appending it otherwise.
func writeSection(path, title, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc := string(old)
	if doc == "" {
		doc = "# Key health scenarios (`make scenarios`)\n"
	}
	heading := "## " + title + "\n"
	section := heading + "\n" + strings.TrimRight(body, "\n") + "\n"
	if i := strings.Index(doc, heading); i >= 0 {
		rest := doc[i+len(heading):]
		end := len(rest)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = j + 1
		}
		doc = doc[:i] + section + "\n" + strings.TrimLeft(rest[end:], "\n")
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(strings.TrimRight(doc, "\n")+"\n"), 0o644)
}
