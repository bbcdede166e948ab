package groups

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/config"
)

// env is a map-backed getenv.
type env map[string]string

func (e env) get(name string) string { return e[name] }

// tree writes files under a new temporary folder: path → contents; a path
// ending in / is a folder. It returns the folder.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, body := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// loadTop loads the top-level configuration from e over root; GROUPS_DIR
// and KEYS_FILE are taken relative to root.
func loadTop(t *testing.T, root string, e env) (*config.Config, func(string) string) {
	t.Helper()
	e2 := env{}
	for k, v := range e {
		e2[k] = v
	}
	for _, k := range []string{"GROUPS_DIR", "KEYS_FILE"} {
		if v := e2[k]; v != "" {
			e2[k] = filepath.Join(root, v)
		}
	}
	top, err := config.Load(e2.get)
	if err != nil {
		t.Fatalf("config.Load(%v): %v", e2, err)
	}
	return top, e2.get
}

func names(specs []*Spec) []string {
	out := []string{}
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func TestLoad(t *testing.T) {
	root := tree(t, map[string]string{
		"keys.txt":                   "sk-top-1\nsk-top-2\n",
		"groups/openai/keys.txt":     "sk-o1\nsk-o2\nsk-o1\n",
		"groups/openai/group.env":    "MODELS=gpt-4o*, o1 ,\nMODEL_MAP=fast=gpt-4o-mini\nAUTH_KEY=team-a,team-b\nMAX_RETRIES=5\nFALLBACK=deepseek\n",
		"groups/deepseek/keys.txt":   "sk-d\n",
		"groups/deepseek/group.env":  "OPENAI_BASE_URL=https://api.deepseek.com\nMODELS=deepseek-*\n",
		"groups/claude/keys.txt":     "sk-ant\n",
		"groups/claude/group.env":    "# comment\nOPENAI_BASE_URL=\"https://api.anthropic.com\"\nMODELS=claude-*\nKEY_COOLDOWN=5\n",
		"groups/..data/keys.txt":     "ignored\n",
		"groups/.hidden/":            "",
		"groups/README.md":           "not a group",
		"groups/openai/notes.txt":    "ignored",
		"groups/empty-env/keys.txt":  "k\n",
		"groups/empty-env/group.env": "MAX_RETRIES=\n",
	})
	top, getenv := loadTop(t, root, env{"KEYS_FILE": "keys.txt", "GROUPS_DIR": "groups", "MAX_RETRIES": "2", "AUTH_KEY": "top-token"})
	specs, err := Load(top, getenv)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := names(specs), []string{"claude", "deepseek", "default", "empty-env", "openai"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Load names = %v; want %v", got, want)
	}
	by := map[string]*Spec{}
	for _, s := range specs {
		by[s.Name] = s
	}

	def := by["default"]
	if def.Config != top || def.Dir != "" || !reflect.DeepEqual(def.Keys, []string{"sk-top-1", "sk-top-2"}) {
		t.Errorf("default = %+v; want the top-level config, no dir, the top-level keys", def)
	}

	o := by["openai"]
	checks := []struct {
		what      string
		got, want any
	}{
		{"openai keys", o.Keys, []string{"sk-o1", "sk-o2"}},
		{"openai duplicates", o.Duplicates, 1},
		{"openai models", o.Models, []string{"gpt-4o*", "o1"}},
		{"openai model map", o.ModelMap, map[string]string{"fast": "gpt-4o-mini"}},
		{"openai tokens", len(o.Tokens), 2},
		{"openai token 0", o.Tokens[0].Reveal(), "team-a"},
		{"openai fallback", o.Fallback, []string{"deepseek"}},
		{"openai max retries", o.Config.MaxRetries, 5},
		{"openai keys file", o.Config.KeysFile, filepath.Join(root, "groups", "openai", "keys.txt")},
		{"openai auth key (top level)", o.Config.AuthKey.Reveal(), "top-token"},
		{"openai dialect", o.Dialect, OpenAI},
		{"openai dir", o.Dir, filepath.Join(root, "groups", "openai")},
		{"deepseek base", o.Config.Upstreams[0].String(), "https://api.openai.com"},
		{"deepseek base", by["deepseek"].Config.Upstreams[0].String(), "https://api.deepseek.com"},
		{"deepseek max retries (top level)", by["deepseek"].Config.MaxRetries, 2},
		{"deepseek tokens", len(by["deepseek"].Tokens), 0},
		{"claude dialect", by["claude"].Dialect, Anthropic},
		{"claude cooldown", by["claude"].Config.KeyCooldown, 5 * time.Second},
		{"empty value: top level", by["empty-env"].Config.MaxRetries, 2},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v; want %v", c.what, c.got, c.want)
		}
	}
}

// TestLoadProblems: every problem is reported, each on its line naming
// the group, the file and the variable, and the groups without a problem
// still load.
func TestLoadProblems(t *testing.T) {
	root := tree(t, map[string]string{
		"keys.txt":             "sk-top\n",
		"g/ok/keys.txt":        "k\n",
		"g/ok/group.env":       "MODELS=gpt-*\n",
		"g/openai/keys.txt":    "k\n",
		"g/claude/keys.txt":    "k\n",
		"g/claude/group.env":   "UPSTREAM_AUTH_STYLE=anthropic\nFALLBACK=openai,nope,claude,openai\n",
		"g/bad name/keys.txt":  "k\n",
		"g/default/keys.txt":   "k\n",
		"g/nokeys/":            "",
		"g/emptykeys/keys.txt": "# only a comment\n",
		"g/vars/keys.txt":      "k\n",
		"g/vars/group.env":     "PORT=1\nREDIS_URL=redis://:hunter2@x\nMAX_RETRIES=99\nTYPO=1\n",
		"g/maps/keys.txt":      "k\n",
		"g/maps/group.env":     "MODEL_MAP=a=b,c,=d,e=,f*=g,a=x\nMODELS=g?t,x,x\n",
		"g/tokens/keys.txt":    "k\n",
		"g/tokens/group.env":   "AUTH_KEY=top-secret-token\n",
		"g/start/keys.txt":     "k\n",
		"g/start/group.env":    "START_INDEX=3\n",
		"g/mixed/keys.txt":     "k\n",
		"g/mixed/group.env":    "OPENAI_BASE_URL=https://api.openai.com,https://api.anthropic.com\nFALLBACK=ok\n",
		"g/syntax/keys.txt":    "k\n",
		"g/syntax/group.env":   "MODELS='unclosed\n",
	})
	top, getenv := loadTop(t, root, env{"KEYS_FILE": "keys.txt", "GROUPS_DIR": "g", "AUTH_KEY": "top-secret-token"})
	specs, err := Load(top, getenv)
	if err == nil {
		t.Fatal("Load: nil error; want problems")
	}
	g := filepath.Join(root, "g")
	want := []string{
		`group "bad name" (` + filepath.Join(g, "bad name") + `): not a group name`,
		`group "claude" (` + filepath.Join(g, "claude", "group.env") + `): FALLBACK="openai,nope,claude,openai": group "claude" falls back to itself`,
		`group "claude" (` + filepath.Join(g, "claude", "group.env") + `): FALLBACK="openai,nope,claude,openai": "openai" is listed twice`,
		`group "claude" (` + filepath.Join(g, "claude", "group.env") + `): FALLBACK="openai,nope,claude,openai": group "openai" speaks another API dialect (openai) than anthropic`,
		`group "claude" (` + filepath.Join(g, "claude", "group.env") + `): FALLBACK="openai,nope,claude,openai": there is no group "nope"`,
		`group "default" (` + filepath.Join(g, "default") + `): the top-level configuration is the group "default"`,
		`group "nokeys" (` + filepath.Join(g, "nokeys", "keys.txt") + `): missing`,
		`group "emptykeys" (` + filepath.Join(g, "emptykeys", "keys.txt") + `): holds no key`,
		`group "vars" (` + filepath.Join(g, "vars", "group.env") + `): PORT: a daemon-wide setting`,
		`group "vars" (` + filepath.Join(g, "vars", "group.env") + `): REDIS_URL: a daemon-wide setting`,
		`group "vars" (` + filepath.Join(g, "vars", "group.env") + `): TYPO: not a gpt-load setting`,
		`group "vars" (` + filepath.Join(g, "vars", "group.env") + `): MAX_RETRIES="99": must be between 0 and 10`,
		`group "maps" (` + filepath.Join(g, "maps", "group.env") + `): MODEL_MAP="a=b,c,=d,e=,f*=g,a=x": "c" is not alias=upstream-model`,
		`"=d" is not alias=upstream-model`,
		`"e=" is not alias=upstream-model`,
		`"f*=g": an alias and its model are names, not globs`,
		`alias "a" is mapped twice`,
		`MODELS="g?t,x,x": "g?t": only * is a wildcard`,
		`MODELS="g?t,x,x": "x" is listed twice`,
		`group "tokens" (` + filepath.Join(g, "tokens", "group.env") + `): AUTH_KEY="top-…ken": is the top-level AUTH_KEY`,
		`group "start" (` + filepath.Join(g, "start", "group.env") + `): START_INDEX="3": must be less than the group's key count (1)`,
		`group "mixed" (` + filepath.Join(g, "mixed", "group.env") + `): FALLBACK="ok": group "mixed"'s upstreams speak several API dialects`,
		`group "syntax" (` + filepath.Join(g, "syntax", "group.env") + `): cannot read it`,
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	for _, w := range want {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("Load error lines containing %q = %d; want 1", w, n)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("Load error has %d lines; want %d", len(lines), len(want))
	}
	if strings.Contains(msg, "hunter2") || strings.Contains(msg, "top-secret-token") {
		t.Errorf("Load error shows a secret")
	}
	if t.Failed() {
		t.Logf("error:\n%v", msg)
	}
	if got, want := names(specs), []string{"default", "ok", "openai"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Load names = %v; want %v (the groups without a problem)", got, want)
	}
	broken := Broken(err)
	for _, b := range []string{"claude", "nokeys", "vars", "maps", "tokens", "start", "mixed", "syntax", "bad name", "default"} {
		if !contains(broken, b) {
			t.Errorf("Broken(err) = %v; want it to name %q", broken, b)
		}
	}
	for _, b := range []string{"ok", "openai"} {
		if contains(broken, b) {
			t.Errorf("Broken(err) = %v; want no %q", broken, b)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestLoadTopLevel(t *testing.T) {
	cases := []struct {
		name    string
		files   map[string]string
		env     env
		want    []string // group names
		wantErr string
	}{
		{"no groups dir: the top level alone",
			map[string]string{"keys.txt": "k\n"}, env{"KEYS_FILE": "keys.txt"}, []string{"default"}, ""},
		{"no groups dir: missing keys file",
			map[string]string{}, env{"KEYS_FILE": "keys.txt"}, []string{}, `keys file "`},
		{"no groups dir: start index",
			map[string]string{"keys.txt": "k\n"}, env{"KEYS_FILE": "keys.txt", "START_INDEX": "1"}, []string{}, `START_INDEX="1": must be less than the key count (1)`},
		{"groups only: no default group",
			map[string]string{"g/a/keys.txt": "k\n"}, env{"GROUPS_DIR": "g"}, []string{"a"}, ""},
		{"groups only: a folder named default is the default",
			map[string]string{"g/default/keys.txt": "k\n", "g/a/keys.txt": "k\n"}, env{"GROUPS_DIR": "g"}, []string{"a", "default"}, ""},
		{"groups dir missing",
			map[string]string{}, env{"GROUPS_DIR": "nope"}, []string{}, `GROUPS_DIR="`},
		{"groups dir empty, no keys file",
			map[string]string{"g/": ""}, env{"GROUPS_DIR": "g"}, []string{}, `holds no group and KEYS_FILE is unset`},
		{"groups dir empty, keys file",
			map[string]string{"g/": "", "keys.txt": "k\n"}, env{"GROUPS_DIR": "g", "KEYS_FILE": "keys.txt"}, []string{"default"}, ""},
		{"fallback to the default",
			map[string]string{"keys.txt": "k\n", "g/a/keys.txt": "k\n", "g/a/group.env": "FALLBACK=default"}, env{"GROUPS_DIR": "g", "KEYS_FILE": "keys.txt"}, []string{"a", "default"}, ""},
		{"top-level start index too large for a group",
			map[string]string{"keys.txt": "k1\nk2\n", "g/a/keys.txt": "k\n"}, env{"GROUPS_DIR": "g", "KEYS_FILE": "keys.txt", "START_INDEX": "1"}, []string{"default"}, `holds 1 keys, not more than the top-level START_INDEX=1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := tree(t, c.files)
			top, getenv := loadTop(t, root, c.env)
			specs, err := Load(top, getenv)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Load: %v; want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Load error = %v; want one containing %q", err, c.wantErr)
			}
			if got := names(specs); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Load names = %v; want %v", got, c.want)
			}
		})
	}
}

// TestLoadTopLevelProblemsOnce: a problem of the top-level configuration
// is config.Load's to report; a group that inherits the value does not
// repeat it.
func TestLoadTopLevelProblemsOnce(t *testing.T) {
	root := tree(t, map[string]string{"g/a/keys.txt": "k\n", "g/b/keys.txt": "k\n"})
	e := env{"GROUPS_DIR": filepath.Join(root, "g"), "MAX_RETRIES": "99"}
	top, err := config.Load(e.get)
	if err == nil {
		t.Fatal("config.Load: nil error; want MAX_RETRIES's")
	}
	specs, err := Load(top, e.get)
	if err != nil {
		t.Errorf("Load: %v; want nil (the problem is the top level's)", err)
	}
	if got, want := names(specs), []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Load names = %v; want %v", got, want)
	}
}

func TestDialectOf(t *testing.T) {
	cases := []struct {
		style, urls string
		want        Dialect
	}{
		{"auto", "https://api.openai.com", OpenAI},
		{"auto", "https://x.openai.azure.com", OpenAI},
		{"auto", "https://api.anthropic.com", Anthropic},
		{"auto", "https://generativelanguage.googleapis.com", Gemini},
		{"auto", "https://api.deepseek.com,https://api.openai.com", OpenAI},
		{"auto", "https://api.anthropic.com,https://api.openai.com", Mixed},
		{"anthropic", "https://gateway.example", Anthropic},
		{"gemini", "https://gateway.example", Gemini},
		{"azure", "https://gateway.example", OpenAI},
		{"bearer", "https://api.anthropic.com", OpenAI},
	}
	for _, c := range cases {
		cfg, err := config.Load(env{"UPSTREAM_AUTH_STYLE": c.style, "OPENAI_BASE_URL": c.urls}.get)
		if err != nil {
			t.Fatal(err)
		}
		if got := DialectOf(cfg); got != c.want {
			t.Errorf("DialectOf(%s, %s) = %v; want %v", c.style, c.urls, got, c.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "openai", "team-A_2", strings.Repeat("x", 32)} {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false; want true", n)
		}
	}
	for _, n := range []string{"", "a b", "a.b", "a/b", "é", strings.Repeat("x", 33), ".data"} {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true; want false", n)
		}
	}
}
