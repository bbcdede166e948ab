package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/config"
)

// newLogger builds the one logger of the process. Text output is coloured
// only when it goes to a terminal alone; a log file never gets colour codes.
func newLogger(c config.Log, stdout io.Writer) (*logrus.Entry, func(), error) {
	l := logrus.New()
	level, err := logrus.ParseLevel(c.Level)
	if err != nil {
		return nil, nil, fmt.Errorf("LOG_LEVEL=%q: %w", c.Level, err)
	}
	l.SetLevel(level)
	if c.Format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	l.SetOutput(stdout)
	closeFn := func() {}
	if c.EnableFile {
		if err := os.MkdirAll(filepath.Dir(c.FilePath), 0o755); err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE_PATH=%q: %w", c.FilePath, err)
		}
		f, err := os.OpenFile(c.FilePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE_PATH=%q: %w", c.FilePath, err)
		}
		l.SetOutput(io.MultiWriter(stdout, f))
		closeFn = func() { f.Close() }
	}
	return logrus.NewEntry(l), closeFn, nil
}

func newStdLogger(l *logrus.Entry, level logrus.Level) *log.Logger {
	return log.New(l.WriterLevel(level), "", 0)
}
