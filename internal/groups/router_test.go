package groups

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gpt-load/gpt-load/internal/secret"
)

func tokens(ts ...string) []secret.Key {
	out := make([]secret.Key, len(ts))
	for i, t := range ts {
		out[i] = secret.NewKey(t)
	}
	return out
}

// testSpecs are groups in name order, as Load returns them.
func testSpecs() []*Spec {
	return []*Spec{
		{Name: "a-openai", Models: []string{"gpt-4o*", "o1"}, ModelMap: map[string]string{"fast": "gpt-4o-mini", "o1": "o1-2024-12-17"}, Tokens: tokens("tok-a"), Fallback: []string{"c-shared"}},
		{Name: "b-claude", Models: []string{"claude-*"}, Tokens: tokens("tok-b", "tok-ab")},
		{Name: "c-shared", Models: []string{"gpt-4o", "*-mini", "deepseek-*"}, ModelMap: map[string]string{"fast": "deepseek-chat"}},
		{Name: "d-team", Models: []string{"team-*"}, Tokens: tokens("tok-ab", "tok-d")},
		{Name: "default"},
		{Name: "e-prefix-only", Tokens: tokens("tok-e")},
	}
}

func TestByModel(t *testing.T) {
	type want struct{ group, model string }
	cases := []struct {
		model, token string
		want         want
		err          error
	}{
		// The top-level token may use every group: first in name order.
		{"gpt-4o", "top", want{"a-openai", "gpt-4o"}, nil},
		{"gpt-4o-mini", "top", want{"a-openai", "gpt-4o-mini"}, nil},
		{"fast", "top", want{"a-openai", "gpt-4o-mini"}, nil},
		{"o1", "top", want{"a-openai", "o1-2024-12-17"}, nil}, // the alias wins over the group's own MODELS
		{"claude-3-opus", "top", want{"b-claude", "claude-3-opus"}, nil},
		{"deepseek-chat", "top", want{"c-shared", "deepseek-chat"}, nil},
		{"team-x", "top", want{"d-team", "team-x"}, nil},
		{"llama", "top", want{"default", "llama"}, nil},
		{"", "top", want{"default", ""}, nil},
		// A group's token: only the groups that name it.
		{"gpt-4o", "tok-a", want{"a-openai", "gpt-4o"}, nil},
		{"claude-3", "tok-a", want{}, ErrForbidden},
		{"claude-3", "tok-ab", want{"b-claude", "claude-3"}, nil},
		{"team-1", "tok-ab", want{"d-team", "team-1"}, nil},
		{"llama", "tok-a", want{}, ErrForbidden}, // default requires the top-level token
		// Without a token: only open groups (none here: there is a top-level token).
		{"deepseek-chat", "", want{}, ErrForbidden},
		{"deepseek-chat", "wrong", want{}, ErrForbidden},
		{"gpt-4o", "tok-b", want{}, ErrForbidden},
		{"gpt-4o-mini", "tok-a", want{"a-openai", "gpt-4o-mini"}, nil},
	}
	r := NewRouter(testSpecs(), secret.NewKey("top"))
	for _, c := range cases {
		t.Run(c.model+"/"+c.token, func(t *testing.T) {
			s, m, err := r.ByModel(c.model, r.Client(c.token))
			var got want
			if s != nil {
				got = want{s.Name, m}
			}
			if got != c.want || !errors.Is(err, c.err) {
				t.Errorf("ByModel(%q, %q) = %v, %v; want %v, %v", c.model, c.token, got, err, c.want, c.err)
			}
		})
	}
}

// TestByModelOpen: without a top-level AUTH_KEY, a group without tokens
// is open to anyone, but a group's token still may use only its groups.
func TestByModelOpen(t *testing.T) {
	r := NewRouter(testSpecs(), secret.Key{})
	cases := []struct {
		model, token, want string
		err                error
	}{
		{"deepseek-chat", "", "c-shared", nil},
		{"deepseek-chat", "anything", "c-shared", nil},
		{"gpt-4o-mini", "", "c-shared", nil}, // a-openai has tokens: skipped
		{"fast", "", "c-shared", nil},
		{"claude-3", "", "", ErrForbidden},
		{"llama", "", "default", nil},
		{"llama", "tok-a", "", ErrForbidden},
		{"deepseek-chat", "tok-a", "", ErrForbidden},
	}
	for _, c := range cases {
		s, _, err := r.ByModel(c.model, r.Client(c.token))
		got := ""
		if s != nil {
			got = s.Name
		}
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("ByModel(%q, %q) = %q, %v; want %q, %v", c.model, c.token, got, err, c.want, c.err)
		}
	}
	if !r.Open() {
		t.Error("Open() = false; want true (c-shared and default have no tokens)")
	}
}

func TestByModelNoDefault(t *testing.T) {
	specs := testSpecs()
	specs = append(specs[:4], specs[5])
	r := NewRouter(specs, secret.NewKey("top"))
	if s, _, err := r.ByModel("llama", r.Client("top")); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("ByModel(llama) = %v, %v; want %v", s, err, ErrModelNotFound)
	}
	if s, _, err := r.ByModel("", r.Client("top")); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("ByModel(\"\") = %v, %v; want %v", s, err, ErrModelNotFound)
	}
	if r.Default() != nil {
		t.Errorf("Default() = %v; want nil", r.Default())
	}
}

func TestAllowedAndKnown(t *testing.T) {
	specs := testSpecs()
	r := NewRouter(specs, secret.NewKey("top"))
	cases := []struct {
		token string
		known bool
		may   string // one letter per group: y or n
	}{
		{"top", true, "yyyyyy"},
		{"tok-a", true, "ynnnnn"},
		{"tok-ab", true, "nynynn"},
		{"tok-e", true, "nnnnny"},
		{"", false, "nnnnnn"},
		{"tok", false, "nnnnnn"},
		{"top ", false, "nnnnnn"},
	}
	for _, c := range cases {
		if got := r.Known(c.token); got != c.known {
			t.Errorf("Known(%q) = %v; want %v", c.token, got, c.known)
		}
		cl := r.Client(c.token)
		got := ""
		for _, s := range specs {
			got += map[bool]string{true: "y", false: "n"}[r.Allowed(s, cl)]
		}
		if got != c.may {
			t.Errorf("Allowed(each group, %q) = %s; want %s", c.token, got, c.may)
		}
	}
	if r.Open() {
		t.Error("Open() = true; want false (there is a top-level token)")
	}
	// A Client of another router is no one here.
	other := NewRouter(specs, secret.NewKey("top"))
	if r.Allowed(specs[0], other.Client("top")) {
		t.Error("Allowed(a-openai, another router's Client) = true; want false")
	}
	// A Spec not of this router.
	if r.Allowed(&Spec{Name: "a-openai"}, r.Client("top")) {
		t.Error("Allowed(a copy of a-openai) = true; want false")
	}
}

func TestPrefix(t *testing.T) {
	r := NewRouter(testSpecs(), secret.Key{})
	cases := []struct {
		path, group, rest string
		prefixed          bool
	}{
		{"/proxy/b-claude/v1/messages", "b-claude", "/v1/messages", true},
		{"/proxy/default/v1/chat/completions?x", "default", "/v1/chat/completions?x", true},
		{"/proxy/b-claude", "b-claude", "/", true},
		{"/proxy/b-claude/", "b-claude", "/", true},
		{"/proxy/nope/v1/x", "", "/v1/x", true},
		{"/proxy/", "", "/", true},
		{"/proxy//v1", "", "/v1", true},
		{"/proxy", "", "/proxy", false},
		{"/v1/chat/completions", "", "/v1/chat/completions", false},
		{"/proxyx/a", "", "/proxyx/a", false},
	}
	for _, c := range cases {
		s, rest, prefixed := r.Prefix(c.path)
		got := ""
		if s != nil {
			got = s.Name
		}
		if got != c.group || rest != c.rest || prefixed != c.prefixed {
			t.Errorf("Prefix(%q) = %q, %q, %v; want %q, %q, %v", c.path, got, rest, prefixed, c.group, c.rest, c.prefixed)
		}
	}
}

func TestFallback(t *testing.T) {
	specs := testSpecs()
	r := NewRouter(specs, secret.Key{})
	fb := r.Fallback(specs[0])
	if len(fb) != 1 || fb[0] != specs[2] {
		t.Errorf("Fallback(a-openai) = %v; want [c-shared]", fb)
	}
	if fb := r.Fallback(specs[2]); len(fb) != 0 {
		t.Errorf("Fallback(c-shared) = %v; want none", fb)
	}
	if r.Group("c-shared") != specs[2] || r.Group("x") != nil || r.Default() != specs[4] || len(r.Groups()) != len(specs) {
		t.Error("Group, Default or Groups disagree with the specs")
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, model string
		want           bool
	}{
		{"gpt-4o", "gpt-4o", true},
		{"gpt-4o", "gpt-4o-mini", false},
		{"gpt-4o*", "gpt-4o", true},
		{"gpt-4o*", "gpt-4o-mini", true},
		{"gpt-4o*", "gpt-4", false},
		{"*", "", true},
		{"*", "anything/at all", true},
		{"*-mini", "gpt-4o-mini", true},
		{"*-mini", "gpt-4o-mini-2", false},
		{"meta-llama/*", "meta-llama/Llama-3-70b", true},
		{"claude-*-sonnet*", "claude-3-5-sonnet-latest", true},
		{"claude-*-sonnet*", "claude-3-opus", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "ac", false},
		{"a*a", "a", false}, // prefix and suffix must not overlap
		{"a*a", "aa", true},
		{"**x", "x", true},
		{"a*b*b", "abb", true},
		{"a*bc*bd", "abcbcbd", true},
		{"gpt-4o?", "gpt-4o?", true}, // only * is special
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.model); got != c.want {
			t.Errorf("Match(%q, %q) = %v; want %v", c.pattern, c.model, got, c.want)
		}
	}
	s := &Spec{Models: []string{"gpt-4o*", "o1"}, ModelMap: map[string]string{"fast": "x"}}
	if !s.Serves("gpt-4o-mini") || !s.Serves("o1") || s.Serves("fast") || s.Serves("o3") {
		t.Error("Serves disagrees with MODELS")
	}
}

// benchRouter builds n groups, each with a literal model, two globs and
// two aliases, every one with its own token, and a default group.
func benchRouter(n int) (*Router, []string) {
	var specs []*Spec
	for i := range n {
		specs = append(specs, &Spec{
			Name:     fmt.Sprintf("g%02d", i),
			Models:   []string{fmt.Sprintf("model-%02d", i), fmt.Sprintf("fam%02d-*", i), fmt.Sprintf("*-suffix%02d", i)},
			ModelMap: map[string]string{fmt.Sprintf("alias-%02d", i): "up", fmt.Sprintf("short%02d", i): "up2"},
			Tokens:   tokens(fmt.Sprintf("sk-client-token-for-group-%02d-xxxxxxxxxxxxxxxx", i)),
		})
	}
	specs = append(specs, &Spec{Name: DefaultName})
	models := []string{
		"model-00", "alias-25", fmt.Sprintf("fam%02d-large", n-1), fmt.Sprintf("x-suffix%02d", n-1), "unknown-model",
	}
	return NewRouter(specs, secret.NewKey("sk-top-level-token-xxxxxxxxxxxxxxxxxxxxxxxx")), models
}

func BenchmarkRoute(b *testing.B) {
	r, models := benchRouter(50)
	top := "sk-top-level-token-xxxxxxxxxxxxxxxxxxxxxxxx"
	for _, m := range models {
		b.Run("ByModel/"+m, func(b *testing.B) {
			c := r.Client(top)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.ByModel(m, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("ClientAndByModel/worst", func(b *testing.B) {
		// The whole per-request cost: find the token, then the group.
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := r.ByModel("unknown-model", r.Client(top)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Prefix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s, _, _ := r.Prefix("/proxy/g42/v1/chat/completions"); s == nil {
				b.Fatal("no group")
			}
		}
	})
	b.Run("Client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !r.Client("sk-client-token-for-group-49-xxxxxxxxxxxxxxxx").Known() {
				b.Fatal("unknown")
			}
		}
	})
}

// TestRouteAllocs holds the hot paths to no allocation (the benchmark
// reports it; this fails on it).
func TestRouteAllocs(t *testing.T) {
	r, models := benchRouter(50)
	for _, m := range models {
		if n := testing.AllocsPerRun(100, func() {
			r.ByModel(m, r.Client("sk-client-token-for-group-49-xxxxxxxxxxxxxxxx"))
		}); n != 0 {
			t.Errorf("ByModel(%q) allocates %v times; want 0", m, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { r.Prefix("/proxy/g42/v1/chat/completions") }); n != 0 {
		t.Errorf("Prefix allocates %v times; want 0", n)
	}
}

// naiveByModel is §21's rule written plainly: the groups in name order,
// each its aliases then its MODELS, among those c may use.
func naiveByModel(r *Router, model string, c Client) (string, string, error) {
	forbidden := false
	if model != "" {
		for g, s := range r.groups {
			up, aliased := s.ModelMap[model]
			if !aliased && !s.Serves(model) {
				continue
			}
			if !r.allowed(g, c) {
				forbidden = true
				continue
			}
			if !aliased {
				up = model
			}
			return s.Name, up, nil
		}
	}
	switch {
	case forbidden:
		return "", "", ErrForbidden
	case r.def >= 0 && r.allowed(r.def, c):
		return DefaultName, model, nil
	case r.def >= 0:
		return "", "", ErrForbidden
	}
	return "", "", ErrModelNotFound
}

// TestByModelAgreesWithTheRule draws configurations and models from a
// small alphabet, so that globs, aliases and literals overlap often, and
// checks the indexed ByModel against naiveByModel.
func TestByModelAgreesWithTheRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int, alphabet string) string {
		b := make([]byte, rng.IntN(n+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for round := range 300 {
		var specs []*Spec
		for g := range 1 + rng.IntN(6) {
			s := &Spec{Name: fmt.Sprintf("g%d", g)}
			if g == 0 && rng.IntN(2) == 0 {
				s.Name = DefaultName
			}
			for range rng.IntN(4) {
				if m := word(4, "ab*"); m != "" && !slices.Contains(s.Models, m) {
					s.Models = append(s.Models, m)
				}
			}
			for range rng.IntN(3) {
				if s.ModelMap == nil {
					s.ModelMap = map[string]string{}
				}
				if a := word(3, "ab"); a != "" {
					s.ModelMap[a] = "up-" + a
				}
			}
			if rng.IntN(2) == 0 {
				s.Tokens = tokens(fmt.Sprintf("t%d", rng.IntN(3)))
			}
			specs = append(specs, s)
		}
		authKey := secret.Key{}
		if rng.IntN(2) == 0 {
			authKey = secret.NewKey("top")
		}
		r := NewRouter(specs, authKey)
		for range 50 {
			model, token := word(5, "ab"), []string{"", "top", "t0", "t1", "t2", "x"}[rng.IntN(6)]
			c := r.Client(token)
			s, up, err := r.ByModel(model, c)
			got := ""
			if s != nil {
				got = s.Name
			}
			wantName, wantUp, wantErr := naiveByModel(r, model, c)
			if got != wantName || up != wantUp || !errors.Is(err, wantErr) {
				for _, s := range r.groups {
					t.Logf("group %s models %q map %v tokens %v", s.Name, s.Models, s.ModelMap, s.Tokens)
				}
				t.Fatalf("round %d: ByModel(%q, %q) = %q, %q, %v; the rule says %q, %q, %v", round, model, token, got, up, err, wantName, wantUp, wantErr)
			}
		}
	}
}
