package modelname

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// multipartCase is a body from testdata/multipart: a file holding
// "Content-Type: …", "Want: …", a blank line, then the body as a client
// (named in the file name) sends it.
type multipartCase struct {
	name, contentType, want string
	body                    []byte
}

func multipartCases(tb testing.TB) []multipartCase {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "multipart", "*.txt"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no testdata/multipart cases: %v", err)
	}
	var cases []multipartCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		head, body, ok := bytes.Cut(raw, []byte("\n\n"))
		ct, want, ok2 := strings.Cut(string(head), "\n")
		if !ok || !ok2 || !strings.HasPrefix(ct, "Content-Type: ") || !strings.HasPrefix(want, "Want: ") {
			tb.Fatalf("%s: want a Content-Type line, a Want line, a blank line and the body", f)
		}
		cases = append(cases, multipartCase{name: filepath.Base(f), contentType: strings.TrimPrefix(ct, "Content-Type: "),
			want: strings.TrimPrefix(want, "Want: "), body: body})
	}
	return cases
}

func TestOfMultipart(t *testing.T) {
	for _, tc := range multipartCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of("/v1/audio/transcriptions", tc.contentType, tc.body); got != tc.want {
				t.Errorf("Of(%s) = %q; want %q", tc.name, got, tc.want)
			}
			// One byte at a time, as a slow spool file might give it.
			if got := FromMultipart(iotest.OneByteReader(bytes.NewReader(tc.body)), Boundary(tc.contentType)); got != tc.want {
				t.Errorf("FromMultipart(%s, one byte at a time) = %q; want %q", tc.name, got, tc.want)
			}
			if tc.want != "" {
				if got, ok := stdlibModel(tc.body, Boundary(tc.contentType)); !ok || got != tc.want {
					t.Errorf("mime/multipart reads model %q (ok %v) from %s; the case is wrong", got, ok, tc.name)
				}
			}
		})
	}
}

func TestBoundary(t *testing.T) {
	for _, tc := range []struct{ ct, want string }{
		{"multipart/form-data; boundary=d4d3c0b6e3c94e5f", "d4d3c0b6e3c94e5f"},
		{`Multipart/Form-Data; boundary="----formdata-undici-0.7243146297516529"`, "----formdata-undici-0.7243146297516529"},
		{"multipart/mixed; boundary=abc", ""},
		{"multipart/form-data", ""},
		{"multipart/form-data; boundary=" + strings.Repeat("b", 71), ""},
		{"application/json", ""},
		{"", ""},
	} {
		if got := Boundary(tc.ct); got != tc.want {
			t.Errorf("Boundary(%q) = %q; want %q", tc.ct, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Boundary("application/json; charset=utf-8") }); n != 0 {
		t.Errorf("Boundary(application/json) allocates %v times; want 0", n)
	}
}

func TestFromMultipartEdges(t *testing.T) {
	const b = "bnd"
	part := func(name, value string) string {
		return "--" + b + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n"
	}
	for _, tc := range []struct{ name, body, want string }{
		{"value that looks like a delimiter", part("prompt", "x\r\n--bndX y") + part("model", "dall-e-3") + "--bnd--\r\n", "dall-e-3"},
		{"empty content right before the delimiter", "--bnd\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--bnd\r\n" +
			"Content-Disposition: form-data; name=\"model\"\r\n\r\ntts-1\r\n--bnd--", "tts-1"},
		{"model is the last thing, no final newline", part("model", "tts-1-hd")[:len(part("model", "tts-1-hd"))-2] + "\r\n--bnd--", "tts-1-hd"},
		{"first of two model fields", part("model", "first") + part("model", "second") + "--bnd--\r\n", "first"},
		{"empty model", part("model", "") + "--bnd--\r\n", ""},
		{"model too long", part("model", strings.Repeat("m", 257)) + "--bnd--\r\n", ""},
		{"model of 256 bytes", part("model", strings.Repeat("m", 256)) + "--bnd--\r\n", strings.Repeat("m", 256)},
		{"not form-data", "--bnd\r\nContent-Disposition: attachment; name=\"model\"\r\n\r\nx\r\n--bnd--\r\n", ""},
		{"no delimiter at all", "model=whisper-1", ""},
		{"final delimiter first", "--bnd--\r\n" + part("model", "x"), ""},
		{"header without colon", "--bnd\r\nContent-Disposition form-data; name=\"model\"\r\n\r\nx\r\n--bnd--\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromMultipart(strings.NewReader(tc.body), b); got != tc.want {
				t.Errorf("FromMultipart(%q) = %q; want %q", tc.body, got, tc.want)
			}
		})
	}
}

// TestFromMultipartLargeFile: a 16 MiB file before the model field is
// streamed through, not held: the read allocates a small fixed amount.
func TestFromMultipartLargeFile(t *testing.T) {
	const b = "------------------------d74496d66958873e"
	head := "--" + b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
	tail := "\r\n--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--" + b + "--\r\n"
	body := func() io.Reader {
		return io.MultiReader(strings.NewReader(head), io.LimitReader(crlfDashes{}, 16<<20), strings.NewReader(tail))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := FromMultipart(body(), b)
	runtime.ReadMemStats(&after)
	if got != "whisper-1" {
		t.Fatalf("FromMultipart(16 MiB file, model) = %q; want whisper-1", got)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("FromMultipart allocated %d bytes for a 16 MiB file; want a fixed window", n)
	}
}

// crlfDashes is file content full of almost-delimiters ("\r\n--" then
// not the boundary), the slowest content to skip.
type crlfDashes struct{}

func (crlfDashes) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "\r\n--x"[i%5]
	}
	return len(p), nil
}

// TestFromMultipartStopsAtModel: nothing after the model field is read.
func TestFromMultipartStopsAtModel(t *testing.T) {
	const b = "d4d3c0b6e3c94e5f9d1a3b8e2f6a7c01"
	head := "--" + b + "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--" + b + "\r\n"
	r := io.MultiReader(strings.NewReader(head), iotest.ErrReader(errors.New("read past the model field")))
	if got := FromMultipart(r, b); got != "whisper-1" {
		t.Errorf("FromMultipart = %q; want whisper-1 without reading further", got)
	}
}

// stdlibModel is the oracle: the first part whose form name is "model",
// read by mime/multipart. ok is false when mime/multipart fails before
// that part's content is read, or when the body's headers or lines
// exceed what FromMultipart takes on (it is then not comparable).
func stdlibModel(body []byte, boundary string) (model string, ok bool) {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return "", true
		}
		if err != nil {
			return "", false
		}
		if p.FormName() != "model" {
			continue
		}
		v, err := io.ReadAll(p)
		if err != nil {
			return "", false
		}
		if len(v) > maxModelLen || strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			return "", true
		}
		return string(v), true
	}
}

// FuzzFromMultipart compares FromMultipart with mime/multipart on small
// bodies: wherever mime/multipart reads the body (up to its model field)
// without error, both find the same model. Whatever the input, reading
// one byte at a time changes nothing.
func FuzzFromMultipart(f *testing.F) {
	for _, tc := range multipartCases(f) {
		if len(tc.body) <= 4<<10 {
			f.Add(tc.body, Boundary(tc.contentType))
		}
	}
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=model\r\n\r\n--b\r\n\r\n\r\n--b--"), "b")
	f.Add([]byte("--b\nContent-Disposition: form-data; name=\"model\"\n\nx\r\n--b\n"), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		if len(body) > 4<<10 || boundary == "" || len(boundary) > maxBoundary {
			return
		}
		got := FromMultipart(bytes.NewReader(body), boundary)
		if slow := FromMultipart(iotest.OneByteReader(bytes.NewReader(body)), boundary); slow != got {
			t.Fatalf("FromMultipart(%q, %q) = %q, one byte at a time %q", body, boundary, got, slow)
		}
		if want, ok := stdlibModel(body, boundary); ok && got != want {
			t.Fatalf("FromMultipart(%q, %q) = %q; mime/multipart reads %q", body, boundary, got, want)
		}
	})
}

// FuzzFromMultipartWritten builds bodies with mime/multipart's Writer
// around a file of any content and a model of any value: the model is
// always found, before or after the file.
func FuzzFromMultipartWritten(f *testing.F) {
	f.Add([]byte("ID3\x04\x00\r\n--x"), "whisper-1", false)
	f.Add([]byte{}, "gpt-image-1", true)
	f.Fuzz(func(t *testing.T, file []byte, model string, modelFirst bool) {
		if model == "" || len(model) > maxModelLen {
			return
		}
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		writeModel := func() {
			if err := w.WriteField("model", model); err != nil {
				t.Fatal(err)
			}
		}
		if modelFirst {
			writeModel()
		}
		fw, err := w.CreateFormFile("file", "speech.mp3")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
		if !modelFirst {
			writeModel()
		}
		w.Close()
		if got := Of("/v1/audio/transcriptions", w.FormDataContentType(), buf.Bytes()); got != model {
			t.Fatalf("Of(body with file %q, model %q) = %q", file, model, got)
		}
	})
}
