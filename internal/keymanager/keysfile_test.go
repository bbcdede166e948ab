package keymanager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// parseCases seed both TestParse and FuzzParse.
var parseCases = []struct {
	name    string
	in      string
	want    []string
	dups    int
	wantErr string // substring; "" for success
}{
	{"one key", "sk-a", []string{"sk-a"}, 0, ""},
	{"one key with newline", "sk-a\n", []string{"sk-a"}, 0, ""},
	{"lines", "sk-a\nsk-b\nsk-c\n", []string{"sk-a", "sk-b", "sk-c"}, 0, ""},
	{"crlf", "sk-a\r\nsk-b\r\n", []string{"sk-a", "sk-b"}, 0, ""},
	{"no final newline", "sk-a\nsk-b", []string{"sk-a", "sk-b"}, 0, ""},
	{"surrounding whitespace", "  sk-a  \n\tsk-b\t\r\n \u00a0sk-c\u00a0\n", []string{"sk-a", "sk-b", "sk-c"}, 0, ""},
	{"blank lines", "\n\nsk-a\n \n\t\n\r\nsk-b\n\n", []string{"sk-a", "sk-b"}, 0, ""},
	{"comments", "# production keys\nsk-a\n  # indented comment\n#sk-b\nsk-c # team A\nsk-d\t#tab\nsk-e#f\n", []string{"sk-a", "sk-c", "sk-d", "sk-e#f"}, 0, ""},
	{"trailing comment", "sk-proj-eeee # trailing comment\n", []string{"sk-proj-eeee"}, 0, ""},
	{"comment after a spaced line", "sk a # c\nsk-b\n", []string{"sk-b"}, 0, ""},
	{"comment after a non-breaking space", "sk-a\u00a0# c\n", []string{"sk-a"}, 0, ""},
	{"control char in a comment", "sk-a # \x01\n", []string{"sk-a"}, 0, ""},
	{"duplicates dropped and counted", "sk-a\nsk-b\nsk-a\n sk-b \nsk-a\r\nsk-c\n", []string{"sk-a", "sk-b", "sk-c"}, 3, ""},
	{"duplicate comment lines are not counted", "# x\n# x\nsk-a\n", []string{"sk-a"}, 0, ""},
	{"bom", "\xef\xbb\xbfsk-a\nsk-b\n", []string{"sk-a", "sk-b"}, 0, ""},
	{"bom before comment", "\xef\xbb\xbf# keys\nsk-a\n", []string{"sk-a"}, 0, ""},
	{"inner space skipped", "sk a\nsk-b\n", []string{"sk-b"}, 0, ""},
	{"only spaced lines", "Bearer sk-a\n", nil, 0, ErrNoKeys.Error()},
	{"non-ascii key", "ключ-1\n", []string{"ключ-1"}, 0, ""},
	{"control char", "sk-a\nsk-\x01secret\n", nil, 0, "line 2: key contains a control character"},
	{"tab inside key", "# c\n\nsk-\tsecret\nsk-b\n", []string{"sk-b"}, 0, ""},
	{"lone cr inside key", "sk-a\rsk-secret\nsk-b\n", []string{"sk-b"}, 0, ""},
	{"del inside key", "sk-a\nsk-b\nsk-c\nsk-se\x7fcret", nil, 0, "line 4: key contains a control character"},
	{"nul inside key", "sk-se\x00cret\n", nil, 0, "line 1: key contains a control character"},
	{"empty", "", nil, 0, ErrNoKeys.Error()},
	{"only bom", "\xef\xbb\xbf", nil, 0, ErrNoKeys.Error()},
	{"only blank lines", "\n \r\n\t\n", nil, 0, ErrNoKeys.Error()},
	{"only comments", "# one\n# two\n   #three\n", nil, 0, ErrNoKeys.Error()},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %+v, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("Parse(%q) error = %q; want no key text in it", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v; want nil", tc.in, err)
			}
			if !reflect.DeepEqual(got.Keys, tc.want) || got.Duplicates != tc.dups {
				t.Errorf("Parse(%q) = %q, %d duplicates; want %q, %d duplicates", tc.in, got.Keys, got.Duplicates, tc.want, tc.dups)
			}
			checkParse(t, tc.in, got, err)
		})
	}
}

// TestParseSpacedLines: a line with whitespace inside is no key; its
// number is reported, its text nowhere.
func TestParseSpacedLines(t *testing.T) {
	got, err := Parse([]byte("sk-a\nsk secret\n# c\nsk-b # team\nBearer sk-secret # x\nsk-c\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sk-a", "sk-b", "sk-c"}; !reflect.DeepEqual(got.Keys, want) || !reflect.DeepEqual(got.Spaced, []int{2, 5}) {
		t.Errorf("Parse = %q, spaced lines %v; want %q, [2 5]", got.Keys, got.Spaced, want)
	}
}

func TestParseNoKeysIsErrNoKeys(t *testing.T) {
	for _, in := range []string{"", "# only\n", "\n\n"} {
		t.Run(in, func(t *testing.T) {
			_, err := Parse([]byte(in))
			if !errors.Is(err, ErrNoKeys) {
				t.Errorf("Parse(%q) error = %v; want ErrNoKeys", in, err)
			}
		})
	}
}

func TestParseReader(t *testing.T) {
	in := "sk-a\r\n# c\nsk-b\nsk-a\n"
	got, err := ParseReader(strings.NewReader(in))
	if err != nil {
		t.Fatalf("ParseReader(%q) error = %v; want nil", in, err)
	}
	if want := []string{"sk-a", "sk-b"}; !reflect.DeepEqual(got.Keys, want) || got.Duplicates != 1 {
		t.Errorf("ParseReader(%q) = %q, %d; want %q, 1", in, got.Keys, got.Duplicates, want)
	}
}

// writeFile writes content to a fresh file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("os.WriteFile(%q): %v", path, err)
	}
	return path
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		path    string
		want    []string
		wantErr []string // substrings
		is      error
	}{
		{"ok", writeFile(t, "\xef\xbb\xbfsk-a\r\nsk-b\r\n"), []string{"sk-a", "sk-b"}, nil, nil},
		{"missing", filepath.Join(dir, "nope.txt"), nil, []string{filepath.Join(dir, "nope.txt")}, os.ErrNotExist},
		{"directory", dir, nil, []string{dir}, nil},
		{"empty", writeFile(t, ""), nil, []string{"keys.txt", "no keys"}, ErrNoKeys},
		{"only comments", writeFile(t, "# a\n# b\n"), nil, []string{"keys.txt", "no keys"}, ErrNoKeys},
		{"control char", writeFile(t, "sk-good\n\nsk-bad\x1bsecret\n"), nil, []string{"keys.txt", "line 3"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFile(tc.path)
			if tc.wantErr == nil {
				if err != nil || !reflect.DeepEqual(got.Keys, tc.want) {
					t.Errorf("ParseFile(%q) = %q, %v; want %q, nil", tc.path, got.Keys, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseFile(%q) = %q, nil; want an error", tc.path, got.Keys)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseFile(%q) error = %q; want it to contain %q", tc.path, err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("ParseFile(%q) error = %v; want errors.Is %v", tc.path, err, tc.is)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sk-good") {
				t.Errorf("ParseFile(%q) error = %q; want no key in it", tc.path, err)
			}
		})
	}
}

// checkParse is the oracle shared by TestParse and FuzzParse.
func checkParse(t *testing.T, in string, got Parsed, err error) {
	t.Helper()
	body := strings.TrimPrefix(in, "\xef\xbb\xbf")
	lines := map[string]bool{}
	content := 0 // non-blank, non-comment lines without whitespace inside
	var spaced []int
	for n, l := range strings.Split(body, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		for i, r := range l {
			if r == '#' && i > 0 && strings.TrimRightFunc(l[:i], unicode.IsSpace) != l[:i] {
				l = strings.TrimSpace(l[:i])
				break
			}
		}
		if strings.IndexFunc(l, unicode.IsSpace) >= 0 && !strings.ContainsFunc(l, func(r rune) bool { return r < 0x20 && !unicode.IsSpace(r) || r == 0x7f }) {
			spaced = append(spaced, n+1)
			continue
		}
		content++
		lines[l] = true
	}
	if err != nil {
		if content == 0 && !errors.Is(err, ErrNoKeys) {
			t.Errorf("Parse(%q) error = %v; want ErrNoKeys for input without keys", in, err)
		}
		if content > 0 && !strings.HasPrefix(err.Error(), "line ") {
			t.Errorf("Parse(%q) error = %v; want a line error", in, err)
		}
		return
	}
	seen := map[string]bool{}
	for _, k := range got.Keys {
		switch {
		case k == "" || strings.TrimSpace(k) != k:
			t.Errorf("Parse(%q) key %q; want trimmed and non-empty", in, k)
		case k[0] == '#':
			t.Errorf("Parse(%q) key %q; want no comment", in, k)
		case seen[k]:
			t.Errorf("Parse(%q) key %q twice; want unique keys", in, k)
		case !lines[k]:
			t.Errorf("Parse(%q) key %q; want a line of the input", in, k)
		}
		seen[k] = true
	}
	if !reflect.DeepEqual(got.Spaced, spaced) {
		t.Errorf("Parse(%q) spaced lines %v; want %v", in, got.Spaced, spaced)
	}
	if n := len(got.Keys) + got.Duplicates; n != content {
		t.Errorf("Parse(%q) = %d keys + %d duplicates; want %d content lines", in, len(got.Keys), got.Duplicates, content)
	}
	if len(got.Keys) == 0 {
		t.Errorf("Parse(%q) = no keys, nil error; want ErrNoKeys", in)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Parse(in)
		checkParse(t, string(in), got, err)
		checkPartsAgree(t, string(in))
	})
}

// TestParsePartsAgree: parsing split over the cores (as files over 1 MiB
// are) gives what parsing in one piece gives, wherever the pieces are cut:
// the same keys in the same order, the same duplicates, the same first
// error.
func TestParsePartsAgree(t *testing.T) {
	ins := []string{strings.Repeat("sk-a\nsk-b\n# c\n\nsk-a\n", 50)}
	for _, tc := range parseCases {
		ins = append(ins, tc.in, strings.Repeat(tc.in+"\n", 7))
	}
	ins = append(ins, string(keysFile(2000))+"sk-x\n"+string(keysFile(100))+"sk-\x01y\nsk-z\n")
	for _, in := range ins {
		checkPartsAgree(t, in)
	}
}

func checkPartsAgree(t *testing.T, in string) {
	t.Helper()
	want, wantErr := parseParts(in, 1)
	for parts := 2; parts <= 7; parts++ {
		got, err := parseParts(in, parts)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("parseParts(%.40q…, %d) = %d keys, %d duplicates, %v; want %d keys, %d duplicates, %v as in one part",
				in, parts, len(got.Keys), got.Duplicates, err, len(want.Keys), want.Duplicates, wantErr)
		}
	}
}
