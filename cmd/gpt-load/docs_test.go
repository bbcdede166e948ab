package main

// Tests that keep README.md and docs/ in agreement with the code and with
// each other: the make targets, the settings the README names, the
// management endpoints, the headings that code comments cite, and the
// links between the pages. They read the files as text.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	readmePath = "../../README.md"
	docsDir    = "../../docs"
	makePath   = "../../Makefile"
)

// tableRows returns the cells of every row of the Markdown tables in the
// section of doc under heading (a "## " line), header and rule rows left
// out. An empty heading means the whole document.
func tableRows(t *testing.T, doc, heading string) [][]string {
	t.Helper()
	text := doc
	if heading != "" {
		_, after, ok := strings.Cut(doc, "\n## "+heading+"\n")
		if !ok {
			t.Fatalf("no section %q", heading)
		}
		text, _, _ = strings.Cut(after, "\n## ")
	}
	var rows [][]string
	header := true
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "|") {
			header = true
			continue
		}
		if header { // the header row; the rule follows
			header = false
			continue
		}
		if strings.HasPrefix(l, "|---") || strings.HasPrefix(l, "|:--") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// code returns the text of the `code` spans in s.
func code(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestMakeTargetsDocumented: the table of docs/operations.md "Make targets"
// lists every target the Makefile documents with "## ", and nothing else.
func TestMakeTargetsDocumented(t *testing.T) {
	var inMake []string
	for _, m := range regexp.MustCompile(`(?m)^([a-zA-Z_-]+):.*## `).FindAllStringSubmatch(readDeployFile(t, makePath), -1) {
		if m[1] != "help" { // `make` alone prints the list; the page says so
			inMake = append(inMake, m[1])
		}
	}
	var inDocs []string
	for _, row := range tableRows(t, readDeployFile(t, filepath.Join(docsDir, "operations.md")), "Make targets") {
		name, ok := strings.CutPrefix(strings.Trim(row[0], "`"), "make ")
		if !ok {
			t.Errorf("Make targets row %q does not start with `make NAME`", row[0])
			continue
		}
		inDocs = append(inDocs, name)
	}
	for _, n := range inMake {
		if !slices.Contains(inDocs, n) {
			t.Errorf("make %s is in the Makefile's help but not in docs/operations.md, \"Make targets\"", n)
		}
	}
	for _, n := range inDocs {
		if !slices.Contains(inMake, n) {
			t.Errorf("make %s is in docs/operations.md, \"Make targets\", but the Makefile has no such documented target", n)
		}
	}
}

// TestREADMESettings: every variable the README's short settings table
// names exists, with the default config.Variables gives it.
func TestREADMESettings(t *testing.T) {
	rows := tableRows(t, readDeployFile(t, readmePath), "The settings most people change")
	if len(rows) < 5 {
		t.Fatalf("README's settings table has %d rows; want the handful most people change", len(rows))
	}
	for _, row := range rows {
		names := code(row[0])
		defs := strings.Split(row[1], " / ")
		if len(names) != len(defs) {
			t.Errorf("README settings row %q: %d names but %d defaults", row[0], len(names), len(defs))
			continue
		}
		for i, name := range names {
			want := "empty"
			if d := configDefault(t, name); d != "" {
				want = "`" + d + "`"
			}
			if got := strings.TrimSpace(defs[i]); got != want {
				t.Errorf("README: %s defaults to %s; config.Variables says %s", name, got, want)
			}
		}
	}
}

// TestManagementEndpointsAgree: the README's endpoint table and
// docs/api.md's list the same paths with the same methods.
func TestManagementEndpointsAgree(t *testing.T) {
	methods := func(rows [][]string) map[string]string {
		m := map[string]string{}
		for _, row := range rows {
			if p := code(row[0]); len(p) == 1 && strings.HasPrefix(p[0], "/") {
				m[p[0]] = row[1]
			}
		}
		return m
	}
	readme := methods(tableRows(t, readDeployFile(t, readmePath), "Management endpoints"))
	api := methods(tableRows(t, readDeployFile(t, filepath.Join(docsDir, "api.md")), "Management endpoints"))
	want := []string{"/blacklist", "/health", "/metrics", "/reset-keys", "/stats", "/status"}
	for name, m := range map[string]map[string]string{"README.md": readme, "docs/api.md": api} {
		got := slices.Sorted(func(yield func(string) bool) {
			for p := range m {
				if !yield(p) {
					return
				}
			}
		})
		if !slices.Equal(got, want) {
			t.Errorf("%s lists the management paths %v; want %v", name, got, want)
		}
	}
	for p, m := range readme {
		if api[p] != m {
			t.Errorf("%s: README says methods %q; docs/api.md says %q", p, m, api[p])
		}
	}
}

// TestREADMEQuickStart: the quick start sets AUTH_KEY before it starts
// anything, and says what the defaults without it mean.
func TestREADMEQuickStart(t *testing.T) {
	readme := readDeployFile(t, readmePath)
	_, qs, _ := strings.Cut(readme, "\n## Quick start\n")
	qs, _, _ = strings.Cut(qs, "\n## ")
	qs = strings.Join(strings.Fields(qs), " ") // a phrase may wrap
	auth, run := strings.Index(qs, "AUTH_KEY="), strings.Index(qs, "make run")
	if auth < 0 || run < 0 || auth > run {
		t.Errorf("README's quick start must set AUTH_KEY= before make run (AUTH_KEY= at %d, make run at %d)", auth, run)
	}
	for _, s := range []string{"HOST=0.0.0.0", "open proxy", "make test", "docker run", "docker compose"} {
		if !strings.Contains(qs, s) {
			t.Errorf("README's quick start does not mention %q", s)
		}
	}
	if n := strings.Count(readme, "\n"); n > 300 {
		t.Errorf("README.md has %d lines; it is the front door, the manual belongs in docs/", n)
	}
}

// TestDocHeadings: the sections that code comments cite, as
// (docs/PAGE.md, "Heading"), exist.
func TestDocHeadings(t *testing.T) {
	want := map[string][]string{
		"configuration.md": {"Settings", "Keys file", "Command line", "Timeouts"},
		"api.md": {"Forwarding", "Upstream auth styles", "Client authentication", "Using it from an SDK",
			"Streaming", "Errors", "Bad input and faults", "Management endpoints", "CORS", "Status page"},
		"key-health.md": {"How answers are classified", "The requested model", "Keys: blacklisting, cooling, models",
			"When no key is usable: QUEUE_TIMEOUT", "Retries", "Target benching",
			"Correlated failures: blaming the upstream, not the keys", "Re-checking blacklisted keys",
			"With Redis: ordered changes", "Watching it"},
		"operations.md": {"Docker", "Scaling out with Redis", "Metrics", "Grafana", "Logging", "Signals",
			"Validating keys", "Make targets"},
		"performance.md":  {"Figures", "How to measure"},
		"architecture.md": {"Packages", "A request's path", "The outcome record", "Routes", "Dependencies", "Differences from the original"},
		"groups.md": {"Examples", "Folder layout", "group.env", "Routing", "Tokens", "Fallback", "GET /v1/models",
			"What it shows", "Reloading", "With Redis", "Validation errors"},
	}
	for page, headings := range want {
		doc := readDeployFile(t, filepath.Join(docsDir, page))
		for _, h := range headings {
			if !strings.Contains(doc, "\n## "+h+"\n") {
				t.Errorf("docs/%s has no section \"## %s\"", page, h)
			}
		}
	}
}

// anchor is the fragment GitHub gives a heading: lower case, punctuation
// other than - and _ dropped, spaces turned into -.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the fragments of the headings of a Markdown document,
// code blocks left out.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		a := anchor(strings.TrimSpace(strings.TrimLeft(l, "#")))
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestDocLinks: every relative link of README.md and docs/*.md names a file
// that exists and, for a Markdown page, a heading it has.
func TestDocLinks(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, readmePath)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	fence := regexp.MustCompile("(?s)```.*?```")
	for _, page := range pages {
		text := fence.ReplaceAllString(readDeployFile(t, page), "")
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s, which does not exist", filepath.Base(page), target)
				continue
			}
			if frag != "" && strings.HasSuffix(path, ".md") && !anchors(readDeployFile(t, path))[frag] {
				t.Errorf("%s links to %s, which has no heading #%s", filepath.Base(page), file, frag)
			}
		}
	}
}

// TestCitedSectionsExist: every comment that cites a section as
// (docs/PAGE.md, "Heading"), in the Go sources and the deployment files,
// names a page and a "## " heading it has. A citation may wrap across
// comment lines.
func TestCitedSectionsExist(t *testing.T) {
	var files []string
	for _, dir := range []string{"../../cmd", "../../internal", "../../pkg", "../../scripts"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	files = append(files, dockerfilePath, composePath, makePath)
	joinComments := regexp.MustCompile(`\n\s*(//|#)\s*`)
	cite := regexp.MustCompile(`docs/([a-z-]+\.md),\s+"([^"]+)"`)
	n := 0
	for _, f := range files {
		text := joinComments.ReplaceAllString(readDeployFile(t, f), " ")
		for _, m := range cite.FindAllStringSubmatch(text, -1) {
			n++
			doc, err := os.ReadFile(filepath.Join(docsDir, m[1]))
			if err != nil {
				t.Errorf("%s cites docs/%s, which does not exist", f, m[1])
				continue
			}
			if !strings.Contains(string(doc), "\n## "+m[2]+"\n") {
				t.Errorf("%s cites (docs/%s, %q); the page has no such section", f, m[1], m[2])
			}
		}
	}
	if n == 0 {
		t.Error("found no (docs/PAGE.md, \"Heading\") citation at all; is the pattern still the one in use?")
	}
	t.Logf("%d citations checked", n)
}
