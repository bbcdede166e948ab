package procstat

import (
	"errors"
	"os"
	"testing"
)

func TestRSS(t *testing.T) {
	self, err := RSS(0)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil || self <= 0 {
		t.Fatalf("RSS(0) = %d, %v; want a positive size", self, err)
	}
	byPid, err := RSS(os.Getpid())
	if err != nil || byPid <= 0 {
		t.Fatalf("RSS(pid) = %d, %v; want a positive size", byPid, err)
	}
	if _, err := Field(0, "NoSuchField"); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("Field(NoSuchField) = %v; want an error naming the field", err)
	}
}
