package config

import "testing"

func TestClosestNamesTheMisspelledVariable(t *testing.T) {
	for in, want := range map[string]string{
		"OPENAI_BASEURL": "OPENAI_BASE_URL",
		"MAX_RETRY":      "MAX_RETRIES",
		"AUTHKEY":        "AUTH_KEY",
		"KEY_FILE":       "KEYS_FILE",
		"ALLOWED_ORIGIN": "ALLOWED_ORIGINS",
	} {
		if Known(in) {
			t.Errorf("Known(%q) = true", in)
		}
		if got := Closest(in); got != want {
			t.Errorf("Closest(%q) = %q; want %q", in, got, want)
		}
	}
	if !Known("MAX_RETRIES") {
		t.Error("Known(MAX_RETRIES) = false")
	}
}
