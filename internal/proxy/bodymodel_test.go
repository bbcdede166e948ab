package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/gpt-load/gpt-load/internal/modelname"
)

// digestCases seed TestModelDigest and FuzzModelDigest.
var digestCases = []string{
	`{"model":"gpt-4o","messages":[]}`,
	`{"messages":[{"role":"user","content":"a \"model\": \"x\" {[ "}],"model":"gpt-4o-mini"}`,
	`{"stream":true,"n":2,"temperature":0.5,"stop":null,"model":"m"}`,
	`{"\u006dodel":"escaped-key"}`,
	`{"model":"esc\u00e9"}`,
	`{"a":{"model":"nested"},"b":[1,2,{"model":"x"}]}`,
	`{"a":1 ,"model" : "spaced" }`,
	`{"a":,"model":"m"}`,
	`{"a":"unclosed`,
	`{"model":42}`,
	`[{"model":"array"}]`,
	`{"a":tru e,"model":"m"}`,
	``,
	`{`,
}

func digestModel(in []byte) string {
	return modelname.FromBody(modelDigest(bufio.NewReader(bytes.NewReader(in))))
}

func TestModelDigest(t *testing.T) {
	for _, in := range digestCases {
		if got, want := digestModel([]byte(in)), modelname.FromBody([]byte(in)); got != want {
			t.Errorf("model from digest of %q = %q; want %q (as from the whole body)", in, got, want)
		}
	}
	// A 3 MiB body with the model at its end: the digest stays small.
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 3<<20) + `"}],"model":"late"}`
	d := modelDigest(bufio.NewReader(strings.NewReader(big)))
	if got := modelname.FromBody(d); got != "late" || len(d) > 100 {
		t.Errorf("digest of a 3 MiB body: %d bytes, model %q; want a few bytes and \"late\"", len(d), got)
	}
}

func FuzzModelDigest(f *testing.F) {
	for _, in := range digestCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := modelname.FromBody(in)
		if len(want) > 1<<10 || len(in) > maxModelDigest {
			return // outside what the digest promises
		}
		if got := digestModel(in); got != want {
			t.Fatalf("model from digest of %q = %q; want %q", in, got, want)
		}
	})
}

// TestSpooledBodyModel: the model of a body in a file is read from the
// file, wherever it sits, and the path still wins.
func TestSpooledBodyModel(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	in := `{"messages":[{"role":"user","content":"` + strings.Repeat("y", 2<<20) + `"}],"model":"gpt-late"}`
	b, err := readBody(strings.NewReader(in), int64(len(in)), 1<<20, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.file == nil {
		t.Fatal("a 2 MiB body with a 1 MiB limit is not in a file")
	}
	if got := b.model("/v1/chat/completions", "application/json"); got != "gpt-late" {
		t.Errorf("model of the spooled body = %q; want gpt-late", got)
	}
	if got := b.model("/v1beta/models/gemini-pro:generateContent", "application/json"); got != "gemini-pro" {
		t.Errorf("model with a Gemini path = %q; want gemini-pro", got)
	}
}

// TestMultipartBodyModel: the model field of an audio upload is read
// whether the body is in memory or spooled, with the file before or after
// it (curl sends fields in command-line order, the SDKs fields first).
func TestMultipartBodyModel(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	const boundary = "------------------------d74496d66958873e"
	ct := "multipart/form-data; boundary=" + boundary
	file := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.mp3\"\r\n" +
		"Content-Type: audio/mpeg\r\n\r\nID3\x04\x00" + strings.Repeat("\xff\xfb\r\n--", 300<<10) + "\r\n"
	model := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
	end := "--" + boundary + "--\r\n"
	for _, tc := range []struct {
		name     string
		body     string
		memLimit int64
	}{
		{"in memory, model first", model + file + end, 8 << 20},
		{"in memory, file first", file + model + end, 8 << 20},
		{"spooled, model first", model + file + end, 64 << 10},
		{"spooled, file first", file + model + end, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := readBody(strings.NewReader(tc.body), int64(len(tc.body)), tc.memLimit, 32<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if spooled := b.file != nil; spooled != (tc.memLimit < int64(len(tc.body))) {
				t.Fatalf("body in a file = %v with memory limit %d", spooled, tc.memLimit)
			}
			if got := b.model("/v1/audio/transcriptions", ct); got != "whisper-1" {
				t.Errorf("model of the multipart body = %q; want whisper-1", got)
			}
			if got := b.model("/v1/audio/transcriptions", "application/json"); got != "" {
				t.Errorf("model of the multipart body read as JSON = %q; want none", got)
			}
		})
	}
}
