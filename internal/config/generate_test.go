package config

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/joho/godotenv"
)

var update = flag.Bool("update", false, "rewrite .env.example and docs/configuration.md's settings table from Variables (make docs)")

const (
	envExamplePath    = "../../.env.example"
	configurationPath = "../../docs/configuration.md"
)

// TestGenerated fails when a checked-in copy of the settings differs from
// what Variables produces; with -update it rewrites the copy instead.
func TestGenerated(t *testing.T) {
	t.Run(".env.example", func(t *testing.T) {
		checkGenerated(t, envExamplePath, EnvExample())
	})
	t.Run("docs/configuration.md", func(t *testing.T) {
		doc, err := os.ReadFile(configurationPath)
		if err != nil {
			t.Fatal(err)
		}
		before, rest, ok1 := bytes.Cut(doc, []byte(SettingsBegin))
		_, after, ok2 := bytes.Cut(rest, []byte(SettingsEnd))
		if !ok1 || !ok2 {
			t.Fatalf("%s lacks the marker lines %q and %q around the settings table", configurationPath, SettingsBegin, SettingsEnd)
		}
		want := bytes.Join([][]byte{before, []byte(SettingsBegin), SettingsTable(), []byte(SettingsEnd), after}, nil)
		checkGenerated(t, configurationPath, want)
	})
}

// checkGenerated compares the file at path with want, or writes want
// there under -update.
func checkGenerated(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s is not what internal/config generates (run make docs); line %d is\n\t%q\nwant\n\t%q", path, i+1, g, w)
		}
	}
}

// TestEnvExample checks what .env.example says: every line is a comment,
// blank or NAME=value; each variable of Variables is set exactly once, to
// its default, in the order of Variables; and the env file loader
// (godotenv, as gpt-load uses it) reads back exactly those defaults.
func TestEnvExample(t *testing.T) {
	example := EnvExample()
	var names []string
	seen := map[string]bool{}
	for i, l := range strings.Split(string(example), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			if len(l) > envExampleWidth {
				t.Errorf(".env.example line %d is %d bytes long; want at most %d: %q", i+1, len(l), envExampleWidth, l)
			}
			continue
		}
		name, _, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf(".env.example line %d is not NAME=value: %q", i+1, l)
			continue
		}
		if seen[name] {
			t.Errorf(".env.example sets %s twice", name)
		}
		seen[name] = true
		names = append(names, name)
	}
	if len(names) != len(Variables) {
		t.Errorf(".env.example sets %d variables; Variables has %d", len(names), len(Variables))
	}
	for i, v := range Variables {
		if i < len(names) && names[i] != v.Name {
			t.Errorf(".env.example sets %s in place %d; Variables has %s there", names[i], i+1, v.Name)
		}
	}

	read, err := godotenv.Parse(bytes.NewReader(example))
	if err != nil {
		t.Fatalf("godotenv.Parse(.env.example): %v", err)
	}
	for _, v := range Variables {
		got, ok := read[v.Name]
		switch {
		case !ok:
			t.Errorf("%s is in config.Variables but not in .env.example", v.Name)
		case got != v.Default:
			t.Errorf("%s: .env.example has %q; the default in config.Variables is %q", v.Name, got, v.Default)
		}
	}
	for name := range read {
		if _, ok := defaults[name]; !ok {
			t.Errorf("%s is in .env.example but not in config.Variables", name)
		}
	}
}

// TestSettingsTable checks that the table has one row of three cells per
// variable, in order, each naming the variable and its default.
func TestSettingsTable(t *testing.T) {
	rows := strings.Split(strings.TrimSuffix(string(SettingsTable()), "\n"), "\n")
	if len(rows) != 2+len(Variables) {
		t.Fatalf("SettingsTable() has %d lines; want a header, a rule and %d rows", len(rows), len(Variables))
	}
	for i, v := range Variables {
		row := rows[2+i]
		cells := strings.Split(strings.ReplaceAll(row, `\|`, ""), "|")
		if len(cells) != 5 { // "", name, default, meaning, ""
			t.Errorf("row %d = %q; want three cells", i+1, row)
			continue
		}
		if got, want := strings.TrimSpace(cells[1]), "`"+v.Name+"`"; got != want {
			t.Errorf("row %d names %s; want %s", i+1, got, want)
		}
		want := "empty"
		if v.Default != "" {
			want = "`" + v.Default + "`"
		}
		if got := strings.TrimSpace(cells[2]); got != want {
			t.Errorf("%s: the table's default is %s; want %s", v.Name, got, want)
		}
		if strings.TrimSpace(cells[3]) == "" || v.Help == "" || v.Section == "" {
			t.Errorf("%s lacks a Doc, a Help or a Section", v.Name)
		}
	}
}

func TestComment(t *testing.T) {
	cases := []struct{ doc, want string }{
		{"listen port, 1–65535", "Listen port, 1–65535."},
		{"`text` or `json`", "text or json."},
		{"path of the keys file (see [Keys file](#keys-file))", "Path of the keys file."},
		{"see [api.md](api.md#cors) for more.", "See api.md for more."},
	}
	for _, c := range cases {
		if got := comment(c.doc); got != c.want {
			t.Errorf("comment(%q) = %q; want %q", c.doc, got, c.want)
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aa bb cc averyverylongword d", 5)
	want := []string{"aa bb", "cc", "averyverylongword", "d"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("wrap(…, 5) = %q; want %q", got, want)
	}
}
