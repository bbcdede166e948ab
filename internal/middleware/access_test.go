package middleware

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/secret"
)

// timeField matches the time field of either format, the one part that
// differs between two calls.
var timeField = regexp.MustCompile(`time="[^"]*"|"time":"[^"]*"`)

// TestFastAccessMatchesLogrus checks the fast access writer produces, byte
// for byte, what logrus's own formatters produce for the same line.
func TestFastAccessMatchesLogrus(t *testing.T) {
	lines := []accessLine{
		{level: logrus.InfoLevel, method: "POST", path: "/v1/chat/completions", status: 200, duration: 1234567 * time.Nanosecond,
			bytes: 586, client: "127.0.0.1:51234", proxied: true, key: secret.NewKey("sk-proj-abcdefghijklmnop0123456789"),
			upstream: "api.openai.com", attempts: 2},
		{level: logrus.DebugLevel, method: "POST", path: "/v1/v1/chat/completions", status: 404, duration: time.Millisecond,
			bytes: 10, client: "127.0.0.1:51234", proxied: true, key: secret.NewKey("sk-proj-abcdefghijklmnop0123456789"),
			upstream: "api.openai.com", upstreamURL: "https://api.openai.com/v1/v1/chat/completions", attempts: 1},
		{level: logrus.WarnLevel, method: "GET", path: `/v1/we ird"path\with<html>&é` + "\u2028\x01\t", status: 401,
			duration: 15 * time.Microsecond, client: "[::1]:80", proxied: true, upstream: ""},
		{level: logrus.ErrorLevel, method: "DELETE", path: "/v1/files/a%2Fb", status: 502, duration: time.Second,
			bytes: 0, client: "10.0.0.1:1", proxied: true, key: secret.NewKey("k"), upstream: "x:8080", attempts: 4},
		{level: logrus.DebugLevel, method: "GET", path: "/health", status: 200, client: "1.2.3.4:5", proxied: false},
		{level: logrus.InfoLevel, method: "GET", path: "/bad\xffutf8", status: 200, client: "c", proxied: true},
		{level: logrus.ErrorLevel, method: "POST", path: "/v1/chat/completions", status: 200, duration: time.Minute,
			bytes: 912, client: "127.0.0.1:1", proxied: true, key: secret.NewKey("sk-proj-abcdefghijklmnop0123456789"),
			upstream: "api.anthropic.com", attempts: 1, err: "stream idle timeout"},
	}
	for _, format := range []logrus.Formatter{&logrus.JSONFormatter{}, &logrus.TextFormatter{FullTimestamp: true, DisableColors: true}} {
		for i, line := range lines {
			var want, got bytes.Buffer
			l := logrus.New()
			l.SetLevel(logrus.DebugLevel)
			l.SetFormatter(format)
			l.SetOutput(&want)
			logrus.NewEntry(l).WithFields(line.fields()).Log(line.level, "request")

			l.SetOutput(&got)
			fast := newFastAccess(logrus.NewEntry(l))
			if fast == nil {
				t.Fatalf("%T: no fast writer", format)
			}
			fast.write(&line)
			w := timeField.ReplaceAllString(want.String(), "TIME")
			g := timeField.ReplaceAllString(got.String(), "TIME")
			if g != w {
				t.Errorf("%T line %d:\n got %s\nwant %s", format, i, g, w)
			}
		}
	}
}

func TestFastAccessFallsBack(t *testing.T) {
	l := logrus.New()
	l.SetFormatter(&logrus.TextFormatter{}) // no full timestamp: not reproduced
	if newFastAccess(logrus.NewEntry(l)) != nil {
		t.Error("fast writer for a formatter it does not reproduce")
	}
	l.SetFormatter(&logrus.JSONFormatter{})
	if newFastAccess(logrus.NewEntry(l).WithField("replica", "a")) != nil {
		t.Error("fast writer for an entry with fields of its own")
	}
}

func BenchmarkAccessLine(b *testing.B) {
	line := accessLine{level: logrus.InfoLevel, method: "POST", path: "/v1/chat/completions", status: 200,
		duration: time.Millisecond, bytes: 586, client: "127.0.0.1:51234", proxied: true,
		key: secret.NewKey("sk-proj-abcdefghijklmnop0123456789"), upstream: "api.openai.com", attempts: 1}
	for _, f := range []logrus.Formatter{&logrus.JSONFormatter{}, &logrus.TextFormatter{FullTimestamp: true, DisableColors: true}} {
		l := logrus.New()
		l.SetFormatter(f)
		l.SetOutput(discard{})
		e := logrus.NewEntry(l)
		fast := newFastAccess(e)
		b.Run("logrus", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.WithFields(line.fields()).Log(line.level, "request")
			}
		})
		b.Run("fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				fast.write(&line)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
