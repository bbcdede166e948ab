package stdlog

import (
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// lines hands each write to the test: logrus's WriterLevel logs from a
// goroutine of its own.
type lines chan string

func (c lines) Write(p []byte) (int, error) { c <- string(p); return len(p), nil }

func TestNewLogsAtLevel(t *testing.T) {
	out := make(lines, 1)
	l := logrus.New()
	l.SetOutput(out)
	l.SetFormatter(&logrus.JSONFormatter{DisableTimestamp: true})
	New(logrus.NewEntry(l), logrus.WarnLevel).Print("http: proxy error: boom")
	select {
	case got := <-out:
		if !strings.Contains(got, `"level":"warning"`) || !strings.Contains(got, `"msg":"http: proxy error: boom"`) {
			t.Errorf("logged %q; want a warning with the message alone", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing logged within 5s")
	}
}
