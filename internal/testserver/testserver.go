// Package testserver starts gpt-load for tests, wired as cmd/gpt-load wires
// it: configuration from environment values over the defaults, a keys file
// on disk, server.New, and a real HTTP server in front.
package testserver

import (
	"context"
	"io"
	"log"
	"maps"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/groups"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/server"
	"github.com/gpt-load/gpt-load/internal/testlog"
)

// Options shape a server under test. The zero value needs at least
// Upstreams or an OPENAI_BASE_URL in Env.
type Options struct {
	// Keys are written to a new keys file; KeysFile names an existing one
	// instead. One of the two is needed.
	Keys     []string
	KeysFile string
	// Upstreams are the OPENAI_BASE_URL targets; Env may set it instead.
	Upstreams []string
	// Env are environment values over the defaults. HOST is 127.0.0.1 and
	// LOG_FORMAT json unless Env says otherwise.
	Env map[string]string
	// Configure, when set, changes the loaded configuration before the
	// server is built, for knobs finer than the environment allows.
	Configure func(*config.Config)
	// Logs receives the log; nil: a new testlog.Buffer, in Server.Logs.
	Logs io.Writer
	// LogFields are set on every log line (a replica's name, say).
	LogFields logrus.Fields
	// Server are the options without an environment variable.
	Server server.Options
	// Live serves through the very http.Server cmd/gpt-load serves with,
	// on a loopback port, so its read and header timeouts are in force;
	// otherwise httptest serves.
	Live bool
}

// Server is gpt-load under test.
type Server struct {
	// URL is the base URL; Addr its host:port.
	URL, Addr string
	App       *server.Server
	server.Parts
	Config   *config.Config
	KeysFile string
	// Raw are the keys as the server read them, in file order.
	Raw []string
	// Logs is the log, unless Options.Logs sent it elsewhere.
	Logs *testlog.Buffer
}

// Start builds and serves a server for the test; it is closed when the
// test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{KeysFile: o.KeysFile}
	if s.KeysFile == "" {
		s.KeysFile = filepath.Join(t.TempDir(), "keys.txt")
		if err := os.WriteFile(s.KeysFile, []byte(strings.Join(o.Keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatalf("write keys file: %v", err)
		}
	}
	env := map[string]string{
		"HOST":       "127.0.0.1",
		"KEYS_FILE":  s.KeysFile,
		"LOG_FORMAT": "json",
	}
	if len(o.Upstreams) > 0 {
		env["OPENAI_BASE_URL"] = strings.Join(o.Upstreams, ",")
	}
	maps.Copy(env, o.Env)
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Load(%v): %v", env, err)
	}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	s.Config = cfg
	var parsed keymanager.Parsed
	if cfg.GroupsDir != "" {
		// Groups (docs/groups.md): read as cmd/gpt-load reads them.
		getenv := func(k string) string { return env[k] }
		specs, err := groups.Load(cfg, getenv)
		if err != nil {
			t.Fatalf("groups.Load: %v", err)
		}
		o.Server.Groups, o.Server.Getenv = specs, getenv
	} else {
		parsed, err = keymanager.ParseFile(cfg.KeysFile)
		if err != nil {
			t.Fatalf("ParseFile: %v", err)
		}
		s.Raw = parsed.Keys
	}

	out := o.Logs
	if out == nil {
		s.Logs = &testlog.Buffer{}
		out = s.Logs
	}
	app, err := server.New(context.Background(), cfg, parsed.Keys, NewLogger(t, cfg, out).WithFields(o.LogFields), o.Server)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	t.Cleanup(app.Close)
	s.App, s.Parts = app, app.Parts()

	if o.Live {
		srv := app.HTTPServer(log.New(io.Discard, "", 0))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		s.Addr = ln.Addr().String()
	} else {
		srv := httptest.NewServer(app.Handler())
		t.Cleanup(srv.Close)
		s.Addr = srv.Listener.Addr().String()
	}
	s.URL = "http://" + s.Addr
	return s
}

// NewLogger returns a logger that writes to out in cfg's format and at
// its level, as cmd/gpt-load's does (never in colour).
func NewLogger(t testing.TB, cfg *config.Config, out io.Writer) *logrus.Entry {
	t.Helper()
	l := logrus.New()
	l.SetOutput(out)
	level, err := logrus.ParseLevel(cfg.Log.Level)
	if err != nil {
		t.Fatalf("ParseLevel(%q): %v", cfg.Log.Level, err)
	}
	l.SetLevel(level)
	if cfg.Log.Format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	}
	return logrus.NewEntry(l)
}
