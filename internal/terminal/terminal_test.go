package terminal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestIsNotATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	closed, err := os.Create(filepath.Join(t.TempDir(), "closed"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for name, w := range map[string]interface{ Write([]byte) (int, error) }{
		"buffer": &bytes.Buffer{}, "regular file": f, "pipe": w, "closed file": closed,
	} {
		if Is(w) {
			t.Errorf("Is(%s) = true; want false", name)
		}
	}
}
