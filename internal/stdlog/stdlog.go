// Package stdlog adapts the process logger to the standard library's
// *log.Logger, through which net/http's servers and reverse proxies log.
package stdlog

import (
	"log"

	"github.com/sirupsen/logrus"
)

// New returns a *log.Logger whose lines go to l at level, without a prefix
// or flags of its own (logrus stamps the time).
func New(l *logrus.Entry, level logrus.Level) *log.Logger {
	return log.New(l.WriterLevel(level), "", 0)
}
