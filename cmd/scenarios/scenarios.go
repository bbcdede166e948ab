package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
)

// scenario is one situation of issue 9's Targets: a simulated provider,
// gpt-load's environment for it, and the traffic sent.
type scenario struct {
	name   string
	setup  string // one line for the table
	target string // the target, as written there
	sim    providersim.Config
	env    map[string]string // on top of the runner's defaults
	rate   float64           // client arrivals per second, open loop
	// streamEvery: every n-th regular request streams.
	streamEvery int
	// mistakeShare of the arrivals are the client's own mistakes, of the
	// kinds in mistakes, taken in turn.
	mistakeShare float64
	mistakes     []mistake
	models       []string // regular requests take these in turn
	bursts       []burst
	// probes are offsets at which gpt-load's keys are read during the run.
	probes []time.Duration
	// groups, when set, run gpt-load with GROUPS_DIR (issue 21) and no
	// top-level keys file: a folder per group with its share of the
	// simulator's keys and its group.env.
	groups []groupDef
	// judge returns what missed the target ("" items are dropped) and the
	// scenario's own figures for the details column.
	judge func(r *report) (missed []string, details string)
}

// groupDef is one group of a scenario: its name, its keys (indexes into
// sim.Keys) and its group.env. A group inherits the runner's
// OPENAI_BASE_URL, the simulator, unless env sets one.
type groupDef struct {
	name string
	keys []int
	env  map[string]string
}

// burst is n streaming requests sent at once, at offset at.
type burst struct {
	at time.Duration
	n  int
}

// mistake is a request the provider refuses as the client's fault.
type mistake struct {
	kind  string // bad_json, no_messages, unknown_model, flagged, foreign_file
	model string // for unknown_model
}

// hostile are the requests a provider refuses for their content whatever
// the key: moderation-flagged input, and a file of another project.
var hostile = []mistake{{kind: "flagged"}, {kind: "foreign_file"}}

var everyMistake = []mistake{
	{kind: "bad_json"}, {kind: "unknown_model", model: "gpt-4o-minii"}, {kind: "no_messages"},
	{kind: "unknown_model", model: "gpt-5o"}, {kind: "bad_json"}, {kind: "unknown_model", model: "gtp-4o"},
}

// simKey is a key for scenario s, index i: unique in its masked preview
// (the last four characters), so /stats answers can be matched to it.
func simKey(s string, i int) string {
	h := sha256.Sum256([]byte(s + "/" + fmt.Sprint(i)))
	return "sk-sim-" + hex.EncodeToString(h[:12]) + fmt.Sprintf("-%04d", i)
}

func seconds(n float64) providersim.Duration {
	return providersim.Duration(n * float64(time.Second))
}

// baseSim is what every scenario's provider shares: answers take 30 ms,
// streams ten events 20 ms apart.
func baseSim() providersim.Config {
	return providersim.Config{
		Models: []string{"gpt-4o-mini", "gpt-4o"}, Latency: seconds(0.03),
		StreamChunks: 10, StreamGap: seconds(0.02),
	}
}

// accountsWithLimits gives key i its own account of limits[i] requests a
// second.
func accountsWithLimits(c *providersim.Config, name string, limits []int, headers bool) {
	for i, l := range limits {
		a := fmt.Sprintf("acct%02d", i)
		c.Accounts = append(c.Accounts, providersim.Account{Name: a, Requests: l, Window: seconds(1), Headers: headers})
		c.Keys = append(c.Keys, providersim.Key{Key: simKey(name, i), Account: a})
	}
}

func plainKeys(c *providersim.Config, name string, n int) {
	for i := range n {
		c.Keys = append(c.Keys, providersim.Key{Key: simKey(name, i)})
	}
}

// The limits of the two per-account scenarios: ten accounts from 2 to 12
// requests a second, 62 in all, for 47.5 regular requests a second (50
// arrivals, 5 % of them mistakes): 1.3x. Round robin sends each key 4.75 a
// second, so the five smallest accounts are always over their limit.
var accountLimits = []int{2, 3, 3, 4, 4, 5, 7, 10, 12, 12}

func scenarios() []scenario {
	var list []scenario

	{
		c := baseSim()
		accountsWithLimits(&c, "limits-headers", accountLimits, true)
		list = append(list, scenario{
			name:   "limits-headers",
			setup:  "10 keys, 10 accounts of 2–12 req/s (1.3× the load), x-ratelimit-* headers, no Retry-After",
			target: "≥ 99.5 % success, 429s ≤ 1 % of attempts",
			sim:    c, env: map[string]string{"KEY_COOLDOWN": "1", "QUEUE_TIMEOUT": "2"},
			rate: 50, streamEvery: 4, mistakeShare: 0.05, mistakes: everyMistake,
			judge: func(r *report) ([]string, string) {
				return []string{r.minSuccess(99.5), r.max429Share(1)}, ""
			},
		})
	}
	{
		c := baseSim()
		accountsWithLimits(&c, "limits-noheaders", accountLimits, false)
		list = append(list, scenario{
			name:   "limits-noheaders",
			setup:  "the same accounts without rate-limit headers or Retry-After",
			target: "≥ 99 % success",
			sim:    c, env: map[string]string{"KEY_COOLDOWN": "1", "QUEUE_TIMEOUT": "2"},
			rate: 50, streamEvery: 4, mistakeShare: 0.05, mistakes: everyMistake,
			judge: func(r *report) ([]string, string) {
				return []string{r.minSuccess(99)}, ""
			},
		})
	}
	{
		c := baseSim()
		plainKeys(&c, "bad-keys", 10)
		for _, i := range []int{1, 4, 7} {
			c.Keys[i].State = providersim.KeyRevoked
		}
		for _, i := range []int{2, 8} {
			c.Keys[i].State = providersim.KeyNoQuota
		}
		list = append(list, scenario{
			name:   "bad-keys",
			setup:  "10 keys: 3 revoked (401), 2 out of quota (429 insufficient_quota), 5 healthy",
			target: "100 % success after the first few seconds; each bad key tried ≤ BLACKLIST_THRESHOLD (1) times",
			sim:    c, rate: 50, streamEvery: 4, mistakeShare: 0.05, mistakes: everyMistake,
			judge: func(r *report) ([]string, string) {
				late := r.successAfter(3 * time.Second)
				maxBad := r.maxAttemptsOnBadKeys()
				var missed []string
				if late < 100 {
					missed = append(missed, fmt.Sprintf("success after 3 s %.2f %% < 100 %%", late))
				}
				if maxBad > 1 {
					missed = append(missed, fmt.Sprintf("a bad key tried %d times > 1", maxBad))
				}
				return missed, fmt.Sprintf("success after 3 s: %.2f %%; most attempts on one bad key: %d; bad keys benched at the end: %d/5",
					late, maxBad, r.badKeysBenched())
			},
		})
	}
	{
		c := baseSim()
		plainKeys(&c, "models", 10)
		for i := 0; i < 10; i += 2 {
			c.Keys[i].DeniedModels = []string{"gpt-4o"}
		}
		// Two of them are refused as a project, with 403.
		c.Keys[2].DeniedAs, c.Keys[6].DeniedAs = providersim.DeniedAsProject, providersim.DeniedAsProject
		list = append(list, scenario{
			name:   "models",
			setup:  "10 keys, 5 of them may not use gpt-4o (3 answer 404 model_not_found, 2 as a project 403 model_not_found); traffic half gpt-4o-mini, half gpt-4o",
			target: "100 % success, 0 keys blacklisted or cooling, ≤ 2 attempts per request once the pairs are known",
			sim:    c, env: map[string]string{"MODEL_COOLDOWN": "3600"},
			rate: 50, streamEvery: 4, mistakeShare: 0.05, mistakes: everyMistake,
			models: []string{"gpt-4o-mini", "gpt-4o"},
			judge: func(r *report) ([]string, string) {
				maxA, over := r.attemptsAfter(3*time.Second, false)
				missed := []string{r.minSuccess(100), r.noneBenched()}
				if maxA > 2 {
					missed = append(missed, fmt.Sprintf("%d requests after 3 s took > 2 attempts (max %d)", over, maxA))
				}
				return missed, fmt.Sprintf("after 3 s: max %d attempts per request, %d over 2; wrong model exclusions: %d",
					maxA, over, r.wrongExclusions)
			},
		})
	}
	{
		c := baseSim()
		plainKeys(&c, "storm", 10)
		c.Episodes = []providersim.Episode{{Kind: providersim.EpisodeStorm, At: seconds(6), For: seconds(8), RetryAfter: 2}}
		list = append(list, scenario{
			name:   "storm",
			setup:  "10 keys; from 6 s to 14 s every request gets 429 rate_limit_exceeded (IP-wide, Retry-After: 2)",
			target: "no key benched beyond the storm by more than its Retry-After; ≥ 95 % success within 2 s of its end; ≤ 1.5 attempts per request",
			sim:    c, rate: 50, streamEvery: 4, mistakeShare: 0.05, mistakes: everyMistake,
			probes: []time.Duration{16500 * time.Millisecond}, // the storm's end + Retry-After + 0.5 s
			judge: func(r *report) ([]string, string) {
				missed := []string{r.noneBenched(), r.maxAttemptsPerRequest(1.5)}
				if rec := r.recovery[0]; rec < 0 || rec > 2*time.Second {
					missed = append(missed, "recovery "+fmtRecovery(rec)+" > 2 s")
				}
				for _, p := range r.probes {
					if p.wrong > 0 {
						missed = append(missed, fmt.Sprintf("%d good keys benched at %.1f s", p.wrong, p.offset.Seconds()))
					}
				}
				return missed, fmt.Sprintf("attempts per request during the storm: %.2f; %s; targets benched at the end: %d",
					r.attemptsPerRequestIn(6*time.Second, 14*time.Second), r.probeText(), r.targetsBenched)
			},
		})
	}
	{
		c := baseSim()
		c.StreamChunks, c.StreamGap = 20, seconds(0.05) // 1 s streams
		for i := range 4 {
			a := fmt.Sprintf("acct%02d", i)
			c.Accounts = append(c.Accounts, providersim.Account{Name: a, Requests: 40, Window: seconds(1), Headers: true})
			c.Keys = append(c.Keys, providersim.Key{Key: simKey("bursts", i), Account: a})
		}
		list = append(list, scenario{
			name:   "bursts",
			setup:  "4 keys of 40 req/s each (headers on); 10 req/s plus bursts of 250 concurrent 1 s streams at 3, 9 and 15 s",
			target: "≥ 99.5 % success, no key left resting longer than its limit window needs",
			sim:    c, env: map[string]string{"KEY_COOLDOWN": "1", "QUEUE_TIMEOUT": "5"},
			rate: 10, streamEvery: 1, mistakeShare: 0.05, mistakes: everyMistake,
			bursts: []burst{{3 * time.Second, 250}, {9 * time.Second, 250}, {15 * time.Second, 250}},
			probes: []time.Duration{5 * time.Second, 11 * time.Second, 17 * time.Second}, // 2 s after each burst
			judge: func(r *report) ([]string, string) {
				missed := []string{r.minSuccess(99.5), r.noneBenched()}
				for _, p := range r.probes {
					if p.wrong > 0 {
						missed = append(missed, fmt.Sprintf("%d keys resting beyond their window at %.0f s", p.wrong, p.offset.Seconds()))
					}
				}
				return missed, fmt.Sprintf("burst requests: %.2f %% success; most streams at once upstream: %d; %s",
					r.burstSuccess(), r.sim.MaxInFlight, r.probeText())
			},
		})
	}
	{
		c := baseSim()
		plainKeys(&c, "mistakes", 6)
		list = append(list, scenario{
			name:   "mistakes",
			setup:  "6 healthy keys; 20 % of requests are the client's mistakes: bad JSON, no messages, 3 unknown model names",
			target: "each mistake reaches the client as the provider's 4xx; no key benched; unknown models cost extra attempts only until every key is excluded; other mistakes exactly 1 attempt",
			sim:    c, env: map[string]string{"MODEL_COOLDOWN": "3600"},
			rate: 50, streamEvery: 4, mistakeShare: 0.2, mistakes: everyMistake,
			judge: func(r *report) ([]string, string) {
				other := r.maxMistakeAttempts(false)
				first, last := r.unknownModelAttempts()
				missed := []string{r.noneBenched(), r.allMistakesDelivered()}
				if other != 1 {
					missed = append(missed, fmt.Sprintf("other mistakes took up to %d attempts", other))
				}
				return missed, fmt.Sprintf("other mistakes: max %d attempts; unknown model: %.2f attempts each in the first half, %.2f in the second",
					other, first, last)
			},
		})
	}
	{
		c := baseSim()
		c.Targets = 2
		plainKeys(&c, "target-down", 8)
		c.Episodes = []providersim.Episode{{Kind: providersim.EpisodeDown, Target: 1, At: seconds(6), For: seconds(6)}}
		list = append(list, scenario{
			name:   "target-down",
			setup:  "2 targets, 8 keys; target 2 refuses connections from 6 s to 12 s",
			target: "(no figure in the issue) ≥ 99 % success, no key benched",
			sim:    c, rate: 50, streamEvery: 4, mistakeShare: 0.05, mistakes: everyMistake,
			judge: func(r *report) ([]string, string) {
				return []string{r.minSuccess(99), r.noneBenched()},
					fmt.Sprintf("attempts per request during the outage: %.2f; targets benched at the end: %d",
						r.attemptsPerRequestIn(6*time.Second, 12*time.Second), r.targetsBenched)
			},
		})
	}
	{
		c := baseSim()
		plainKeys(&c, "hostile", 10)
		list = append(list, scenario{
			name:   "hostile",
			setup:  "10 healthy keys; 10 % of requests are refused for their content whatever the key: moderation-flagged input (OpenRouter's 403) and another project's file (403 PERMISSION_DENIED)",
			target: "healthy traffic ≥ 99.5 % success; no key leaves rotation",
			sim:    c, rate: 50, streamEvery: 4, mistakeShare: 0.1, mistakes: hostile,
			probes: []time.Duration{3 * time.Second, 6 * time.Second, 9 * time.Second, 12 * time.Second, 15 * time.Second},
			judge: func(r *report) ([]string, string) {
				missed := []string{r.minSuccess(99.5), r.noneBenched()}
				wrong := 0
				for _, p := range r.probes {
					wrong += p.wrong
				}
				if wrong > 0 {
					missed = append(missed, fmt.Sprintf("good keys out of rotation during the run: %s", r.probeText()))
				}
				if r.wrongExclusions > 0 {
					missed = append(missed, fmt.Sprintf("%d (key, model) pairs excluded though the key may use the model", r.wrongExclusions))
				}
				return missed, fmt.Sprintf("hostile requests answered with the provider's own 403: %d/%d, max %d attempts each; good keys out of rotation in %d probes: %d",
					r.mistakesOK, r.mistakes, r.maxMistakeAttempts(false), len(r.probes), wrong)
			},
		})
	}
	{
		c := baseSim()
		plainKeys(&c, "groups", 8)
		// The primary's credits run out half-way through a 20 s run.
		for i := range 4 {
			c.Keys[i].NoQuotaAt = seconds(10)
		}
		list = append(list, scenario{
			name:   "groups",
			setup:  "2 groups of 4 keys on one provider: primary (MODELS=gpt-4o*, FALLBACK=secondary), secondary (reached only as the fallback); at 10 s every key of primary starts answering 429 insufficient_quota",
			target: "≥ 99.5 % success, ≤ 1.5 upstream attempts per request; mistakes never fall back",
			sim:    c, rate: 50, streamEvery: 4, mistakeShare: 0.05,
			// Mistakes the model routes to primary: a client fault is never
			// a reason to fall back, so each costs one attempt.
			mistakes: []mistake{{kind: "bad_json"}, {kind: "no_messages"}},
			groups: []groupDef{
				{name: "primary", keys: []int{0, 1, 2, 3}, env: map[string]string{"MODELS": "gpt-4o*", "FALLBACK": "secondary"}},
				{name: "secondary", keys: []int{4, 5, 6, 7}},
			},
			judge: func(r *report) ([]string, string) {
				missed := []string{r.minSuccess(99.5), r.maxAttemptsPerRequest(1.5), r.noneBenched(), r.allMistakesDelivered()}
				if m := r.maxMistakeAttempts(false); m > 1 {
					missed = append(missed, fmt.Sprintf("a mistake took %d attempts: it fell back", m))
				}
				if r.duration <= 10*time.Second {
					missed = append(missed, "the run ended before the primary's credits ran out (-duration ≤ 10s)")
				}
				before, after := r.keyAttempts([]int{0, 1, 2, 3}), r.keyAttempts([]int{4, 5, 6, 7})
				// The primary's keys share its fate at once: the correlated
				// rule benches its upstream rather than the keys.
				return missed, fmt.Sprintf("success after 10 s: %.2f %%; attempts per request after 10 s: %.2f; chat attempts on primary's keys %d, on secondary's %d; at the end primary's keys out of rotation %d/4, upstreams benched %d",
					r.successAfter(10*time.Second), r.attemptsPerRequestIn(10*time.Second, r.duration), before, after, r.badKeysBenched(), r.targetsBenched)
			},
		})
	}
	return list
}
