package proxy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// spoolFiles lists this process's open descriptors that point at a spool
// file, and the spool files left in dir.
func spoolFiles(t testing.TB, dir string) (open, named []string) {
	t.Helper()
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.Contains(target, spoolPrefix) {
			open = append(open, target)
		}
	}
	named, _ = filepath.Glob(filepath.Join(dir, spoolPrefix+"*"))
	return open, named
}

func readAllBody(t *testing.T, b *body) []byte {
	t.Helper()
	got, err := io.ReadAll(b.reader())
	if err != nil {
		t.Fatalf("reading the body back: %v", err)
	}
	return got
}

func TestReadBody(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + i>>8)
		}
		return b
	}
	cases := []struct {
		name       string
		size       int
		memLimit   int64
		maxSize    int64
		wantFile   bool
		wantTooBig bool
	}{
		{"empty", 0, 1 << 20, 32 << 20, false, false},
		{"small", 1000, 1 << 20, 32 << 20, false, false},
		{"exactly the memory limit", 64 << 10, 64 << 10, 32 << 20, false, false},
		{"one byte over the memory limit", 64<<10 + 1, 64 << 10, 32 << 20, true, false},
		{"large", 3 << 20, 1 << 20, 32 << 20, true, false},
		{"memory limit zero", 10, 0, 32 << 20, true, false},
		{"exactly the size limit in memory", 1000, 1 << 20, 1000, false, false},
		{"over the size limit in memory", 1001, 1 << 20, 1000, false, true},
		{"exactly the size limit in a file", 5000, 1000, 5000, true, false},
		{"over the size limit in a file", 5001, 1000, 5000, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := pattern(tc.size)
			// One byte per read: the worst a trickling client can do.
			b, err := readBody(iotest.OneByteReader(bytes.NewReader(want)), int64(tc.size), tc.memLimit, tc.maxSize)
			if tc.wantTooBig {
				if !errors.Is(err, errBodyTooLarge) {
					t.Fatalf("readBody(%d bytes, max %d) error = %v; want errBodyTooLarge", tc.size, tc.maxSize, err)
				}
				if open, named := spoolFiles(t, dir); len(open)+len(named) > 0 {
					t.Errorf("after a too large body: open spool files %q, named %q; want none", open, named)
				}
				return
			}
			if err != nil {
				t.Fatalf("readBody(%d bytes) error = %v; want nil", tc.size, err)
			}
			if got := b.file != nil; got != tc.wantFile {
				t.Errorf("readBody(%d bytes, memory limit %d) in a file = %v; want %v", tc.size, tc.memLimit, got, tc.wantFile)
			}
			if b.file == nil && int64(cap(b.mem)) > max(tc.memLimit, firstChunk) {
				t.Errorf("memory buffer cap %d; want at most the limit %d", cap(b.mem), tc.memLimit)
			}
			if b.file != nil {
				st, err := b.file.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if perm := st.Mode().Perm(); perm != 0o600 {
					t.Errorf("spool file mode %v; want 0600", perm)
				}
			}
			if b.Len() != int64(tc.size) {
				t.Errorf("Len() = %d; want %d", b.Len(), tc.size)
			}
			// Every replay gives the same bytes, also two at once.
			r1, r2 := b.reader(), b.reader()
			half := make([]byte, tc.size/2)
			io.ReadFull(r1, half)
			rest2, _ := io.ReadAll(r2)
			rest1, _ := io.ReadAll(r1)
			if !bytes.Equal(append(half, rest1...), want) || !bytes.Equal(rest2, want) {
				t.Errorf("replayed bodies differ from what was sent")
			}
			if !bytes.Equal(readAllBody(t, b), want) {
				t.Errorf("third replay differs from what was sent")
			}
			b.Close()
			b.Close() // twice is fine
			if open, named := spoolFiles(t, dir); len(open)+len(named) > 0 {
				t.Errorf("after Close: open spool files %q, named %q; want none", open, named)
			}
		})
	}
}

// TestReadBodyGrowsWithBytes: one byte costs the first chunk, however
// much the client declared (readBody is not even told the declaration).
func TestReadBodyGrowsWithBytes(t *testing.T) {
	b, err := readBody(strings.NewReader("x"), 32<<20, 1<<20, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	if cap(b.mem) > firstChunk {
		t.Errorf("one byte read into a buffer of %d; want at most %d", cap(b.mem), firstChunk)
	}
}

// TestReadBodyErrorLeavesNoFile: a client that breaks off mid-way after
// the body went to a file leaves no file behind.
func TestReadBodyErrorLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(make([]byte, 200<<10)), iotest.ErrReader(boom))
	if _, err := readBody(r, -1, 64<<10, 32<<20); !errors.Is(err, boom) {
		t.Fatalf("readBody(broken) error = %v; want %v", err, boom)
	}
	if open, named := spoolFiles(t, dir); len(open)+len(named) > 0 {
		t.Errorf("open spool files %q, named %q; want none", open, named)
	}
}

func FuzzReadBody(f *testing.F) {
	f.Add([]byte("{}"), uint16(1), uint16(100))
	f.Add(bytes.Repeat([]byte("a"), 300), uint16(16), uint16(299))
	f.Add(bytes.Repeat([]byte("b"), 300), uint16(0), uint16(300))
	f.Setenv("TMPDIR", f.TempDir())
	f.Fuzz(func(t *testing.T, in []byte, memLimit, maxSize uint16) {
		b, err := readBody(iotest.HalfReader(bytes.NewReader(in)), int64(len(in))-1, int64(memLimit), int64(maxSize))
		if len(in) > int(maxSize) {
			if !errors.Is(err, errBodyTooLarge) {
				t.Fatalf("readBody(%d bytes, max %d) error = %v; want errBodyTooLarge", len(in), maxSize, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("readBody(%d bytes) error = %v", len(in), err)
		}
		defer b.Close()
		if got := readAllBody(t, b); !bytes.Equal(got, in) {
			t.Fatalf("readBody(%q) replays %q", in, got)
		}
		if (b.file != nil) != (len(in) > int(memLimit)) {
			t.Fatalf("readBody(%d bytes, memory limit %d) in a file = %v", len(in), memLimit, b.file != nil)
		}
	})
}

// TestReadBodySmallDeclaredExact: a small body with its length declared
// is read into a buffer of exactly that size (the common chat request).
func TestReadBodySmallDeclaredExact(t *testing.T) {
	in := strings.Repeat("m", 148)
	b, err := readBody(strings.NewReader(in), int64(len(in)), 1<<20, 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(b.mem) != in || cap(b.mem) != len(in) {
		t.Errorf("148-byte body: len %d cap %d; want both 148", len(b.mem), cap(b.mem))
	}
}
