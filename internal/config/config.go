// Package config reads gpt-load's configuration from the environment and
// validates all of it at once.
package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/ascii"
	"github.com/gpt-load/gpt-load/internal/redisurl"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// Config is the validated configuration. It is built once at startup by
// Load and read-only afterwards.
type Config struct {
	Host string
	Port int

	// KeysFile is the top-level keys file; empty only with GroupsDir set
	// and KEYS_FILE unset: then no top-level group.
	KeysFile           string
	StartIndex         int
	BlacklistThreshold int
	MaxRetries         int

	// Upstreams are the target base URLs, without a trailing slash.
	Upstreams []*url.URL
	// AuthStyle is "auto", "bearer", "azure", "anthropic" or "gemini".
	AuthStyle string
	AuthKey   secret.Key

	// UpstreamCAFile is UPSTREAM_CA_FILE, a PEM bundle of CA certificates
	// trusted for upstream TLS besides the system's; empty: none.
	UpstreamCAFile string
	// UpstreamRootCAs is the system roots plus UpstreamCAFile's
	// certificates; nil when UpstreamCAFile is empty (the system roots).
	UpstreamRootCAs *x509.CertPool

	CORS CORS

	MaxConcurrentRequests int
	MaxRequestBodySize    int64 // bytes
	// BodyMemoryLimit is the largest request body kept in memory for
	// replay; larger ones are spooled to a temporary file (bytes).
	BodyMemoryLimit int64

	KeyCooldown        time.Duration
	KeyRecheckInterval time.Duration // 0: off
	ModelCooldown      time.Duration
	QueueTimeout       time.Duration // 0: no waiting for a key

	ServerReadTimeout  time.Duration // 0: none
	ServerWriteTimeout time.Duration // 0: none
	ServerIdleTimeout  time.Duration // 0: none
	GracefulShutdown   time.Duration
	RequestTimeout     time.Duration
	ResponseTimeout    time.Duration
	IdleConnTimeout    time.Duration
	// StreamIdleTimeout bounds silence between chunks of a streamed
	// response; 0: never.
	StreamIdleTimeout time.Duration
	// StreamKeepalive is the upstream silence after which an event stream
	// gets a comment line; 0: off.
	StreamKeepalive time.Duration

	Log Log

	// GroupsDir is GROUPS_DIR, a folder of key groups (package groups);
	// empty: none.
	GroupsDir string

	// RedisURL turns on shared state between replicas; empty: off.
	RedisURL    secret.Key // may hold a password
	RedisPrefix string
	// RedisFingerprintSecret keys the names of keys in Redis; empty:
	// unkeyed (a startup warning says so).
	RedisFingerprintSecret secret.Key
}

// CORS is the cross-origin policy.
type CORS struct {
	Enabled          bool
	AllowedOrigins   []string // ["*"] for any
	AllowedMethods   []string
	AllowedHeaders   []string // ["*"] for any
	AllowCredentials bool
	// NoOriginsWithoutAuth is set when AUTH_KEY is empty and
	// ALLOWED_ORIGINS was not set: then AllowedOrigins is empty and no
	// browser page gets CORS headers, since a page on any site could
	// otherwise spend the keys through an open proxy on localhost.
	NoOriginsWithoutAuth bool
}

// AnyOrigin reports whether every origin is allowed.
func (c CORS) AnyOrigin() bool { return len(c.AllowedOrigins) == 1 && c.AllowedOrigins[0] == "*" }

// Log configures logging.
type Log struct {
	Level         string // debug, info, warn, error
	Format        string // text, json
	EnableFile    bool
	FilePath      string
	EnableRequest bool
}

// Addr is the listen address in host:port form.
func (c *Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Variable describes one environment variable: its name, its default as
// written in .env, and what it means. Variables is the one source of the
// settings: `gpt-load -h` prints it, and EnvExample and SettingsTable
// generate .env.example and the table of docs/configuration.md from it.
type Variable struct {
	Name, Default string
	// Help is the one-line summary that -h prints.
	Help string
	// Section names the group the variable is listed under in
	// .env.example; a variable whose Section differs from the one before
	// starts a new group.
	Section string
	// Doc is the full description, in Markdown: the settings table of
	// docs/configuration.md shows it as is, .env.example as plain text.
	Doc string
}

// Variables lists every variable Load reads, in the order of .env.example
// and of docs/configuration.md.
var Variables = []Variable{
	{Name: "PORT", Default: "3000", Section: "Server",
		Help: "listen port, 1-65535",
		Doc:  "listen port, 1–65535"},
	{Name: "HOST", Default: "0.0.0.0", Section: "Server",
		Help: "listen address",
		Doc:  "listen address; `127.0.0.1` keeps the proxy private to this machine. With the default and no `AUTH_KEY`, anyone who reaches the port can spend your keys"},

	{Name: "KEYS_FILE", Default: "keys.txt", Section: "Keys",
		Help: "path of the keys file, one key per line",
		Doc:  "path of the keys file: one upstream API key per line, `#` comments and blank lines skipped (see [Keys file](#keys-file)). With `GROUPS_DIR` set it has no default: unset, there are no top-level keys and only the groups serve"},
	{Name: "START_INDEX", Default: "0", Section: "Keys",
		Help: "key index rotation starts at, 0 <= n < key count",
		Doc:  "position in the key list where rotation starts; must be less than the number of keys"},
	{Name: "BLACKLIST_THRESHOLD", Default: "1", Section: "Keys",
		Help: "consecutive permanent failures before a key is blacklisted, >= 1",
		Doc:  "consecutive permanent failures before a key is blacklisted, ≥ 1 (see [key-health.md](key-health.md#keys-blacklisting-cooling-models))"},
	{Name: "MAX_RETRIES", Default: "3", Section: "Keys",
		Help: "extra attempts on another key after the first, 0-10",
		Doc:  "extra attempts after the first one fails, each on another key, 0–10 (see [key-health.md](key-health.md#retries))"},

	{Name: "GROUPS_DIR", Default: "", Section: "Groups",
		Help: "folder of key groups, one subfolder each (keys.txt, group.env); empty: off",
		Doc:  "folder of key groups: each subfolder `NAME` holds `keys.txt` and an optional `group.env`, and serves the requests routed to it by the path prefix `/proxy/NAME/` or by model (see [groups.md](groups.md#folder-layout)); empty: off, one pool as above"},

	{Name: "OPENAI_BASE_URL", Default: "https://api.openai.com", Section: "Upstream",
		Help: "upstream base URLs, comma-separated",
		Doc:  "one or more upstream base URLs, comma-separated; the request path is appended as is (see [api.md](api.md#forwarding)). Each is `http` or `https` with a host, and no query, fragment or user info; a trailing `/` is dropped; the same URL listed twice is an error"},

	{Name: "AUTH_KEY", Default: "", Section: "Authentication",
		Help: "token clients must present; empty: no client auth",
		Doc:  "token clients must present (see [api.md](api.md#client-authentication)); empty: the proxy is open to anyone who can reach it"},
	{Name: "UPSTREAM_AUTH_STYLE", Default: "auto", Section: "Authentication",
		Help: "auto, bearer, azure, anthropic or gemini",
		Doc:  "how keys are sent upstream: `auto` (by host), `bearer`, `azure`, `anthropic` or `gemini` (see [api.md](api.md#upstream-auth-styles))"},
	{Name: "UPSTREAM_CA_FILE", Default: "", Section: "Authentication",
		Help: "PEM file of CA certificates trusted for upstream TLS besides the system's",
		Doc:  "PEM file of CA certificates that `https` upstreams may chain to, added to the system's (a private CA, a gateway's self-signed certificate); empty: the system's only. A missing file, one without a certificate, or a certificate that does not parse is a configuration error. Certificate verification cannot be turned off"},

	{Name: "ENABLE_CORS", Default: "true", Section: "CORS",
		Help: "answer CORS preflights and set CORS headers",
		Doc:  "answer CORS preflights locally and add CORS headers for allowed origins (see [api.md](api.md#cors))"},
	{Name: "ALLOWED_ORIGINS", Default: "", Section: "CORS",
		Help: "comma-separated origins, or *; unset: * with AUTH_KEY, none without",
		Doc:  "allowed origins, comma-separated (e.g. `https://app.example.com`), or `*` alone. Unset, it is `*` when `AUTH_KEY` is set and no origin at all when it is not: a web page on any site must not be able to spend the keys through an open proxy on this machine, so without `AUTH_KEY` browsers get CORS headers only from an explicit value (see [api.md](api.md#cors))"},
	{Name: "ALLOWED_METHODS", Default: "GET,POST,PUT,DELETE,OPTIONS", Section: "CORS",
		Help: "methods allowed by CORS",
		Doc:  "methods announced to browsers in preflight answers; HTTP method tokens"},
	{Name: "ALLOWED_HEADERS", Default: "*", Section: "CORS",
		Help: "headers allowed by CORS, or *",
		Doc:  "headers announced to browsers in preflight answers; `*` echoes whatever the browser asks for"},
	{Name: "ALLOW_CREDENTIALS", Default: "false", Section: "CORS",
		Help: "CORS credentials; not with ALLOWED_ORIGINS=*",
		Doc:  "send `Access-Control-Allow-Credentials: true`; needs an explicit `ALLOWED_ORIGINS` list: together with `ALLOWED_ORIGINS=*` it is an error"},

	{Name: "MAX_CONCURRENT_REQUESTS", Default: "1000", Section: "Limits and key health",
		Help: "proxied requests in flight at once; beyond: 429",
		Doc:  "proxied requests in flight at once, ≥ 1; beyond it clients get 429"},
	{Name: "MAX_REQUEST_BODY_SIZE", Default: "32", Section: "Limits and key health",
		Help: "largest request body in MiB; beyond: 413",
		Doc:  "largest request body, in MiB; larger bodies get 413"},
	{Name: "BODY_MEMORY_LIMIT", Default: "1", Section: "Limits and key health",
		Help: "request bodies up to this many MiB are kept in memory; larger: a temp file",
		Doc:  "request bodies up to this many MiB are kept in memory for retries; larger ones go to a temporary file (mode 0600, in the system temp dir, removed when the request ends); 0: every body goes to a file"},
	{Name: "KEY_COOLDOWN", Default: "60", Section: "Limits and key health",
		Help: "seconds a rate-limited key rests without Retry-After",
		Doc:  "seconds a rate-limited key rests when the upstream does not say how long, ≥ 1; doubles with each consecutive rate-limit episode of the key, up to 30 minutes"},
	{Name: "KEY_RECHECK_INTERVAL", Default: "3600", Section: "Limits and key health",
		Help: "seconds between re-checks of blacklisted keys; 0: off",
		Doc:  "seconds between background re-checks of blacklisted keys; 0: off (see [key-health.md](key-health.md#re-checking-blacklisted-keys))"},
	{Name: "MODEL_COOLDOWN", Default: "3600", Section: "Limits and key health",
		Help: "seconds a key stays excluded for a model the provider said it may not use",
		Doc:  "seconds a key stays excluded for one model after the provider said the key may not use it, ≥ 1; the key keeps serving other models"},
	{Name: "QUEUE_TIMEOUT", Default: "0", Section: "Limits and key health",
		Help: "seconds a request may wait for a key when none is usable; 0: 503 at once",
		Doc:  "seconds a request may wait, in arrival order, for a key when none is usable but one will be by then (a rate limit ending); 0: answer 503 at once (see [key-health.md](key-health.md#when-no-key-is-usable-queue_timeout))"},

	{Name: "SERVER_READ_TIMEOUT", Default: "120", Section: "Timeouts (seconds)",
		Help: "seconds to read a whole request; 0: no limit",
		Doc:  "seconds to read a whole client request, body included; 0: no limit (see [Timeouts](#timeouts))"},
	{Name: "SERVER_WRITE_TIMEOUT", Default: "1800", Section: "Timeouts (seconds)",
		Help: "seconds a write to the client may stall; a moving response or stream is never cut; 0: no limit",
		Doc:  "seconds a write to the client may stall: a client that stops reading is cut after this; a response that keeps moving, a stream included, is never cut; 0: no limit"},
	{Name: "SERVER_IDLE_TIMEOUT", Default: "120", Section: "Timeouts (seconds)",
		Help: "keep-alive idle seconds; 0: no limit",
		Doc:  "seconds an idle keep-alive client connection stays open; 0: no limit of its own"},
	{Name: "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", Default: "60", Section: "Timeouts (seconds)",
		Help: "seconds to drain in-flight requests on shutdown",
		Doc:  "on SIGINT or SIGTERM, seconds in-flight requests get to finish before exit, ≥ 1"},
	{Name: "REQUEST_TIMEOUT", Default: "30", Section: "Timeouts (seconds)",
		Help: "seconds to connect to an upstream (dial and TLS handshake)",
		Doc:  "seconds to connect to an upstream: the TCP dial and the TLS handshake, each, ≥ 1"},
	{Name: "RESPONSE_TIMEOUT", Default: "600", Section: "Timeouts (seconds)",
		Help: "seconds from the start of sending a request upstream to its response headers",
		Doc:  "seconds an upstream gets from the start of sending a request (body included) to its response headers, so an upstream that never reads the body is a timeout, ≥ 1"},
	{Name: "IDLE_CONN_TIMEOUT", Default: "120", Section: "Timeouts (seconds)",
		Help: "seconds an idle upstream connection is kept",
		Doc:  "seconds an idle upstream connection is kept for reuse, ≥ 1"},
	{Name: "STREAM_IDLE_TIMEOUT", Default: "300", Section: "Timeouts (seconds)",
		Help: "seconds any response body may stay silent before it is cut; 0: never",
		Doc:  "seconds any upstream response body, streamed or not, may stay silent between two chunks before it is cut as a failure (see [api.md](api.md#streaming)); 0: never"},
	{Name: "STREAM_KEEPALIVE", Default: "0", Section: "Timeouts (seconds)",
		Help: "seconds of upstream silence before a ': keepalive' comment on event streams; 0: off",
		Doc:  "seconds of upstream silence on an event stream after which a `: keepalive` comment line goes to the client, repeated while silent, so a CDN or load balancer in front does not cut a model that thinks before it answers; 0: off"},

	{Name: "LOG_LEVEL", Default: "info", Section: "Logging",
		Help: "debug, info, warn or error",
		Doc:  "`debug`, `info`, `warn` or `error`"},
	{Name: "LOG_FORMAT", Default: "text", Section: "Logging",
		Help: "text or json",
		Doc:  "`text` or `json` (one JSON object per line)"},
	{Name: "LOG_ENABLE_FILE", Default: "false", Section: "Logging",
		Help: "also append logs to LOG_FILE_PATH",
		Doc:  "also append logs to `LOG_FILE_PATH`"},
	{Name: "LOG_FILE_PATH", Default: "logs/app.log", Section: "Logging",
		Help: "log file path",
		Doc:  "log file path; its directory is created if missing"},
	{Name: "LOG_ENABLE_REQUEST", Default: "true", Section: "Logging",
		Help: "one access line per proxied request",
		Doc:  "one access line per proxied request (see [operations.md](operations.md#logging))"},

	{Name: "REDIS_URL", Default: "", Section: "Scaling out (several replicas)",
		Help: "redis://[:password@]host:port/db or rediss://; redis-sentinel://[:password@]host:port,host:port/MASTER[?db=N]; redis-cluster://[:password@]host:port,host:port; empty: no shared state",
		Doc:  "Redis that replicas share key and target health through: one server, `redis://[:password@]host:port/db` or `rediss://…` for TLS; a Sentinel set, `redis-sentinel://[:password@]host:port,host:port/MASTER[?db=N]` (the sentinels' addresses and the master's name; the password is the data servers', not the sentinels'); or a Redis Cluster, `redis-cluster://[:password@]host:port,host:port` (some of its nodes) (see [operations.md](operations.md#scaling-out-with-redis)); empty: every replica keeps its own state in memory and no Redis is needed"},
	{Name: "REDIS_PREFIX", Default: "gpt-load:", Section: "Scaling out (several replicas)",
		Help: "prefix of every Redis key; replicas with different prefixes share nothing",
		Doc:  "prefix of every Redis key; replicas with different prefixes share nothing"},
	{Name: "REDIS_FINGERPRINT_SECRET", Default: "", Section: "Scaling out (several replicas)",
		Help: "secret every replica shares to key the fingerprints that name keys in Redis",
		Doc:  "secret every replica shares to key the fingerprints that name API keys in Redis (an HMAC-SHA-256); empty: plain SHA-256 fingerprints, so whoever can read Redis can confirm a guessed key, and a startup warning says so. Changing it renames every key's state: see [operations.md](operations.md#scaling-out-with-redis)"},
}

// maxDurationSeconds keeps durations far from time.Duration overflow.
const maxDurationSeconds = 10 * 365 * 24 * 3600

// Load reads and validates the configuration. getenv returns "" for unset
// variables; an empty value means the default. Every problem is reported in
// the returned error, one per line, each naming the variable and the value.
// The Config is returned even then, holding what did parse, so that the
// caller can look for more problems (the keys file) and report them all
// at once; it must not be used to serve.
func Load(getenv func(string) string) (*Config, error) {
	p := parser{getenv: getenv}
	groupsDir := p.str("GROUPS_DIR")
	c := &Config{
		Port:                  p.intRange("PORT", 1, 65535),
		Host:                  p.str("HOST"),
		KeysFile:              p.keysFile(groupsDir),
		StartIndex:            p.intRange("START_INDEX", 0, 1<<31-1),
		BlacklistThreshold:    p.intRange("BLACKLIST_THRESHOLD", 1, 1<<31-1),
		MaxRetries:            p.intRange("MAX_RETRIES", 0, 10),
		Upstreams:             p.upstreams("OPENAI_BASE_URL"),
		AuthKey:               secret.NewKey(p.str("AUTH_KEY")),
		AuthStyle:             p.oneOf("UPSTREAM_AUTH_STYLE", "auto", "bearer", "azure", "anthropic", "gemini"),
		UpstreamCAFile:        p.str("UPSTREAM_CA_FILE"),
		MaxConcurrentRequests: p.intRange("MAX_CONCURRENT_REQUESTS", 1, 1<<31-1),
		MaxRequestBodySize:    int64(p.intRange("MAX_REQUEST_BODY_SIZE", 1, 1<<20)) << 20,
		BodyMemoryLimit:       int64(p.intRange("BODY_MEMORY_LIMIT", 0, 1<<20)) << 20,
		KeyCooldown:           p.seconds("KEY_COOLDOWN", 1),
		KeyRecheckInterval:    p.seconds("KEY_RECHECK_INTERVAL", 0),
		ModelCooldown:         p.seconds("MODEL_COOLDOWN", 1),
		QueueTimeout:          p.seconds("QUEUE_TIMEOUT", 0),
		ServerReadTimeout:     p.seconds("SERVER_READ_TIMEOUT", 0),
		ServerWriteTimeout:    p.seconds("SERVER_WRITE_TIMEOUT", 0),
		ServerIdleTimeout:     p.seconds("SERVER_IDLE_TIMEOUT", 0),
		GracefulShutdown:      p.seconds("SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", 1),
		RequestTimeout:        p.seconds("REQUEST_TIMEOUT", 1),
		ResponseTimeout:       p.seconds("RESPONSE_TIMEOUT", 1),
		IdleConnTimeout:       p.seconds("IDLE_CONN_TIMEOUT", 1),
		StreamIdleTimeout:     p.seconds("STREAM_IDLE_TIMEOUT", 0),
		StreamKeepalive:       p.seconds("STREAM_KEEPALIVE", 0),
		CORS: CORS{
			Enabled:          p.boolean("ENABLE_CORS"),
			AllowedMethods:   p.methods("ALLOWED_METHODS"),
			AllowedHeaders:   p.list("ALLOWED_HEADERS"),
			AllowCredentials: p.boolean("ALLOW_CREDENTIALS"),
		},
		GroupsDir:              groupsDir,
		RedisURL:               secret.NewKey(p.redisURL("REDIS_URL")),
		RedisPrefix:            p.str("REDIS_PREFIX"),
		RedisFingerprintSecret: secret.NewKey(p.str("REDIS_FINGERPRINT_SECRET")),
		Log: Log{
			Level:         p.oneOf("LOG_LEVEL", "debug", "info", "warn", "error"),
			Format:        p.oneOf("LOG_FORMAT", "text", "json"),
			EnableFile:    p.boolean("LOG_ENABLE_FILE"),
			FilePath:      p.str("LOG_FILE_PATH"),
			EnableRequest: p.boolean("LOG_ENABLE_REQUEST"),
		},
	}
	if c.KeysFile == "" && groupsDir == "" {
		p.fail("KEYS_FILE", "", "must not be empty")
	}
	c.UpstreamRootCAs = p.caFile("UPSTREAM_CA_FILE", c.UpstreamCAFile)
	c.CORS.AllowedOrigins, c.CORS.NoOriginsWithoutAuth = p.origins(c.AuthKey.Empty())
	switch {
	case c.CORS.AllowCredentials && c.CORS.AnyOrigin():
		p.fail("ALLOW_CREDENTIALS", p.raw("ALLOW_CREDENTIALS"), "cannot be true when ALLOWED_ORIGINS is * (browsers reject it); list the origins")
	case c.CORS.AllowCredentials && c.CORS.NoOriginsWithoutAuth:
		p.fail("ALLOW_CREDENTIALS", p.raw("ALLOW_CREDENTIALS"), "needs ALLOWED_ORIGINS to list the origins (unset without AUTH_KEY, it allows none)")
	}
	for _, o := range c.CORS.AllowedOrigins {
		if o == "*" && len(c.CORS.AllowedOrigins) > 1 {
			p.fail("ALLOWED_ORIGINS", p.raw("ALLOWED_ORIGINS"), "* cannot be combined with other origins")
			break
		}
	}
	if len(p.errs) > 0 {
		return c, errors.Join(p.errs...)
	}
	return c, nil
}

// defaults maps each variable to its default value.
var defaults = func() map[string]string {
	m := make(map[string]string, len(Variables))
	for _, v := range Variables {
		m[v.Name] = v.Default
	}
	return m
}()

// parser reads variables and collects every problem rather than stopping
// at the first.
type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) raw(name string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return defaults[name]
}

// Error is one problem of one variable. Load's error joins them.
type Error struct {
	Name  string // the variable, e.g. PORT
	Value string // as given, or a masked or shortened form of it
	Why   string
}

func (e *Error) Error() string { return fmt.Sprintf("%s=%q: %s", e.Name, e.Value, e.Why) }

func (p *parser) fail(name, value, why string) {
	p.errs = append(p.errs, &Error{Name: name, Value: value, Why: why})
}

func (p *parser) str(name string) string { return p.raw(name) }

// keysFile reads KEYS_FILE. With GROUPS_DIR set it has no default: the
// groups may hold every key, and a keys.txt that happens to lie in the
// working directory must not become a group nobody asked for.
func (p *parser) keysFile(groupsDir string) string {
	if groupsDir != "" {
		return strings.TrimSpace(p.getenv("KEYS_FILE"))
	}
	return p.raw("KEYS_FILE")
}

func (p *parser) intRange(name string, lo, hi int) int {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		p.fail(name, v, "not a number")
	case n < lo || n > hi:
		p.fail(name, v, fmt.Sprintf("must be between %d and %d", lo, hi))
	}
	return n
}

func (p *parser) seconds(name string, lo int) time.Duration {
	v := p.raw(name)
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		p.fail(name, v, "not a whole number of seconds")
	case n < lo:
		p.fail(name, v, fmt.Sprintf("must be at least %d", lo))
	case n > maxDurationSeconds:
		p.fail(name, v, "too large")
	}
	return time.Duration(n) * time.Second
}

// ParseBool accepts true/false, 1/0, yes/no and on/off in any case.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, errors.New("not a boolean (true/false, 1/0, yes/no, on/off)")
}

func (p *parser) boolean(name string) bool {
	v := p.raw(name)
	b, err := ParseBool(v)
	if err != nil {
		p.fail(name, v, err.Error())
	}
	return b
}

func (p *parser) oneOf(name string, allowed ...string) string {
	v := strings.ToLower(p.raw(name))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, p.raw(name), "must be one of "+strings.Join(allowed, ", "))
	return allowed[0]
}

// SplitList splits a comma-separated list, trimming spaces and dropping
// empty items, so "a, b," is [a b].
func SplitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (p *parser) list(name string) []string {
	v := p.raw(name)
	l := SplitList(v)
	if len(l) == 0 {
		p.fail(name, v, "must list at least one item")
	}
	return l
}

// origins reads ALLOWED_ORIGINS. Unset (or blank), it is * with AUTH_KEY
// and no origin at all without (none is then true): an open proxy is open
// to this machine's users, not to every web page their browsers show.
func (p *parser) origins(noAuthKey bool) (origins []string, none bool) {
	if strings.TrimSpace(p.getenv("ALLOWED_ORIGINS")) != "" {
		return p.list("ALLOWED_ORIGINS"), false
	}
	if noAuthKey {
		return nil, true
	}
	return []string{"*"}, false
}

func (p *parser) methods(name string) []string {
	l := p.list(name)
	for i, m := range l {
		l[i] = strings.ToUpper(m)
		if !isToken(m) {
			p.fail(name, p.raw(name), fmt.Sprintf("%q is not an HTTP method", m))
		}
	}
	return l
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(ascii.IsAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

func (p *parser) upstreams(name string) []*url.URL {
	v := p.raw(name)
	items := SplitList(v)
	if len(items) == 0 {
		p.fail(name, v, "must name at least one upstream URL")
	}
	var out []*url.URL
	seen := map[string]bool{}
	for _, item := range items {
		u, err := ParseUpstream(item)
		if err != nil {
			p.fail(name, item, err.Error())
			continue
		}
		if seen[u.String()] {
			p.fail(name, item, "listed twice")
			continue
		}
		seen[u.String()] = true
		out = append(out, u)
	}
	return out
}

// ParseUpstream parses one upstream base URL: http or https, with a host,
// without query, fragment or user info. A trailing slash is dropped so that
// joining with a request path never doubles it.
func ParseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("scheme must be http or https")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("has no host")
	case u.User != nil:
		return nil, errors.New("must not carry user info; keys come from KEYS_FILE")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("must not have a query or fragment")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("port out of range")
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// caFile reads a PEM bundle of CA certificates and returns the system
// roots with them added; nil for an empty path. A missing file, one without
// a single certificate, or a certificate that does not parse is an error: a
// typo must not silently leave the upstream untrusted.
func (p *parser) caFile(name, path string) *x509.CertPool {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		p.fail(name, path, "cannot read the file: "+err.Error())
		return nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		// No system roots here (e.g. a scratch container): the bundle alone.
		pool = x509.NewCertPool()
	}
	if err := appendPEM(pool, data); err != nil {
		p.fail(name, path, err.Error())
		return nil
	}
	return pool
}

// appendPEM adds every CERTIFICATE block of data to pool. Unlike
// CertPool.AppendCertsFromPEM it fails on a block that does not parse
// rather than skipping it, and when there is no certificate at all.
func appendPEM(pool *x509.CertPool, data []byte) error {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("certificate %d does not parse: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return errors.New("holds no PEM certificate (want -----BEGIN CERTIFICATE----- blocks)")
	}
	return nil
}

// redisURL validates a Redis URL without echoing a password in the error.
func (p *parser) redisURL(name string) string {
	v := p.raw(name)
	if v == "" {
		return ""
	}
	if s := redisurl.Scheme(v); s == redisurl.SentinelScheme || s == redisurl.ClusterScheme {
		if _, err := redisurl.Parse(v); err != nil {
			p.fail(name, redisurl.Redact(v), err.Error())
		}
		return v
	}
	u, err := url.Parse(v)
	shown := v
	if err == nil && u.User != nil {
		u.User = url.User("xxxx")
		shown = strings.Replace(u.String(), "xxxx@", "****@", 1)
	}
	switch {
	case err != nil:
		p.fail(name, "(unparsable)", "not a URL")
	case u.Scheme != "redis" && u.Scheme != "rediss":
		p.fail(name, shown, "scheme must be redis, rediss, redis-sentinel or redis-cluster")
	case u.Hostname() == "":
		p.fail(name, shown, "has no host")
	default:
		if db := strings.Trim(u.Path, "/"); db != "" {
			if _, err := strconv.Atoi(db); err != nil {
				p.fail(name, shown, "database must be a number")
			}
		}
	}
	return v
}
