package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// issueRef matches a reference to an issue by its number ("issue 9",
// "issues 9, 18 and 21", "Issue 18's"): a reader of the docs or of
// `make help` has no tracker to look the number up in, so the text says
// what the change was instead.
var issueRef = regexp.MustCompile(`(?i)\bissues? #?[0-9]+`)

// TestDocsNameNoIssueNumbers: README.md, docs/ (the measurement logs
// included: their sections say what changed, not which issue), the
// deployment files and `make help` never refer to an issue by number.
func TestDocsNameNoIssueNumbers(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, readmePath, makePath, dockerfilePath, composePath, "../../.env.example")
	for _, page := range pages {
		for i, line := range strings.Split(readDeployFile(t, page), "\n") {
			if m := issueRef.FindString(line); m != "" {
				t.Errorf("%s:%d says %q: say what the change was, not its issue number", filepath.Base(page), i+1, m)
			}
		}
	}
	out, err := exec.Command("make", "-s", "-C", "../..", "help").CombinedOutput()
	if err != nil {
		t.Skipf("make help: %v\n%s", err, out)
	}
	if m := issueRef.FindString(string(out)); m != "" {
		t.Errorf("make help says %q: say what the change was, not its issue number", m)
	}
}
