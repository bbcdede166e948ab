package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// The settings are written out in two places besides -h: .env.example and
// the table of docs/configuration.md. Both are generated from Variables by
// the functions below; TestGenerated fails when a checked-in copy differs
// from what they produce, and rewrites it with -update (make docs). They
// live in a test file: the binary never needs them.

// envExampleHeader opens .env.example.
const envExampleHeader = `# gpt-load configuration. Copy to .env (cp .env.example .env) and edit.
# Every value below is the default; delete a line or leave it empty to keep
# the default. Variables set in the real environment win over this file.
# Booleans: true/false, 1/0, yes/no, on/off. Durations: whole seconds.
# Generated from config.Variables (internal/config): edit it, run make docs.
`

// envExampleWidth is the width comments are wrapped at in .env.example.
const envExampleWidth = 76

// EnvExample returns the contents of .env.example: every variable set to
// its default, under its section's header, with its description as a
// comment above it.
func EnvExample() []byte {
	var b bytes.Buffer
	b.WriteString(envExampleHeader)
	section := ""
	for _, v := range Variables {
		if v.Section != section {
			section = v.Section
			fmt.Fprintf(&b, "\n# --- %s ---\n", section)
		}
		for _, line := range wrap(comment(v.Doc), envExampleWidth-2) {
			fmt.Fprintf(&b, "# %s\n", line)
		}
		fmt.Fprintf(&b, "%s=%s\n", v.Name, v.Default)
	}
	return b.Bytes()
}

// SettingsTable returns the Markdown table of every variable, its default
// and its description, as docs/configuration.md holds it between
// SettingsBegin and SettingsEnd.
func SettingsTable() []byte {
	var b bytes.Buffer
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range Variables {
		def := "empty"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, def, strings.ReplaceAll(v.Doc, "|", `\|`))
	}
	return b.Bytes()
}

// The marker lines around the generated table in docs/configuration.md.
const (
	SettingsBegin = "<!-- settings:begin (generated from internal/config; run make docs) -->\n"
	SettingsEnd   = "<!-- settings:end -->\n"
)

var (
	mdSee  = regexp.MustCompile(` \(see \[[^\]]*\]\([^)]*\)\)`)
	mdLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// comment turns a Doc into the plain-text sentence .env.example shows:
// "(see [page](link))" references are dropped (the docs are one click
// away), other links become their text, code loses its backticks, and
// the first letter is capitalised unless it starts a value in code.
func comment(doc string) string {
	s := mdSee.ReplaceAllString(doc, "")
	s = mdLink.ReplaceAllString(s, "$1")
	if s != "" && s[0] != '`' {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	s = strings.ReplaceAll(s, "`", "")
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// wrap splits s into lines of at most width bytes at spaces; a word
// longer than width gets a line of its own.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
