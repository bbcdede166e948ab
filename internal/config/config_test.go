package config

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env is a map-backed getenv: unset variables read as "".
type env map[string]string

func (e env) get(name string) string { return e[name] }

// load runs Load over e and fails the test on error.
func load(t *testing.T, e env) *Config {
	t.Helper()
	c, err := Load(e.get)
	if err != nil {
		t.Fatalf("Load(%v) error:\n%v\nwant nil", map[string]string(e), err)
	}
	return c
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

func urlStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

func TestLoadDefaults(t *testing.T) {
	c := load(t, env{})
	want := &Config{
		Host:                  "0.0.0.0",
		Port:                  3000,
		KeysFile:              "keys.txt",
		StartIndex:            0,
		BlacklistThreshold:    1,
		MaxRetries:            3,
		Upstreams:             []*url.URL{mustURL(t, "https://api.openai.com")},
		AuthStyle:             "auto",
		MaxConcurrentRequests: 1000,
		MaxRequestBodySize:    32 << 20,
		BodyMemoryLimit:       1 << 20,
		KeyCooldown:           60 * time.Second,
		KeyRecheckInterval:    3600 * time.Second,
		ModelCooldown:         3600 * time.Second,
		QueueTimeout:          0,
		ServerReadTimeout:     120 * time.Second,
		ServerWriteTimeout:    1800 * time.Second,
		ServerIdleTimeout:     120 * time.Second,
		GracefulShutdown:      60 * time.Second,
		RequestTimeout:        30 * time.Second,
		ResponseTimeout:       600 * time.Second,
		IdleConnTimeout:       120 * time.Second,
		StreamIdleTimeout:     300 * time.Second,
		CORS: CORS{
			Enabled:              true,
			AllowedOrigins:       nil, // no AUTH_KEY, ALLOWED_ORIGINS unset
			AllowedMethods:       []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"},
			AllowedHeaders:       []string{"*"},
			AllowCredentials:     false,
			NoOriginsWithoutAuth: true,
		},
		Log: Log{
			Level:         "info",
			Format:        "text",
			EnableFile:    false,
			FilePath:      "logs/app.log",
			EnableRequest: true,
		},
		RedisPrefix: "gpt-load:",
	}
	// Compare field by field so a failure names the field.
	gv, wv := reflect.ValueOf(*c), reflect.ValueOf(*want)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("Load(empty env).%s = %#v; want %#v", name, g, w)
		}
	}
	if !c.AuthKey.Empty() {
		t.Errorf("Load(empty env).AuthKey.Empty() = false; want true")
	}
	if got, want := c.Addr(), "0.0.0.0:3000"; got != want {
		t.Errorf("Addr() = %q; want %q", got, want)
	}
	// Without AUTH_KEY and an explicit ALLOWED_ORIGINS no origin is
	// allowed (SPEC §6).
	if c.CORS.AnyOrigin() || len(c.CORS.AllowedOrigins) != 0 || !c.CORS.NoOriginsWithoutAuth {
		t.Errorf("CORS = %+v; want no origin allowed without AUTH_KEY", c.CORS)
	}
}

// TestAllowedOriginsFollowAuthKey: unset ALLOWED_ORIGINS is * with
// AUTH_KEY and nothing without; an explicit value applies either way.
func TestAllowedOriginsFollowAuthKey(t *testing.T) {
	for _, tt := range []struct {
		env  env
		want []string
		none bool
	}{
		{env{}, nil, true},
		{env{"ALLOWED_ORIGINS": " "}, nil, true},
		{env{"AUTH_KEY": "t"}, []string{"*"}, false},
		{env{"ALLOWED_ORIGINS": "*"}, []string{"*"}, false},
		{env{"ALLOWED_ORIGINS": "https://app.example.com"}, []string{"https://app.example.com"}, false},
		{env{"AUTH_KEY": "t", "ALLOWED_ORIGINS": "https://app.example.com"}, []string{"https://app.example.com"}, false},
	} {
		c := load(t, tt.env)
		if !reflect.DeepEqual(c.CORS.AllowedOrigins, tt.want) || c.CORS.NoOriginsWithoutAuth != tt.none {
			t.Errorf("Load(%v).CORS origins %q, none %v; want %q, %v", tt.env, c.CORS.AllowedOrigins, c.CORS.NoOriginsWithoutAuth, tt.want, tt.none)
		}
	}
}

// TestLoadEmptyMeansDefault sets every variable to blanks, which must read
// exactly like an empty environment.
func TestLoadEmptyMeansDefault(t *testing.T) {
	for _, blank := range []string{"", " ", "\t \n"} {
		t.Run(strings.ReplaceAll(strings.ReplaceAll(blank, "\t", "tab"), "\n", "nl"), func(t *testing.T) {
			e := env{}
			for _, v := range Variables {
				e[v.Name] = blank
			}
			got, want := load(t, e), load(t, env{})
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load(all %q) = %+v; want %+v", blank, got, want)
			}
		})
	}
}

// TestVariablesDefaultsLoad checks that the documented defaults, written
// out explicitly as a .env would, load to the same configuration.
func TestVariablesDefaultsLoad(t *testing.T) {
	e := env{}
	for _, v := range Variables {
		e[v.Name] = v.Default
	}
	got, want := load(t, e), load(t, env{})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(explicit defaults) = %+v; want %+v", got, want)
	}
}

func TestLoadValues(t *testing.T) {
	cases := []struct {
		name  string
		env   env
		check func(*Config) (got, want any)
	}{
		{"port", env{"PORT": "8080"}, func(c *Config) (any, any) { return c.Port, 8080 }},
		{"port min", env{"PORT": "1"}, func(c *Config) (any, any) { return c.Port, 1 }},
		{"port max", env{"PORT": "65535"}, func(c *Config) (any, any) { return c.Port, 65535 }},
		{"port spaces", env{"PORT": " 8080 "}, func(c *Config) (any, any) { return c.Port, 8080 }},
		{"host", env{"HOST": "127.0.0.1"}, func(c *Config) (any, any) { return c.Host, "127.0.0.1" }},
		{"addr ipv6", env{"HOST": "::1", "PORT": "9"}, func(c *Config) (any, any) { return c.Addr(), "[::1]:9" }},
		{"keys file", env{"KEYS_FILE": "/etc/keys"}, func(c *Config) (any, any) { return c.KeysFile, "/etc/keys" }},
		{"groups dir", env{"GROUPS_DIR": "/etc/groups"}, func(c *Config) (any, any) { return c.GroupsDir, "/etc/groups" }},
		{"groups dir: no default keys file", env{"GROUPS_DIR": "groups"}, func(c *Config) (any, any) { return c.KeysFile, "" }},
		{"groups dir: blank keys file", env{"GROUPS_DIR": "groups", "KEYS_FILE": " "}, func(c *Config) (any, any) { return c.KeysFile, "" }},
		{"groups dir and keys file", env{"GROUPS_DIR": "groups", "KEYS_FILE": "k.txt"}, func(c *Config) (any, any) { return c.KeysFile, "k.txt" }},
		{"start index", env{"START_INDEX": "7"}, func(c *Config) (any, any) { return c.StartIndex, 7 }},
		{"blacklist threshold", env{"BLACKLIST_THRESHOLD": "5"}, func(c *Config) (any, any) { return c.BlacklistThreshold, 5 }},
		{"max retries zero", env{"MAX_RETRIES": "0"}, func(c *Config) (any, any) { return c.MaxRetries, 0 }},
		{"max retries ten", env{"MAX_RETRIES": "10"}, func(c *Config) (any, any) { return c.MaxRetries, 10 }},
		{"auth key", env{"AUTH_KEY": "sk-client-token"}, func(c *Config) (any, any) { return c.AuthKey.Reveal(), "sk-client-token" }},
		{"auth style upper case", env{"UPSTREAM_AUTH_STYLE": "Azure"}, func(c *Config) (any, any) { return c.AuthStyle, "azure" }},
		{"auth style gemini", env{"UPSTREAM_AUTH_STYLE": "gemini"}, func(c *Config) (any, any) { return c.AuthStyle, "gemini" }},
		{"body size MiB", env{"MAX_REQUEST_BODY_SIZE": "1"}, func(c *Config) (any, any) { return c.MaxRequestBodySize, int64(1 << 20) }},
		{"body size large", env{"MAX_REQUEST_BODY_SIZE": "4096"}, func(c *Config) (any, any) { return c.MaxRequestBodySize, int64(4096) << 20 }},
		{"body memory limit", env{"BODY_MEMORY_LIMIT": "8"}, func(c *Config) (any, any) { return c.BodyMemoryLimit, int64(8) << 20 }},
		{"body memory limit zero", env{"BODY_MEMORY_LIMIT": "0"}, func(c *Config) (any, any) { return c.BodyMemoryLimit, int64(0) }},
		{"concurrency", env{"MAX_CONCURRENT_REQUESTS": "5"}, func(c *Config) (any, any) { return c.MaxConcurrentRequests, 5 }},
		{"cooldown seconds", env{"KEY_COOLDOWN": "5"}, func(c *Config) (any, any) { return c.KeyCooldown, 5 * time.Second }},
		{"recheck off", env{"KEY_RECHECK_INTERVAL": "0"}, func(c *Config) (any, any) { return c.KeyRecheckInterval, time.Duration(0) }},
		{"read timeout off", env{"SERVER_READ_TIMEOUT": "0"}, func(c *Config) (any, any) { return c.ServerReadTimeout, time.Duration(0) }},
		{"write timeout", env{"SERVER_WRITE_TIMEOUT": "10"}, func(c *Config) (any, any) { return c.ServerWriteTimeout, 10 * time.Second }},
		{"stream idle off", env{"STREAM_IDLE_TIMEOUT": "0"}, func(c *Config) (any, any) { return c.StreamIdleTimeout, time.Duration(0) }},
		{"stream keepalive", env{"STREAM_KEEPALIVE": "15"}, func(c *Config) (any, any) { return c.StreamKeepalive, 15 * time.Second }},
		{"idle timeout", env{"SERVER_IDLE_TIMEOUT": "11"}, func(c *Config) (any, any) { return c.ServerIdleTimeout, 11 * time.Second }},
		{"graceful", env{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "12"}, func(c *Config) (any, any) { return c.GracefulShutdown, 12 * time.Second }},
		{"request timeout", env{"REQUEST_TIMEOUT": "13"}, func(c *Config) (any, any) { return c.RequestTimeout, 13 * time.Second }},
		{"response timeout", env{"RESPONSE_TIMEOUT": "14"}, func(c *Config) (any, any) { return c.ResponseTimeout, 14 * time.Second }},
		{"idle conn timeout", env{"IDLE_CONN_TIMEOUT": "15"}, func(c *Config) (any, any) { return c.IdleConnTimeout, 15 * time.Second }},
		{"log level", env{"LOG_LEVEL": "DEBUG"}, func(c *Config) (any, any) { return c.Log.Level, "debug" }},
		{"log format", env{"LOG_FORMAT": "json"}, func(c *Config) (any, any) { return c.Log.Format, "json" }},
		{"log file", env{"LOG_ENABLE_FILE": "on", "LOG_FILE_PATH": "/var/log/x.log"}, func(c *Config) (any, any) {
			return [2]any{c.Log.EnableFile, c.Log.FilePath}, [2]any{true, "/var/log/x.log"}
		}},
		{"request log off", env{"LOG_ENABLE_REQUEST": "off"}, func(c *Config) (any, any) { return c.Log.EnableRequest, false }},
		{"cors off", env{"ENABLE_CORS": "false"}, func(c *Config) (any, any) { return c.CORS.Enabled, false }},
		{"origins list", env{"ALLOWED_ORIGINS": " https://a.example , https://b.example,"}, func(c *Config) (any, any) {
			return c.CORS.AllowedOrigins, []string{"https://a.example", "https://b.example"}
		}},
		{"credentials with listed origins", env{"ALLOW_CREDENTIALS": "true", "ALLOWED_ORIGINS": "https://a.example"}, func(c *Config) (any, any) {
			return c.CORS.AllowCredentials, true
		}},
		{"methods upper cased", env{"ALLOWED_METHODS": "get, post ,patch"}, func(c *Config) (any, any) {
			return c.CORS.AllowedMethods, []string{"GET", "POST", "PATCH"}
		}},
		{"headers list", env{"ALLOWED_HEADERS": "Content-Type,Authorization"}, func(c *Config) (any, any) {
			return c.CORS.AllowedHeaders, []string{"Content-Type", "Authorization"}
		}},
		{"one upstream", env{"OPENAI_BASE_URL": "https://api.example.com/v1"}, func(c *Config) (any, any) {
			return urlStrings(c.Upstreams), []string{"https://api.example.com/v1"}
		}},
		{"upstream trailing slash dropped", env{"OPENAI_BASE_URL": "https://api.example.com/v1/"}, func(c *Config) (any, any) {
			return urlStrings(c.Upstreams), []string{"https://api.example.com/v1"}
		}},
		{"upstream root slash dropped", env{"OPENAI_BASE_URL": "https://api.example.com/"}, func(c *Config) (any, any) {
			return urlStrings(c.Upstreams), []string{"https://api.example.com"}
		}},
		{"upstreams with spaces and trailing comma", env{"OPENAI_BASE_URL": " https://a.example/v1/ ,http://b.example:8080 , https://c.example//,"}, func(c *Config) (any, any) {
			return urlStrings(c.Upstreams), []string{"https://a.example/v1", "http://b.example:8080", "https://c.example"}
		}},
		{"upstream ipv6", env{"OPENAI_BASE_URL": "http://[::1]:8080"}, func(c *Config) (any, any) {
			return urlStrings(c.Upstreams), []string{"http://[::1]:8080"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, want := tc.check(load(t, tc.env))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load(%v) = %#v; want %#v", map[string]string(tc.env), got, want)
			}
		})
	}
}

func TestLoadBooleans(t *testing.T) {
	vars := []string{"ENABLE_CORS", "ALLOW_CREDENTIALS", "LOG_ENABLE_FILE", "LOG_ENABLE_REQUEST"}
	cases := []struct {
		in   string
		want bool
	}{
		{"true", true}, {"TRUE", true}, {"True", true}, {"1", true}, {"yes", true}, {"YES", true}, {"Yes", true}, {"on", true}, {"ON", true}, {" on ", true},
		{"false", false}, {"FALSE", false}, {"False", false}, {"0", false}, {"no", false}, {"NO", false}, {"off", false}, {"Off", false},
	}
	for _, name := range vars {
		for _, tc := range cases {
			t.Run(name+"="+tc.in, func(t *testing.T) {
				// Credentials need listed origins to be valid.
				c := load(t, env{name: tc.in, "ALLOWED_ORIGINS": "https://a.example"})
				got := map[string]bool{
					"ENABLE_CORS":        c.CORS.Enabled,
					"ALLOW_CREDENTIALS":  c.CORS.AllowCredentials,
					"LOG_ENABLE_FILE":    c.Log.EnableFile,
					"LOG_ENABLE_REQUEST": c.Log.EnableRequest,
				}[name]
				if got != tc.want {
					t.Errorf("Load(%s=%q) = %v; want %v", name, tc.in, got, tc.want)
				}
			})
		}
	}
}

func TestParseBool(t *testing.T) {
	cases := []struct {
		in      string
		want    bool
		wantErr bool
	}{
		{"true", true, false}, {"tRuE", true, false}, {"1", true, false}, {"yEs", true, false}, {"On", true, false},
		{"false", false, false}, {"fAlSe", false, false}, {"0", false, false}, {"No", false, false}, {"oFF", false, false},
		{"", false, true}, {"maybe", false, true}, {"2", false, true}, {"t", false, true}, {"y", false, true}, {"enabled", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBool(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseBool(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestLoadBadValues(t *testing.T) {
	cases := []struct {
		name string
		env  env
		want []string // substrings of the error, each naming variable and value
	}{
		{"port not a number", env{"PORT": "abc"}, []string{`PORT="abc": not a number`}},
		{"port spaces trimmed in message", env{"PORT": " abc "}, []string{`PORT="abc": not a number`}},
		{"port zero", env{"PORT": "0"}, []string{`PORT="0": must be between 1 and 65535`}},
		{"port too large", env{"PORT": "70000"}, []string{`PORT="70000": must be between 1 and 65535`}},
		{"port negative", env{"PORT": "-1"}, []string{`PORT="-1": must be between 1 and 65535`}},
		{"port float", env{"PORT": "80.5"}, []string{`PORT="80.5": not a number`}},
		{"port overflow", env{"PORT": "99999999999999999999"}, []string{`PORT="99999999999999999999": not a number`}},
		{"start index negative", env{"START_INDEX": "-1"}, []string{`START_INDEX="-1": must be between 0`}},
		{"start index text", env{"START_INDEX": "first"}, []string{`START_INDEX="first": not a number`}},
		{"blacklist threshold zero", env{"BLACKLIST_THRESHOLD": "0"}, []string{`BLACKLIST_THRESHOLD="0": must be between 1`}},
		{"max retries eleven", env{"MAX_RETRIES": "11"}, []string{`MAX_RETRIES="11": must be between 0 and 10`}},
		{"max retries negative", env{"MAX_RETRIES": "-1"}, []string{`MAX_RETRIES="-1": must be between 0 and 10`}},
		{"concurrency zero", env{"MAX_CONCURRENT_REQUESTS": "0"}, []string{`MAX_CONCURRENT_REQUESTS="0": must be between 1`}},
		{"body size zero", env{"MAX_REQUEST_BODY_SIZE": "0"}, []string{`MAX_REQUEST_BODY_SIZE="0": must be between 1`}},
		{"body size with unit", env{"MAX_REQUEST_BODY_SIZE": "32MB"}, []string{`MAX_REQUEST_BODY_SIZE="32MB": not a number`}},
		{"body memory limit negative", env{"BODY_MEMORY_LIMIT": "-1"}, []string{`BODY_MEMORY_LIMIT="-1": must be between 0`}},
		{"cooldown zero", env{"KEY_COOLDOWN": "0"}, []string{`KEY_COOLDOWN="0": must be at least 1`}},
		{"cooldown go duration", env{"KEY_COOLDOWN": "60s"}, []string{`KEY_COOLDOWN="60s": not a whole number of seconds`}},
		{"recheck negative", env{"KEY_RECHECK_INTERVAL": "-5"}, []string{`KEY_RECHECK_INTERVAL="-5": must be at least 0`}},
		{"read timeout fraction", env{"SERVER_READ_TIMEOUT": "1.5"}, []string{`SERVER_READ_TIMEOUT="1.5": not a whole number of seconds`}},
		{"write timeout huge", env{"SERVER_WRITE_TIMEOUT": "999999999999"}, []string{`SERVER_WRITE_TIMEOUT="999999999999": too large`}},
		{"stream keepalive negative", env{"STREAM_KEEPALIVE": "-1"}, []string{`STREAM_KEEPALIVE="-1": must be at least 0`}},
		{"stream idle go duration", env{"STREAM_IDLE_TIMEOUT": "5m"}, []string{`STREAM_IDLE_TIMEOUT="5m": not a whole number of seconds`}},
		{"idle timeout text", env{"SERVER_IDLE_TIMEOUT": "forever"}, []string{`SERVER_IDLE_TIMEOUT="forever": not a whole number of seconds`}},
		{"graceful zero", env{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "0"}, []string{`SERVER_GRACEFUL_SHUTDOWN_TIMEOUT="0": must be at least 1`}},
		{"request timeout zero", env{"REQUEST_TIMEOUT": "0"}, []string{`REQUEST_TIMEOUT="0": must be at least 1`}},
		{"response timeout zero", env{"RESPONSE_TIMEOUT": "0"}, []string{`RESPONSE_TIMEOUT="0": must be at least 1`}},
		{"idle conn timeout zero", env{"IDLE_CONN_TIMEOUT": "0"}, []string{`IDLE_CONN_TIMEOUT="0": must be at least 1`}},
		{"enable cors maybe", env{"ENABLE_CORS": "maybe"}, []string{`ENABLE_CORS="maybe": not a boolean`}},
		{"allow credentials 2", env{"ALLOW_CREDENTIALS": "2"}, []string{`ALLOW_CREDENTIALS="2": not a boolean`}},
		{"log enable file t", env{"LOG_ENABLE_FILE": "t"}, []string{`LOG_ENABLE_FILE="t": not a boolean`}},
		{"log enable request enabled", env{"LOG_ENABLE_REQUEST": "enabled"}, []string{`LOG_ENABLE_REQUEST="enabled": not a boolean`}},
		{"log level verbose", env{"LOG_LEVEL": "verbose"}, []string{`LOG_LEVEL="verbose": must be one of debug, info, warn, error`}},
		{"log level keeps case in message", env{"LOG_LEVEL": "TRACE"}, []string{`LOG_LEVEL="TRACE": must be one of`}},
		{"log format xml", env{"LOG_FORMAT": "xml"}, []string{`LOG_FORMAT="xml": must be one of text, json`}},
		{"auth style foo", env{"UPSTREAM_AUTH_STYLE": "foo"}, []string{`UPSTREAM_AUTH_STYLE="foo": must be one of auto, bearer, azure, anthropic, gemini`}},
		{"upstream ftp", env{"OPENAI_BASE_URL": "ftp://x"}, []string{`OPENAI_BASE_URL="ftp://x": scheme must be http or https`}},
		{"upstream no host", env{"OPENAI_BASE_URL": "http://"}, []string{`OPENAI_BASE_URL="http://": has no host`}},
		{"upstream port only", env{"OPENAI_BASE_URL": "http://:8080"}, []string{`OPENAI_BASE_URL="http://:8080": has no host`}},
		{"upstream not a url", env{"OPENAI_BASE_URL": "not a url"}, []string{`OPENAI_BASE_URL="not a url": scheme must be http or https`}},
		{"upstream bad escape", env{"OPENAI_BASE_URL": "http://x/%zz"}, []string{`OPENAI_BASE_URL="http://x/%zz": not a URL`}},
		{"upstream no scheme", env{"OPENAI_BASE_URL": "api.openai.com"}, []string{`OPENAI_BASE_URL="api.openai.com": scheme must be http or https`}},
		{"upstream query", env{"OPENAI_BASE_URL": "https://x/v1?api-version=1"}, []string{`OPENAI_BASE_URL="https://x/v1?api-version=1": must not have a query or fragment`}},
		{"upstream empty query", env{"OPENAI_BASE_URL": "https://x/v1?"}, []string{`OPENAI_BASE_URL="https://x/v1?": must not have a query or fragment`}},
		{"upstream fragment", env{"OPENAI_BASE_URL": "https://x/v1#frag"}, []string{`OPENAI_BASE_URL="https://x/v1#frag": must not have a query or fragment`}},
		{"upstream user info", env{"OPENAI_BASE_URL": "https://user:sk-secret@x"}, []string{`OPENAI_BASE_URL="https://user:sk-secret@x": must not carry user info`}},
		{"upstream port 99999", env{"OPENAI_BASE_URL": "https://x:99999"}, []string{`OPENAI_BASE_URL="https://x:99999": port out of range`}},
		{"upstream port 0", env{"OPENAI_BASE_URL": "https://x:0"}, []string{`OPENAI_BASE_URL="https://x:0": port out of range`}},
		{"upstream only commas", env{"OPENAI_BASE_URL": " , ,"}, []string{`OPENAI_BASE_URL=", ,": must name at least one upstream URL`}},
		{"second upstream bad", env{"OPENAI_BASE_URL": "https://a.example, ftp://b.example"}, []string{`OPENAI_BASE_URL="ftp://b.example": scheme must be http or https`}},
		{"credentials with any origin", env{"ALLOW_CREDENTIALS": "true", "ALLOWED_ORIGINS": "*"}, []string{`ALLOW_CREDENTIALS="true": cannot be true when ALLOWED_ORIGINS is *`}},
		{"credentials with default origin", env{"ALLOW_CREDENTIALS": "yes"}, []string{`ALLOW_CREDENTIALS="yes": needs ALLOWED_ORIGINS to list the origins`}},
		{"credentials with default origin and AUTH_KEY", env{"ALLOW_CREDENTIALS": "yes", "AUTH_KEY": "t"}, []string{`ALLOW_CREDENTIALS="yes": cannot be true when ALLOWED_ORIGINS is *`}},
		{"star with other origins", env{"ALLOWED_ORIGINS": "*,https://a.example"}, []string{`ALLOWED_ORIGINS="*,https://a.example": * cannot be combined with other origins`}},
		{"origins only commas", env{"ALLOWED_ORIGINS": ","}, []string{`ALLOWED_ORIGINS=",": must list at least one item`}},
		{"headers only commas", env{"ALLOWED_HEADERS": ",,"}, []string{`ALLOWED_HEADERS=",,": must list at least one item`}},
		{"method with space", env{"ALLOWED_METHODS": "GET,PO ST"}, []string{`ALLOWED_METHODS="GET,PO ST": "PO ST" is not an HTTP method`}},
		{"method with slash", env{"ALLOWED_METHODS": "GET/POST"}, []string{`ALLOWED_METHODS="GET/POST": "GET/POST" is not an HTTP method`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.env.get)
			if err == nil {
				t.Fatalf("Load(%v) = %+v, nil; want an error containing %q", map[string]string(tc.env), c, tc.want)
			}
			if c == nil {
				t.Errorf("Load(%v) config = nil; want the partial config beside the error", map[string]string(tc.env))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%v) error = %q; want it to contain %q", map[string]string(tc.env), err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("Load(%v) error = %q (%d lines); want %d line(s)", map[string]string(tc.env), err, n, len(tc.want))
			}
		})
	}
}

// TestLoadReportsEveryProblem sets several bad values at once: each must be
// reported, on its own line, naming the variable and the value.
func TestLoadReportsEveryProblem(t *testing.T) {
	e := env{
		"PORT":                "abc",
		"MAX_RETRIES":         "11",
		"BLACKLIST_THRESHOLD": "0",
		"ENABLE_CORS":         "maybe",
		"LOG_LEVEL":           "verbose",
		"LOG_FORMAT":          "xml",
		"UPSTREAM_AUTH_STYLE": "foo",
		"OPENAI_BASE_URL":     "ftp://x, https://ok.example, http://",
		"KEY_COOLDOWN":        "soon",
		"ALLOW_CREDENTIALS":   "true",
	}
	want := []string{
		`PORT="abc": not a number`,
		`MAX_RETRIES="11"`,
		`BLACKLIST_THRESHOLD="0"`,
		`ENABLE_CORS="maybe"`,
		`LOG_LEVEL="verbose"`,
		`LOG_FORMAT="xml"`,
		`UPSTREAM_AUTH_STYLE="foo"`,
		`OPENAI_BASE_URL="ftp://x"`,
		`OPENAI_BASE_URL="http://"`,
		`KEY_COOLDOWN="soon"`,
		`ALLOW_CREDENTIALS="true"`,
	}
	c, err := Load(e.get)
	if err == nil {
		t.Fatalf("Load(%v) = %+v, nil; want an error", map[string]string(e), c)
	}
	lines := strings.Split(err.Error(), "\n")
	for _, w := range want {
		found := 0
		for _, l := range lines {
			if strings.Contains(l, w) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("Load(%v) error lines containing %q = %d; want 1\nerror:\n%v", map[string]string(e), w, found, err)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("Load(%v) error has %d lines; want %d\nerror:\n%v", map[string]string(e), len(lines), len(want), err)
	}
}

// TestLoadErrorNames: each joined problem is an *Error naming its
// variable, so that a caller (package groups) can tell whose it is.
func TestLoadErrorNames(t *testing.T) {
	_, err := Load(env{"PORT": "abc", "MAX_RETRIES": "11"}.get)
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Load error %T does not unwrap to a list", err)
	}
	var names []string
	for _, e := range joined.Unwrap() {
		var ve *Error
		if !errors.As(e, &ve) {
			t.Fatalf("Load problem %v is a %T; want *Error", e, e)
		}
		names = append(names, ve.Name)
	}
	if got, want := strings.Join(names, ","), "PORT,MAX_RETRIES"; got != want {
		t.Errorf("Load problems name %s; want %s", got, want)
	}
}

// TestLoadErrorNeverShowsAuthKey: a bad configuration elsewhere must not
// print AUTH_KEY.
func TestLoadErrorNeverShowsAuthKey(t *testing.T) {
	e := env{"AUTH_KEY": "sk-very-secret-client-token-123", "PORT": "abc"}
	_, err := Load(e.get)
	if err == nil {
		t.Fatalf("Load(%v) error = nil; want an error", map[string]string(e))
	}
	if strings.Contains(err.Error(), e["AUTH_KEY"]) {
		t.Errorf("Load error = %q; want no AUTH_KEY in it", err)
	}
}

var splitListCases = []struct {
	in   string
	want []string
}{
	{"", nil},
	{",", nil},
	{" , ,, ", nil},
	{"a", []string{"a"}},
	{"a,b", []string{"a", "b"}},
	{"a, b,", []string{"a", "b"}},
	{" a ,\tb\t, c ", []string{"a", "b", "c"}},
	{",,a,,", []string{"a"}},
	{"a b, c", []string{"a b", "c"}},
	{"https://a.example/v1/ ,http://b.example", []string{"https://a.example/v1/", "http://b.example"}},
	{"\u00a0x\u00a0,y", []string{"x", "y"}},
}

func TestSplitList(t *testing.T) {
	for _, tc := range splitListCases {
		t.Run(tc.in, func(t *testing.T) {
			if got := SplitList(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("SplitList(%q) = %q; want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzSplitList(f *testing.F) {
	for _, tc := range splitListCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SplitList(in)
		var want []string
		for _, piece := range strings.Split(in, ",") {
			if p := strings.TrimSpace(piece); p != "" {
				want = append(want, p)
			}
		}
		for _, item := range got {
			if item == "" || strings.TrimSpace(item) != item || strings.Contains(item, ",") {
				t.Errorf("SplitList(%q) = %q; want no empty, untrimmed or comma-holding item (found %q)", in, got, item)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") || len(got) != len(want) {
			t.Errorf("SplitList(%q) = %q; want %q", in, got, want)
		}
	})
}

var parseUpstreamCases = []struct {
	in      string
	want    string // "" when an error is expected
	wantErr string
}{
	{"https://api.openai.com", "https://api.openai.com", ""},
	{"https://api.openai.com/", "https://api.openai.com", ""},
	{"https://api.openai.com/v1", "https://api.openai.com/v1", ""},
	{"https://api.openai.com/v1///", "https://api.openai.com/v1", ""},
	{"http://localhost:8080/proxy/v1/", "http://localhost:8080/proxy/v1", ""},
	{"HTTPS://API.example.com", "https://API.example.com", ""},
	{"http://[::1]:1", "http://[::1]:1", ""},
	{"http://x:65535", "http://x:65535", ""},
	{"https://my.openai.azure.com/openai/deployments/gpt", "https://my.openai.azure.com/openai/deployments/gpt", ""},
	{"ftp://x", "", "scheme must be http or https"},
	{"http://", "", "has no host"},
	{"http:///path", "", "has no host"},
	{"not a url", "", "scheme must be http or https"},
	{"//host.example", "", "scheme must be http or https"},
	{"http:opaque", "", "has no host"},
	{"https://x?q=1", "", "must not have a query or fragment"},
	{"https://x#f", "", "must not have a query or fragment"},
	{"https://u@x", "", "must not carry user info"},
	{"https://u:p@x", "", "must not carry user info"},
	{"https://x:99999", "", "port out of range"},
	{"https://x:0", "", "port out of range"},
	{"https://x:abc", "", "not a URL"},
	{"http://x y", "", "not a URL"},
	{"", "", "scheme must be http or https"},
}

func TestParseUpstream(t *testing.T) {
	for _, tc := range parseUpstreamCases {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseUpstream(tc.in)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ParseUpstream(%q) = %v, %v; want error %q", tc.in, u, err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("ParseUpstream(%q) error = %v; want %q", tc.in, err, tc.want)
			case u.String() != tc.want:
				t.Errorf("ParseUpstream(%q) = %q; want %q", tc.in, u.String(), tc.want)
			}
		})
	}
}

func FuzzParseUpstream(f *testing.F) {
	for _, tc := range parseUpstreamCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := ParseUpstream(in)
		if err != nil {
			if u != nil {
				t.Errorf("ParseUpstream(%q) = %v, %v; want nil URL with the error", in, u, err)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Errorf("ParseUpstream(%q).Scheme = %q; want http or https", in, u.Scheme)
		}
		if u.Host == "" || u.Hostname() == "" {
			t.Errorf("ParseUpstream(%q).Host = %q; want a host", in, u.Host)
		}
		if strings.HasSuffix(u.Path, "/") || strings.HasSuffix(u.EscapedPath(), "/") {
			t.Errorf("ParseUpstream(%q).Path = %q (escaped %q); want no trailing slash", in, u.Path, u.EscapedPath())
		}
		if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			t.Errorf("ParseUpstream(%q) = %q; want no user info, query or fragment", in, u)
		}
	})
}

func TestLoadRejectsDuplicateUpstream(t *testing.T) {
	env := map[string]string{"OPENAI_BASE_URL": "https://a.example/v1, https://b.example,https://a.example/v1/"}
	_, err := Load(func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), `OPENAI_BASE_URL="https://a.example/v1/": listed twice`) {
		t.Errorf("Load(%v) error = %v; want the duplicate named", env, err)
	}
}

func TestLoadRedisURL(t *testing.T) {
	tests := []struct {
		value, wantErr string
	}{
		{"redis://127.0.0.1:6379/0", ""},
		{"rediss://:pw@cache.example:6380/2", ""},
		{"redis://localhost", ""},
		{"http://127.0.0.1:6379", "scheme must be redis, rediss, redis-sentinel or redis-cluster"},
		{"redis:///0", "has no host"},
		{"redis://127.0.0.1:6379/x", "database must be a number"},
		{"redis://:supersecret@h:1/x", `REDIS_URL="redis://****@h:1/x"`},
		{"redis-sentinel://:pw@s1:26379,s2:26379,s3:26379/mymaster?db=1", ""},
		{"redis-cluster://n1:7000,n2:7001", ""},
		{"redis-sentinel://:supersecret@s1:26379", `REDIS_URL="redis-sentinel://****@s1:26379": needs the master's name`},
		{"redis-sentinel://:supersecret@/mymaster", "at least one host:port"},
		{"redis-cluster://:supersecret@n1", `"n1" is not host:port`},
		{"redis-cluster://:supersecret@n1:7000/1", "database 0 only"},
		{"redis-sentinel://:super/secret@s:1/m?db=x", "db must be a number"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			e := env{"REDIS_URL": tt.value}
			c, err := Load(e.get)
			if tt.wantErr == "" {
				if err != nil || c.RedisURL.Reveal() != tt.value {
					t.Errorf("Load(REDIS_URL=%q) = %v, %v; want it accepted", tt.value, c.RedisURL, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load(REDIS_URL=%q) error = %v; want %q", tt.value, err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "supersecret") || strings.Contains(err.Error(), "super/secret")) {
				t.Errorf("error %q shows the Redis password", err)
			}
		})
	}
}
