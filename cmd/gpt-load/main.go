// Command gpt-load is a reverse proxy for OpenAI-compatible APIs that rotates
// many API keys over one or more upstreams. This file is wiring only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/joho/godotenv"
	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/gctune"
	"github.com/gpt-load/gpt-load/internal/groups"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/stdlog"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// The collector's target follows the live heap, and the memory a burst
	// left goes back once the process is quiet (docs/performance.md,
	// "Garbage collection"), unless GOGC is set.
	gctune.Start(os.Getenv)
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gpt-load:", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

type usageError struct{ error }

// hooks lets tests listen on a port of their choosing and learn the address.
type hooks struct {
	listen func(addr string) (net.Listener, error)
	ready  func(addr string)
}

// run is the whole program: flags, configuration, wiring, serving until ctx
// ends or SIGINT/SIGTERM arrives, then a bounded drain.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, getenv, stdout, stderr, hooks{})
}

func runWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, h hooks) error {
	fs := flag.NewFlagSet(filepath.Base(args[0]), flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	envFile := fs.String("env-file", ".env", "file of KEY=VALUE lines loaded first; the environment wins")
	demo := fs.Bool("demo", false, "run a demo: a simulated provider with demo keys and gpt-load in front of it on 127.0.0.1:PORT (3000); reads nothing else")
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q; configuration comes from the environment (see -h)", fs.Args())}
	}
	if *showVersion {
		fmt.Fprintln(stdout, "gpt-load", version)
		return nil
	}
	if *demo {
		return runDemo(ctx, args[0], getenv, stdout, stderr, h)
	}

	named := false
	fs.Visit(func(f *flag.Flag) { named = named || f.Name == "env-file" })
	getenv, unknown, err := withEnvFile(*envFile, named, getenv)
	if err != nil {
		return err
	}
	// Loading a large keys file allocates its whole working set at once and
	// nothing of it is garbage; the collector would mark it again at each
	// doubling of the heap on the way (a third of the startup CPU with a
	// million keys). It is paused until the server is built; GOMEMLIMIT
	// still holds meanwhile.
	gcPercent := debug.SetGCPercent(-1)
	resumeGC := sync.OnceFunc(func() { debug.SetGCPercent(gcPercent) })
	defer resumeGC()
	// Every problem, the keys file's included, is reported in one go.
	cfg, err := config.Load(getenv)
	problems := []error{err}
	var parsed keymanager.Parsed
	var specs []*groups.Spec
	if cfg.GroupsDir != "" && err == nil {
		// Every group's problems, the top-level keys file's included,
		// together (docs/groups.md, "Validation errors").
		var gerr error
		specs, gerr = groups.Load(cfg, getenv)
		problems = append(problems, gerr)
	} else if cfg.KeysFile != "" {
		var perr error
		if parsed, perr = keymanager.ParseFile(cfg.KeysFile); perr != nil {
			problems = append(problems, perr)
		} else if cfg.StartIndex >= len(parsed.Keys) {
			problems = append(problems, fmt.Errorf("START_INDEX=\"%d\": must be less than the key count (%d)", cfg.StartIndex, len(parsed.Keys)))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log, closeLog, err := newLogger(cfg.Log, stdout)
	if err != nil {
		return err
	}
	defer closeLog()

	for _, name := range unknown {
		// The name only: the value may be a key.
		l := log.WithFields(logrus.Fields{"file": *envFile, "variable": name})
		if goRuntimeVar(name) {
			// The runtime read its settings before main ran
			// (docs/performance.md, "Garbage collection").
			l.Warnf("%s in the env file is ignored: the Go runtime reads it from the process's environment only", name)
			continue
		}
		l.Warnf("unknown variable %s in the env file, ignored: did you mean %s?", name, config.Closest(name))
	}
	if parsed.Duplicates > 0 {
		log.WithField("count", parsed.Duplicates).Warn("dropped duplicate keys from the keys file")
	}
	if len(parsed.Spaced) > 0 {
		log.WithFields(keymanager.SpacedFields(parsed.Spaced)).Warn(keymanager.SpacedWarning)
	}
	opts := server.Options{}
	if cfg.GroupsDir != "" {
		opts.Groups, opts.Getenv = specs, getenv
		specs = nil
	}
	app, err := server.New(ctx, cfg, parsed.Keys, log, opts)
	parsed = keymanager.Parsed{} // the manager holds the keys now
	resumeGC()
	if err != nil {
		return err
	}
	defer app.Close()

	srv := app.HTTPServer(stdlog.New(log, logrus.DebugLevel))
	listen := h.listen
	if listen == nil {
		listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	ln, err := listen(cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	parts := app.Parts()
	if len(opts.Groups) > 0 {
		logGroups(log, cfg, shownAddr(cfg.Host, ln.Addr()), app.Groups())
	} else {
		logStartup(log, cfg, shownAddr(cfg.Host, ln.Addr()), parts.Keys.Len(), parts.Targets)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// The SIGHUP loop is joined before run returns, so a reload never runs
	// against a server that is being closed.
	hupCtx, stopHup := context.WithCancel(ctx)
	hupDone := make(chan struct{})
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				if err := app.Reload(false); err != nil {
					// A broken keys file keeps the old keys; with GROUPS_DIR,
					// each broken group keeps its previous version and the
					// others reloaded (docs/groups.md, "Reloading").
					log.WithError(err).Error("SIGHUP: keeping the old keys (with GROUPS_DIR: of the groups named; the others reloaded)")
				}
			}
		}
	}()
	defer func() { signal.Stop(hup); stopHup(); <-hupDone }()

	// The re-check loop stops with the server, before run returns.
	recheckCtx, stopRecheck := context.WithCancel(ctx)
	recheckDone := make(chan struct{})
	go func() {
		defer close(recheckDone)
		app.RunRecheck(recheckCtx)
	}()
	defer func() { stopRecheck(); <-recheckDone }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if h.ready != nil {
		h.ready(ln.Addr().String())
	}
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal now kills the process the default way

	log.WithField("timeout", cfg.GracefulShutdown.String()).Info("shutting down: draining in-flight requests")
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.GracefulShutdown)
	defer cancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: requests still running after %s were cut off", cfg.GracefulShutdown)
	}
	log.Info("stopped")
	return nil
}

// withEnvFile returns a getenv that falls back to the values in path.
// Variables set in the environment win. A missing file is fine when it is
// the default .env, and an error when it was named on the command line
// (named): a misspelled name must not start the proxy without its
// AUTH_KEY. unknown lists, sorted, the file's variables that gpt-load does
// not read.
// goRuntimeVar reports whether name is one of the Go runtime's settings,
// which only the process's environment can set.
func goRuntimeVar(name string) bool {
	switch name {
	case "GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK":
		return true
	}
	return false
}

func withEnvFile(path string, named bool, getenv func(string) string) (_ func(string) string, unknown []string, _ error) {
	if path == "" {
		return getenv, nil, nil
	}
	vals, err := godotenv.Read(path)
	if errors.Is(err, os.ErrNotExist) && !named {
		return getenv, nil, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("env file %q (-env-file): no such file", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("env file %q: %w", path, err)
	}
	for name := range vals {
		if !config.Known(name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return vals[name]
	}, unknown, nil
}

func logStartup(log *logrus.Entry, cfg *config.Config, addr string, keyCount int, targets *upstream.Balancer) {
	log.WithFields(logrus.Fields{
		"version": version,
		"listen":  addr,
		"keys":    keyCount,
		"auth":    !cfg.AuthKey.Empty(),
		"cors":    corsOn(cfg),
		"metrics": true,
	}).Info("gpt-load started")
	v1 := 0
	for _, t := range targets.Targets() {
		if t.EndsInV1() {
			v1++
		}
		log.WithFields(logrus.Fields{"url": t.String(), "auth_style": t.Style.String()}).Info("upstream")
	}
	if v1 > 0 && v1 < len(targets.Targets()) {
		log.Warn("some upstream URLs end in /v1 and some do not: one client path cannot suit both")
	}
	if cfg.AuthKey.Empty() && !isLoopback(cfg.Host) {
		log.Warn("AUTH_KEY is empty and HOST is not loopback: anyone who reaches this port can spend your keys")
	}
	logCORSOff(log, cfg)
}

// logGroups is logStartup with GROUPS_DIR: the daemon, then each group
// with its keys count, upstreams and routing (never a key or token).
func logGroups(log *logrus.Entry, cfg *config.Config, addr string, gs []server.GroupInfo) {
	keys := 0
	for _, g := range gs {
		keys += g.Keys
	}
	log.WithFields(logrus.Fields{
		"version": version, "listen": addr, "groups": len(gs), "keys": keys,
		"auth": !cfg.AuthKey.Empty(), "cors": corsOn(cfg), "metrics": true,
	}).Info("gpt-load started")
	for _, g := range gs {
		log.WithFields(logrus.Fields{"group": g.Name, "keys": g.Keys, "upstreams": strings.Join(g.Upstreams, ","),
			"models": strings.Join(g.Models, ","), "aliases": len(g.Aliases), "fallback": strings.Join(g.Fallback, ","),
			"tokens": g.Tokens}).Info("group")
	}
	if cfg.AuthKey.Empty() && !isLoopback(cfg.Host) {
		log.Warn("AUTH_KEY is empty and HOST is not loopback: anyone who reaches this port can spend your keys in every group without tokens")
	}
	logCORSOff(log, cfg)
}

// shownAddr is the listen address as the startup line shows it: Go reports
// a listener on every interface as [::]:3000 even for HOST=0.0.0.0, so then
// HOST is shown as given, with the port listened on.
func shownAddr(host string, addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() && host != "" {
		return net.JoinHostPort(host, strconv.Itoa(ta.Port))
	}
	return addr.String()
}

// corsOn reports whether some browser origin gets CORS headers.
func corsOn(cfg *config.Config) bool {
	return cfg.CORS.Enabled && len(cfg.CORS.AllowedOrigins) > 0
}

// logCORSOff says why CORS is off without AUTH_KEY (SPEC §6).
func logCORSOff(log *logrus.Entry, cfg *config.Config) {
	if cfg.CORS.Enabled && cfg.CORS.NoOriginsWithoutAuth {
		log.Info("CORS: no origin allowed, since AUTH_KEY is empty and ALLOWED_ORIGINS is not set: no web page can call this proxy (set ALLOWED_ORIGINS to allow one)")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "gpt-load %s: a key-rotating reverse proxy for OpenAI-compatible APIs\n\n", version)
	fmt.Fprintf(w, "Usage: gpt-load [flags]\n\nFlags:\n")
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nConfiguration comes from environment variables (and the env file):\n")
	for _, v := range config.Variables {
		def := v.Default
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "  %-33s %-28s %s\n", v.Name, def, v.Help)
	}
}
