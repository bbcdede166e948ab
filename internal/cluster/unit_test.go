package cluster

import (
	"regexp"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		name, prefix, want string
	}{
		{"default", "gpt-load:key:", "gpt-load:key:*"},
		{"star", "dep*:key:", `dep\*:key:*`},
		{"question mark", "dep?:", `dep\?:*`},
		{"class", "dep[0-9]:", `dep\[0-9\]:*`},
		{"backslash", `a\b:`, `a\\b:*`},
		{"empty", "", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := match(tt.prefix); got != tt.want {
				t.Errorf("match(%q) = %q; want %q", tt.prefix, got, tt.want)
			}
		})
	}
}

func TestQuotesKey(t *testing.T) {
	const key = "sk-proj-TORZKpSiKkRvhqppWUlXpwGhLjWPorkymQGQHyPr"
	tests := []struct {
		name, reason string
		want         bool
	}{
		{"label", "invalid_api_key", false},
		{"status", "status 401", false},
		{"long label", "context_length_exceeded", false},
		{"whole key", key, true},
		{"folded key", "sk-proj-torzkpsikkrvhqppwulxpwghljwporkymqgqhypr", true},
		{"20 characters of it", "code " + key[10:30], true},
		{"19 characters of it", "code " + key[10:29], false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quotesKey(tt.reason, key); got != tt.want {
				t.Errorf("quotesKey(%q, key) = %v; want %v", tt.reason, got, tt.want)
			}
		})
	}
	if !quotesKey("short-key here", "short-key") {
		t.Error("quotesKey(reason, short key) = false for a reason holding the whole short key; want true")
	}
}

func TestFingerprint(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, secret := range []string{"", "s3cret"} {
		a, b := Fingerprint(secret, "sk-test-a"), Fingerprint(secret, "sk-test-b")
		for _, fp := range []string{a, b} {
			if !hex32.MatchString(fp) {
				t.Errorf("Fingerprint(%q, …) = %q; want 32 lowercase hex digits", secret, fp)
			}
		}
		if a == b {
			t.Errorf("Fingerprint(%q, …) gives %q for two keys; want them distinct", secret, a)
		}
		if again := Fingerprint(secret, "sk-test-a"); again != a {
			t.Errorf("Fingerprint(%q, same key) = %q then %q; want it stable", secret, a, again)
		}
	}
	// Keyed, the name cannot be checked against a guess without the
	// secret: it is neither the plain hash nor another secret's.
	plain, one, other := Fingerprint("", "sk-test-a"), Fingerprint("one", "sk-test-a"), Fingerprint("other", "sk-test-a")
	if one == plain || one == other {
		t.Errorf("Fingerprint under secrets \"\", one, other = %q, %q, %q; want three different names", plain, one, other)
	}
}
