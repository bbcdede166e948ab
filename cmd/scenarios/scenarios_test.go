package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/groups"
	"github.com/gpt-load/gpt-load/internal/secret"
)

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.md")
	os.WriteFile(path, []byte("# T\n\nintro\n\n## Before\n\nold before\n\n## Notes\n\nkeep\n"), 0o600)
	steps := []struct{ title, body string }{
		{"Before", "new before"},
		{"After", "after 1"},
		{"After", "after 2"},
	}
	for _, s := range steps {
		if err := writeSection(path, s.title, s.body); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	want := "# T\n\nintro\n\n## Before\n\nnew before\n\n## Notes\n\nkeep\n\n## After\n\nafter 2\n"
	if string(b) != want {
		t.Errorf("file = %q; want %q", b, want)
	}
}

func TestProviderAnswer(t *testing.T) {
	unknown := mistake{kind: "unknown_model", model: "gpt-5o"}
	tests := []struct {
		name   string
		m      mistake
		status int
		body   string
		want   bool
	}{
		{"bad json", mistake{kind: "bad_json"}, 400, `{"error":{"message":"We could not parse the JSON body of your request.","type":"invalid_request_error","param":null,"code":null}}`, true},
		{"no messages", mistake{kind: "no_messages"}, 400, `{"error":{"message":"Missing required parameter: 'messages'.","type":"invalid_request_error","param":"messages","code":"missing_required_parameter"}}`, true},
		{"unknown model", unknown, 404, "{\"error\":{\"message\":\"The model `gpt-5o` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}", true},
		{"another model named", unknown, 404, "{\"error\":{\"message\":\"The model `gpt-4o` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}", false},
		{"proxy's own 503", unknown, 503, `{"error":{"message":"no key available","type":"server_error","code":"no_available_keys"}}`, false},
		{"storm 429 passed on", unknown, 429, `{"error":{"message":"Rate limit reached for requests from your IP address. Please try again later.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, true},
		{"flagged", mistake{kind: "flagged"}, 403, `{"error":{"code":403,"message":"gpt-4o requires moderation on OpenAI. Your input was flagged for \"harassment\". No credits were charged.","metadata":{"reasons":["harassment"],"flagged_input":"x","provider_name":"OpenAI","model_slug":"gpt-4o"}},"user_id":"u"}`, true},
		{"flagged as proxy's 503", mistake{kind: "flagged"}, 503, `{"error":{"message":"no key available","type":"gpt_load_error","code":"no_available_keys"}}`, false},
		{"foreign file", mistake{kind: "foreign_file"}, 403, `{"error":{"code":403,"message":"You do not have permission to access the File file-otherproj12 or it may not exist.","status":"PERMISSION_DENIED"}}`, true},
		{"foreign file as a 401", mistake{kind: "foreign_file"}, 401, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`, false},
		{"status changed", mistake{kind: "bad_json"}, 502, `{"error":{"message":"We could not parse the JSON body of your request.","type":"invalid_request_error","code":null}}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := providerAnswer(tc.m, tc.status, []byte(tc.body)); got != tc.want {
				t.Errorf("providerAnswer(%v, %d, …) = %v; want %v", tc.m, tc.status, got, tc.want)
			}
		})
	}
}

// TestPlan checks the traffic is open loop at the scenario's rate, with
// its share of mistakes and streams, and the same on every run.
func TestPlan(t *testing.T) {
	for _, s := range scenarios() {
		t.Run(s.name, func(t *testing.T) {
			d := 20 * time.Second
			reqs := plan(s, d)
			n, mistakes, streams, bursts := 0, 0, 0, 0
			for i, r := range reqs {
				if r.burst {
					bursts++
					continue
				}
				if want := time.Duration(float64(i) / s.rate * float64(time.Second)); r.at != want {
					t.Fatalf("arrival %d at %v; want %v", i, r.at, want)
				}
				n++
				if r.mistake != nil {
					mistakes++
				} else if r.stream {
					streams++
				}
			}
			if n != int(s.rate*d.Seconds()) {
				t.Errorf("%d arrivals; want %v", n, s.rate*d.Seconds())
			}
			if got := float64(mistakes) / float64(n); got < s.mistakeShare*0.6 || got > s.mistakeShare*1.4 {
				t.Errorf("mistake share %.3f; want about %.2f", got, s.mistakeShare)
			}
			if s.streamEvery > 0 && streams < (n-mistakes)/s.streamEvery-1 {
				t.Errorf("%d streams of %d regular; want one in %d", streams, n-mistakes, s.streamEvery)
			}
			again := plan(s, d)
			for i := range reqs {
				if string(reqs[i].body()) != string(again[i].body()) {
					t.Fatalf("request %d differs between two plans", i)
				}
			}
			// Every key's preview is unique, so /stats can be matched.
			seen := map[string]bool{}
			for _, k := range s.sim.Keys {
				p := secret.Mask(k.Key)
				if seen[p] || strings.Contains(p, k.Key) {
					t.Fatalf("preview %q repeats or is not masked", p)
				}
				seen[p] = true
			}
		})
	}
}

// TestWriteGroups: the groups scenario's GROUPS_DIR is one gpt-load
// accepts, each group with its share of the keys and its settings.
func TestWriteGroups(t *testing.T) {
	var s scenario
	for _, sc := range scenarios() {
		if sc.name == "groups" {
			s = sc
		}
	}
	if len(s.groups) == 0 {
		t.Fatal("no groups scenario")
	}
	dir := filepath.Join(t.TempDir(), "groups")
	if err := writeGroups(dir, s); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GROUPS_DIR": dir, "OPENAI_BASE_URL": "http://127.0.0.1:9"}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.Load(getenv)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := groups.Load(cfg, getenv)
	if err != nil {
		t.Fatalf("groups.Load: %v", err)
	}
	if len(specs) != len(s.groups) {
		t.Fatalf("groups.Load gave %d groups; want %d", len(specs), len(s.groups))
	}
	for i, g := range s.groups {
		if specs[i].Name != g.name || len(specs[i].Keys) != len(g.keys) {
			t.Errorf("group %d = %q with %d keys; want %q with %d", i, specs[i].Name, len(specs[i].Keys), g.name, len(g.keys))
		}
	}
}
