package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gpt-load/gpt-load/internal/providersim"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// keyView is one key as gpt-load's /stats?keys=1 shows it at the end.
type keyView struct {
	Preview        string `json:"preview"`
	State          string `json:"state"`
	CoolingUntil   string `json:"cooling_until"`
	Until          string `json:"until"`
	ModelsExcluded []struct {
		Model string `json:"model"`
		Until string `json:"until"`
	} `json:"models_excluded"`
}

// parseKeyDetails reads key_details of /stats?keys=1: a list, or an
// object holding the list (a paged answer).
func parseKeyDetails(raw json.RawMessage) ([]keyView, error) {
	var list []keyView
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '[' {
		err := json.Unmarshal(raw, &list)
		return list, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	for _, v := range obj {
		if len(v) > 0 && v[0] == '[' {
			if err := json.Unmarshal(v, &list); err == nil {
				return list, nil
			}
		}
	}
	return nil, fmt.Errorf("key_details: no list in %.200s", raw)
}

// probe is a view of gpt-load's keys taken during the run.
type probe struct {
	offset time.Duration // from the start of traffic
	at     time.Time
	keys   []keyView
	err    error
	wrong  int // good keys benched
}

// probeText describes the probes for the details column.
func (r *report) probeText() string {
	var parts []string
	for _, p := range r.probes {
		if p.err != nil {
			parts = append(parts, fmt.Sprintf("at %v: %v", p.offset, oneLine(p.err.Error())))
			continue
		}
		parts = append(parts, fmt.Sprintf("good keys benched at %.1f s: %d", p.offset.Seconds(), p.wrong))
	}
	return strings.Join(parts, "; ")
}

// report is one scenario's run and its figures.
type report struct {
	sc       scenario
	duration time.Duration
	results  []result
	sim      providersim.Stats
	keys     []keyView
	start    time.Time // the traffic's, and the simulator's clock's
	statsAt  time.Time
	probes   []*probe
	// targetsBenched counts targets not "active" at the end;
	// targetBenchings the times gpt-load logged benching one.
	targetsBenched  int
	targetBenchings int

	regular, regularOK, mistakes, mistakesOK int
	wrongBlacklisted, wrongCooling           int
	wrongExclusions                          int
	recovery                                 []time.Duration // per episode; -1: never
	missed                                   []string
	details                                  string
	err                                      error
}

func (r *report) compute() {
	for _, x := range r.results {
		if x.mistake == nil {
			r.regular++
			if x.ok {
				r.regularOK++
			}
		} else {
			r.mistakes++
			if x.ok {
				r.mistakesOK++
			}
		}
	}
	r.benched()
	for _, e := range r.sc.sim.Episodes {
		r.recovery = append(r.recovery, r.recoveryAfter(e.At.D()+e.For.D()))
	}
	var missed []string
	missed, r.details = r.sc.judge(r)
	// Without every key in view, "0 benched" would mean nothing.
	if seen := r.keysSeen(); seen < len(r.sc.sim.Keys) {
		missed = append(missed, fmt.Sprintf("/stats?keys=1 showed %d of %d keys", seen, len(r.sc.sim.Keys)))
	}
	if r.targetBenchings > 0 {
		if r.details != "" {
			r.details += "; "
		}
		r.details += fmt.Sprintf("gpt-load benched a target %d times", r.targetBenchings)
	}
	if f := r.failures(); f != "" {
		if r.details != "" {
			r.details += "; "
		}
		r.details += f
	}
	for _, m := range missed {
		if m != "" {
			r.missed = append(r.missed, m)
		}
	}
}

// benched counts the keys gpt-load holds out of rotation at the end
// although the simulator knows them good: blacklisted, or cooling longer
// than their account's limit window still needs; and (key, model) pairs
// excluded although the key may use the model.
func (r *report) benched() {
	r.wrongBlacklisted, r.wrongCooling, r.wrongExclusions = r.wronglyBenched(r.keys, r.statsAt)
	for _, p := range r.probes {
		b, c, _ := r.wronglyBenched(p.keys, p.at)
		p.wrong = b + c
	}
}

// keysSeen counts the simulator's keys found in gpt-load's key details.
func (r *report) keysSeen() int {
	previews := map[string]bool{}
	for _, v := range r.keys {
		previews[v.Preview] = true
	}
	n := 0
	for _, k := range r.sc.sim.Keys {
		if previews[secret.Mask(k.Key)] {
			n++
		}
	}
	return n
}

// wronglyBenched counts, in a view of the keys taken at time at, the good
// keys blacklisted, those cooling beyond what their account's window
// needs, and the (key, model) pairs excluded although the key may use the
// model.
func (r *report) wronglyBenched(keys []keyView, at time.Time) (black, cool, excl int) {
	byPreview := map[string]providersim.Key{}
	for _, k := range r.sc.sim.Keys {
		byPreview[secret.Mask(k.Key)] = k
	}
	windows := map[string]time.Duration{}
	for _, a := range r.sc.sim.Accounts {
		if a.Requests > 0 || a.Tokens > 0 {
			windows[a.Name] = a.Window.D()
		}
	}
	models := map[string]bool{}
	for _, m := range r.sc.sim.Models {
		models[m] = true
	}
	for _, v := range keys {
		k, known := byPreview[v.Preview]
		if !known {
			continue
		}
		bad := r.bad(k, at)
		switch v.State {
		case "blacklisted":
			if !bad {
				black++
			}
		case "cooling":
			until := v.CoolingUntil
			if until == "" {
				until = v.Until
			}
			t, err := time.Parse(time.RFC3339, until)
			// RFC 3339 seconds round the deadline down: a rest of the
			// window's length may show up to a second short, never long.
			if !bad && (err != nil || t.After(at.Add(windows[k.Account]))) {
				cool++
			}
		}
		for _, ex := range v.ModelsExcluded {
			denied := false
			for _, d := range k.DeniedModels {
				denied = denied || d == ex.Model
			}
			if models[ex.Model] && !denied {
				excl++
			}
		}
	}
	return black, cool, excl
}

// recoveryAfter is the time from end to the start of the first whole
// second after it in which ≥ 95 % of regular requests succeeded (by
// arrival); -1 when none did.
func (r *report) recoveryAfter(end time.Duration) time.Duration {
	first := int(math.Ceil(end.Seconds()))
	for s := first; float64(s) < r.duration.Seconds(); s++ {
		n, ok := 0, 0
		for _, x := range r.results {
			if x.mistake == nil && int(x.at/time.Second) == s {
				n++
				if x.ok {
					ok++
				}
			}
		}
		if n > 0 && float64(ok) >= 0.95*float64(n) {
			return time.Duration(s)*time.Second - end
		}
	}
	return -1
}

// failures tells what the failed regular requests got, by status (0: no
// answer), e.g. "failed: 429×53, 503×2".
func (r *report) failures() string {
	by := map[int]int{}
	attempts := 0
	for _, x := range r.results {
		if x.mistake == nil && !x.ok {
			by[x.status]++
			attempts += x.attempts
		}
	}
	if len(by) == 0 {
		return ""
	}
	codes := slices.Sorted(maps.Keys(by))
	var parts []string
	n := 0
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", c, by[c]))
		n += by[c]
	}
	return fmt.Sprintf("failed: %s, after %.2f attempts each", strings.Join(parts, ", "), float64(attempts)/float64(n))
}

func fmtRecovery(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f s", d.Seconds())
}

func (r *report) success() float64 { return pct(r.regularOK, r.regular) }

func (r *report) attemptsPerRequest() float64 {
	if len(r.results) == 0 {
		return 0
	}
	return float64(r.sim.Attempts) / float64(len(r.results))
}

func (r *report) tooMany() int64 {
	return r.sim.Outcomes["rate_limited"] + r.sim.Outcomes["storm"] + r.sim.Outcomes["no_quota"]
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// The judges' helpers: each returns "" when the figure meets the target.

func (r *report) minSuccess(p float64) string {
	if s := r.success(); s < p {
		return fmt.Sprintf("success %.2f %% < %g %%", s, p)
	}
	return ""
}

func (r *report) max429Share(p float64) string {
	share := 100 * float64(r.tooMany()) / math.Max(1, float64(r.sim.Attempts))
	if share > p {
		return fmt.Sprintf("429s %.1f %% of attempts > %g %%", share, p)
	}
	return ""
}

func (r *report) noneBenched() string {
	if n := r.wrongBlacklisted + r.wrongCooling; n > 0 {
		return fmt.Sprintf("%d good keys benched at the end", n)
	}
	return ""
}

func (r *report) maxAttemptsPerRequest(x float64) string {
	if a := r.attemptsPerRequest(); a > x {
		return fmt.Sprintf("%.2f attempts per request > %g", a, x)
	}
	return ""
}

func (r *report) allMistakesDelivered() string {
	if r.mistakesOK < r.mistakes {
		return fmt.Sprintf("%d of %d mistakes not answered with the provider's 4xx", r.mistakes-r.mistakesOK, r.mistakes)
	}
	return ""
}

// successAfter is the success rate of regular requests arriving after d.
func (r *report) successAfter(d time.Duration) float64 {
	n, ok := 0, 0
	for _, x := range r.results {
		if x.mistake == nil && x.at >= d {
			n++
			if x.ok {
				ok++
			}
		}
	}
	return pct(ok, n)
}

func (r *report) burstSuccess() float64 {
	n, ok := 0, 0
	for _, x := range r.results {
		if x.burst {
			n++
			if x.ok {
				ok++
			}
		}
	}
	return pct(ok, n)
}

// maxAttemptsOnBadKeys is the most chat attempts the simulator saw on one
// revoked or out-of-quota key.
func (r *report) maxAttemptsOnBadKeys() int {
	m := int64(0)
	for _, k := range r.sim.Keys {
		if k.State != providersim.KeyOK {
			m = max(m, k.Attempts)
		}
	}
	return int(m)
}

// bad reports whether the simulator refuses key k at time at whatever
// the request: revoked, out of quota, or past the time its credits ran
// out.
func (r *report) bad(k providersim.Key, at time.Time) bool {
	return k.State != providersim.KeyOK || k.NoQuotaAt > 0 && at.Sub(r.start) >= k.NoQuotaAt.D()
}

// keyAttempts is the chat attempts the simulator received on the keys of
// sim.Keys at the indexes given.
func (r *report) keyAttempts(indexes []int) int64 {
	n := int64(0)
	for _, k := range r.sim.Keys {
		if slices.Contains(indexes, k.Index) {
			n += k.Attempts
		}
	}
	return n
}

// badKeysBenched counts revoked and out-of-quota keys gpt-load holds out
// of rotation at the end.
func (r *report) badKeysBenched() int {
	bad := map[string]bool{}
	for _, k := range r.sc.sim.Keys {
		if r.bad(k, r.statsAt) {
			bad[secret.Mask(k.Key)] = true
		}
	}
	n := 0
	for _, v := range r.keys {
		if bad[v.Preview] && v.State != "active" {
			n++
		}
	}
	return n
}

// attemptsAfter is the most attempts (X-Gpt-Load-Attempts) of a regular
// request arriving after d, and how many took more than 2.
func (r *report) attemptsAfter(d time.Duration, _ bool) (most, over2 int) {
	for _, x := range r.results {
		if x.mistake == nil && x.at >= d {
			most = max(most, x.attempts)
			if x.attempts > 2 {
				over2++
			}
		}
	}
	return most, over2
}

// attemptsPerRequestIn is the mean X-Gpt-Load-Attempts of the requests
// arriving in [from, to): the client's view, which also counts attempts
// that never reached the simulator (connection refused).
func (r *report) attemptsPerRequestIn(from, to time.Duration) float64 {
	n, a := 0, 0
	for _, x := range r.results {
		if x.at >= from && x.at < to {
			n++
			a += x.attempts
		}
	}
	if n == 0 {
		return 0
	}
	return float64(a) / float64(n)
}

// maxMistakeAttempts is the most attempts of a mistake other than an
// unknown model (unknown: only those).
func (r *report) maxMistakeAttempts(unknown bool) int {
	m := 0
	for _, x := range r.results {
		if x.mistake != nil && (x.mistake.kind == "unknown_model") == unknown {
			m = max(m, x.attempts)
		}
	}
	return m
}

// unknownModelAttempts is the mean attempts of unknown-model mistakes in
// the first and the second half of the run.
func (r *report) unknownModelAttempts() (first, second float64) {
	var n, a [2]int
	for _, x := range r.results {
		if x.mistake != nil && x.mistake.kind == "unknown_model" {
			h := 0
			if x.at >= r.duration/2 {
				h = 1
			}
			n[h]++
			a[h] += x.attempts
		}
	}
	if n[0] > 0 {
		first = float64(a[0]) / float64(n[0])
	}
	if n[1] > 0 {
		second = float64(a[1]) / float64(n[1])
	}
	return first, second
}

// tableHeader and row render the Markdown table.
const tableHeader = "| scenario | client requests (mistakes) | success | mistakes as provider's 4xx | upstream attempts / request | upstream 429s (% of attempts) | good keys benched at end | recovery after episode | details | target | met |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|\n"

func (r *report) row() string {
	if r.err != nil {
		return fmt.Sprintf("| %s | run failed: %s | | | | | | | | %s | no |\n", r.sc.name, oneLine(r.err.Error()), r.sc.target)
	}
	rec := "—"
	if len(r.recovery) > 0 {
		var parts []string
		for _, d := range r.recovery {
			parts = append(parts, fmtRecovery(d))
		}
		rec = strings.Join(parts, ", ")
	}
	benched := fmt.Sprintf("%d", r.wrongBlacklisted+r.wrongCooling)
	if r.wrongBlacklisted+r.wrongCooling > 0 {
		benched = fmt.Sprintf("%d (%d blacklisted, %d cooling)", r.wrongBlacklisted+r.wrongCooling, r.wrongBlacklisted, r.wrongCooling)
	}
	met := "yes"
	if len(r.missed) > 0 {
		met = "no: " + strings.Join(r.missed, "; ")
	}
	details := r.details
	if details == "" {
		details = "—"
	}
	return fmt.Sprintf("| %s | %d (%d) | %.2f %% | %d/%d | %.2f | %d (%.1f %%) | %s | %s | %s | %s | %s |\n",
		r.sc.name, len(r.results), r.mistakes, r.success(), r.mistakesOK, r.mistakes, r.attemptsPerRequest(),
		r.tooMany(), 100*float64(r.tooMany())/math.Max(1, float64(r.sim.Attempts)), benched, rec, details, r.sc.target, met)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
