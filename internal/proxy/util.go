package proxy

import (
	"log"
	"math"
	"net/url"
	"time"

	"github.com/sirupsen/logrus"
)

func urlUnescape(s string) (string, error) { return url.QueryUnescape(s) }

func ceilSeconds(t time.Time) float64 { return math.Ceil(time.Until(t).Seconds()) }

// newStdLogger adapts logrus for net/http's *log.Logger hooks.
func newStdLogger(l *logrus.Entry, level logrus.Level) *log.Logger {
	return log.New(l.WriterLevel(level), "", 0)
}
