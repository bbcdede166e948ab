// Package providersim is a simulated OpenAI-compatible provider for
// measuring gpt-load under the situations real key pools meet: keys of
// accounts with their own request limits (with or without x-ratelimit-*
// headers), revoked and out-of-quota keys, keys that may not use some
// models, client mistakes, the client trouble a provider refuses whatever
// the key (content flagged by moderation, another project's files),
// multipart transcriptions, scripted episodes (an IP-wide 429 storm, a
// target down) and fault modes set at run time (resets before and after
// the body, stalls, 5xx, a gateway answering 401 to every key, a target
// down and back; see Fault). It answers with the status codes and error
// bodies the providers use, and counts every attempt per key, per target
// and per second for the runners that read them (cmd/scenarios,
// internal/chaos).
//
// It is a measuring instrument, not part of the proxy.
package providersim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Config describes one simulated provider: its models, accounts, keys,
// targets and episodes. The zero value of each optional field is noted.
type Config struct {
	// Models exist for every key unless the key denies them; any other
	// model name gets 404 model_not_found for every key. Empty: gpt-4o-mini
	// and gpt-4o.
	Models   []string  `json:"models"`
	Accounts []Account `json:"accounts"`
	Keys     []Key     `json:"keys"`
	// Targets is the number of listeners (upstream base URLs) sharing the
	// same accounts and keys, like one provider behind two gateways.
	// 0 means 1.
	Targets int `json:"targets"`
	// Latency is how long a non-streamed answer takes.
	Latency Duration `json:"latency"`
	// StreamChunks events (0: 10), StreamGap apart, make a streamed answer.
	StreamChunks int      `json:"stream_chunks"`
	StreamGap    Duration `json:"stream_gap"`
	// TokensPerRequest is what one successful request costs against an
	// account's token limit (0: 100).
	TokensPerRequest int       `json:"tokens_per_request"`
	Episodes         []Episode `json:"episodes"`
	// FlagMarker in a request's body makes the provider refuse it as
	// flagged content, for every key, with OpenRouter's moderation 403.
	// Empty: "FLAGGED".
	FlagMarker string `json:"flag_marker"`
	// ForeignFileAs is how a request naming a file id ("file-…") that the
	// key's project does not own is refused: "" (403 PERMISSION_DENIED,
	// as Gemini's file API words it) or "openai" (404 "No such File
	// object", OpenAI's answer for another project's file).
	ForeignFileAs string `json:"foreign_file_as"`
	// StallMax bounds a stall (fault modes stall_headers, stall_body):
	// the stalled answer ends after it, or when the client leaves, or
	// the simulator closes. 0: 30 s.
	StallMax Duration `json:"stall_max"`
}

// ForeignFileOpenAI makes another project's file a 404 "No such File
// object" instead of a 403.
const ForeignFileOpenAI = "openai"

// Account is a group of keys sharing one limit, as keys of one OpenAI
// organisation do. Limits are fixed windows starting when the simulator's
// clock starts (Start or Reset).
type Account struct {
	Name string `json:"name"`
	// Requests and Tokens per Window; 0 means unlimited.
	Requests int      `json:"requests"`
	Tokens   int      `json:"tokens"`
	Window   Duration `json:"window"`
	// Headers sends x-ratelimit-{limit,remaining,reset}-{requests,tokens}
	// on every answer of the account's keys that passed authentication.
	Headers bool `json:"headers"`
	// RetryAfter sends Retry-After (whole seconds, rounded up) on the
	// account's rate-limit 429s.
	RetryAfter bool `json:"retry_after"`
}

// Key states.
const (
	KeyOK      = ""         // serves
	KeyRevoked = "revoked"  // 401 invalid_api_key
	KeyNoQuota = "no_quota" // 429 insufficient_quota
)

// Key is one API key of an account.
type Key struct {
	Key     string `json:"key"`
	Account string `json:"account"`
	// State is "" (healthy), "revoked" or "no_quota".
	State string `json:"state"`
	// NoQuotaAt is when a healthy key's credits run out, on the
	// simulator's clock: from then on it answers as a "no_quota" key.
	// 0: never.
	NoQuotaAt Duration `json:"no_quota_at"`
	// DeniedModels exist but this key may not use them: 404
	// model_not_found, worded as for a model that does not exist, or with
	// DeniedAs "project", 403 model_not_found as OpenAI answers for a
	// project not allowed the model ("Project `proj_…` does not have
	// access to model `X`").
	DeniedModels []string `json:"denied_models"`
	DeniedAs     string   `json:"denied_as"`
	// Files are the file ids ("file-…") the key's project owns; a request
	// naming any other file id is refused (Config.ForeignFileAs).
	Files []string `json:"files"`
}

// DeniedAsProject makes a key's denied models answer 403, as for a
// project restricted to some models.
const DeniedAsProject = "project"

// Episode kinds.
const (
	// EpisodeStorm answers every chat request on every target with 429
	// rate_limit_exceeded, whatever the key: an IP-wide limit.
	EpisodeStorm = "storm"
	// EpisodeDown closes one target's listener: connection refused.
	EpisodeDown = "down"
	// Episode503 answers every request on one target with 503.
	Episode503 = "503"
)

// Every Fault other than FaultNone and FaultDown is also an episode kind
// acting on the episode's target.

// Episode is a scripted disturbance from At to At+For on the simulator's
// clock.
type Episode struct {
	Kind string   `json:"kind"`
	At   Duration `json:"at"`
	For  Duration `json:"for"`
	// Target is the index of the target for "down" and "503".
	Target int `json:"target"`
	// RetryAfter, in seconds, is sent on a storm's 429s; 0 sends none.
	RetryAfter int `json:"retry_after"`
}

// Active reports whether the episode covers elapsed time d.
func (e Episode) Active(d time.Duration) bool {
	return d >= e.At.D() && d < e.At.D()+e.For.D()
}

// Duration is a time.Duration written in JSON as "1s", "250ms".
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("8s") or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err2 := json.Unmarshal(b, &f); err2 != nil {
			return fmt.Errorf("duration %s: want a string like \"1s\" or a number of seconds", b)
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// LoadFile reads a JSON scenario file into a Config.
func LoadFile(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// withDefaults fills the zero optional fields.
func (c Config) withDefaults() Config {
	if len(c.Models) == 0 {
		c.Models = []string{"gpt-4o-mini", "gpt-4o"}
	}
	if c.Targets <= 0 {
		c.Targets = 1
	}
	if c.StreamChunks <= 0 {
		c.StreamChunks = 10
	}
	if c.TokensPerRequest <= 0 {
		c.TokensPerRequest = 100
	}
	if c.FlagMarker == "" {
		c.FlagMarker = "FLAGGED"
	}
	if c.StallMax <= 0 {
		c.StallMax = Duration(30 * time.Second)
	}
	return c
}

// validate reports every problem of c together. Keys are never quoted
// whole: a key is named by its position.
func (c Config) validate() error {
	var errs []error
	accounts := map[string]Account{}
	for i, a := range c.Accounts {
		if a.Name == "" {
			errs = append(errs, fmt.Errorf("accounts[%d]: no name", i))
		}
		if _, dup := accounts[a.Name]; dup {
			errs = append(errs, fmt.Errorf("accounts[%d]: name %q used twice", i, a.Name))
		}
		if (a.Requests > 0 || a.Tokens > 0) && a.Window <= 0 {
			errs = append(errs, fmt.Errorf("accounts[%d] %q: a limit needs a window > 0", i, a.Name))
		}
		if a.Requests < 0 || a.Tokens < 0 {
			errs = append(errs, fmt.Errorf("accounts[%d] %q: negative limit", i, a.Name))
		}
		accounts[a.Name] = a
	}
	if len(c.Keys) == 0 {
		errs = append(errs, errors.New("no keys"))
	}
	seen := map[string]bool{}
	for i, k := range c.Keys {
		switch {
		case k.Key == "":
			errs = append(errs, fmt.Errorf("keys[%d]: empty key", i))
		case seen[k.Key]:
			errs = append(errs, fmt.Errorf("keys[%d]: the same key as an earlier entry", i))
		}
		seen[k.Key] = true
		if _, ok := accounts[k.Account]; !ok && k.Account != "" {
			errs = append(errs, fmt.Errorf("keys[%d]: account %q is not in accounts", i, k.Account))
		}
		if k.State != KeyOK && k.State != KeyRevoked && k.State != KeyNoQuota {
			errs = append(errs, fmt.Errorf("keys[%d]: state %q: want \"\", %q or %q", i, k.State, KeyRevoked, KeyNoQuota))
		}
		if k.NoQuotaAt < 0 {
			errs = append(errs, fmt.Errorf("keys[%d]: no_quota_at %v: negative", i, k.NoQuotaAt.D()))
		}
		if k.DeniedAs != "" && k.DeniedAs != DeniedAsProject {
			errs = append(errs, fmt.Errorf("keys[%d]: denied_as %q: want \"\" or %q", i, k.DeniedAs, DeniedAsProject))
		}
		for _, f := range k.Files {
			if !strings.HasPrefix(f, "file-") {
				errs = append(errs, fmt.Errorf("keys[%d]: file %q: want an id starting with \"file-\"", i, f))
			}
		}
		for _, m := range k.DeniedModels {
			if !slices.Contains(c.Models, m) {
				errs = append(errs, fmt.Errorf("keys[%d]: denied model %q is not in models", i, m))
			}
		}
	}
	if c.ForeignFileAs != "" && c.ForeignFileAs != ForeignFileOpenAI {
		errs = append(errs, fmt.Errorf("foreign_file_as %q: want \"\" or %q", c.ForeignFileAs, ForeignFileOpenAI))
	}
	for i, e := range c.Episodes {
		switch e.Kind {
		case EpisodeStorm:
		case EpisodeDown, Episode503:
			if e.Target < 0 || e.Target >= c.Targets {
				errs = append(errs, fmt.Errorf("episodes[%d]: target %d: want 0 to %d", i, e.Target, c.Targets-1))
			}
		default:
			switch {
			case !episodeFault(e.Kind):
				errs = append(errs, fmt.Errorf("episodes[%d]: kind %q: want %q, %q, %q or a fault mode (%s)", i, e.Kind, EpisodeStorm, EpisodeDown, Episode503, faultList))
			case e.Target < 0 || e.Target >= c.Targets:
				errs = append(errs, fmt.Errorf("episodes[%d]: target %d: want 0 to %d", i, e.Target, c.Targets-1))
			}
		}
		if e.For <= 0 || e.At < 0 {
			errs = append(errs, fmt.Errorf("episodes[%d]: want at >= 0 and for > 0", i))
		}
	}
	return errors.Join(errs...)
}
