package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/asynclog"
	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/terminal"
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
	out := stdout
	var file *os.File
	if c.EnableFile {
		if err := os.MkdirAll(filepath.Dir(c.FilePath), 0o755); err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE_PATH=%q: %w", c.FilePath, err)
		}
		f, err := os.OpenFile(c.FilePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("LOG_FILE_PATH=%q: %w", c.FilePath, err)
		}
		file = f
		out = io.MultiWriter(stdout, f)
	}
	// Lines bound for files and pipes are written in batches by one
	// goroutine: an access line per request then costs a channel send,
	// not a system call. A terminal alone is written to directly, so that
	// logrus still sees it and colours the text.
	var async *asynclog.Writer
	if _, ok := stdout.(*os.File); ok && (file != nil || !terminal.Is(stdout)) {
		async = asynclog.New(out)
		out = async
	}
	l.SetOutput(out)
	closeFn := func() {
		if async != nil {
			async.Close()
		}
		if file != nil {
			file.Close()
		}
	}
	return logrus.NewEntry(l), closeFn, nil
}
