package middleware

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/secret"
	"github.com/gpt-load/gpt-load/internal/terminal"
)

// accessLine is one access log line's fields.
type accessLine struct {
	level    logrus.Level
	method   string
	path     string
	status   int
	duration time.Duration
	bytes    int64
	client   string
	proxied  bool
	key      secret.Key
	upstream string
	// upstreamURL is the URL sent upstream, query left out; set only at
	// debug level.
	upstreamURL string
	group       string // the group(s) that served it (docs/groups.md); "" without groups
	attempts    int
	aborted     bool
	err         string // why a started response failed; "" when it did not
}

// fields renders the line for logrus.
func (a *accessLine) fields() logrus.Fields {
	f := logrus.Fields{
		"method": a.method, "path": a.path, "status": a.status,
		"duration": a.duration.String(), "bytes": a.bytes, "client": a.client,
	}
	if a.aborted {
		f["aborted"] = true
	}
	if a.err != "" {
		f["error"] = a.err
	}
	if a.group != "" {
		f["group"] = a.group
	}
	if a.proxied {
		f["key"] = a.key.String()
		f["upstream"] = a.upstream
		if a.upstreamURL != "" {
			f["upstream_url"] = a.upstreamURL
		}
		f["attempts"] = a.attempts
	}
	return f
}

// fastAccess writes access lines exactly as logrus's JSON and (colourless)
// text formatters would, without building a map per request: one line per
// request is the proxy's hottest logging path, and going through logrus
// cost about a fifth of a proxied request's allocations. Each line is one
// Write, as logrus does, so lines never interleave.
type fastAccess struct {
	out  io.Writer
	json bool
	bufs sync.Pool
}

// newFastAccess returns a fast writer for log's formatter and output, or
// nil when they are ones it does not reproduce (colours on a terminal,
// another formatter, fields on the entry, hooks).
func newFastAccess(log *logrus.Entry) *fastAccess {
	l := log.Logger
	if len(log.Data) > 0 || len(l.Hooks) > 0 || l.ReportCaller {
		return nil
	}
	f := &fastAccess{out: l.Out, bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
	switch fm := l.Formatter.(type) {
	case *logrus.JSONFormatter:
		if fm.TimestampFormat != "" || fm.DisableTimestamp || fm.DataKey != "" || fm.FieldMap != nil || fm.PrettyPrint {
			return nil
		}
		f.json = true
	case *logrus.TextFormatter:
		if !fm.FullTimestamp || fm.TimestampFormat != "" || fm.DisableTimestamp || fm.ForceColors ||
			fm.DisableQuote || fm.ForceQuote || fm.QuoteEmptyFields || fm.FieldMap != nil || fm.DisableSorting ||
			(!fm.DisableColors && terminal.Is(l.Out)) {
			return nil
		}
	default:
		return nil
	}
	return f
}

func (f *fastAccess) write(a *accessLine) {
	bp := f.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	now := time.Now().Format(time.RFC3339)
	if f.json {
		b = f.appendJSON(b, a, now)
	} else {
		b = f.appendText(b, a, now)
	}
	f.out.Write(b)
	*bp = b
	f.bufs.Put(bp)
}

// appendJSON follows logrus.JSONFormatter: keys sorted, "level", "msg" and
// "time" among them.
func (f *fastAccess) appendJSON(b []byte, a *accessLine, now string) []byte {
	b = append(b, '{')
	if a.aborted {
		b = append(b, `"aborted":true,`...)
	}
	if a.proxied {
		b = append(b, `"attempts":`...)
		b = strconv.AppendInt(b, int64(a.attempts), 10)
		b = append(b, ',')
	}
	b = append(b, `"bytes":`...)
	b = strconv.AppendInt(b, a.bytes, 10)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, a.client)
	b = append(b, `,"duration":`...)
	b = appendJSONString(b, a.duration.String())
	if a.err != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, a.err)
	}
	if a.group != "" {
		b = append(b, `,"group":`...)
		b = appendJSONString(b, a.group)
	}
	if a.proxied {
		b = append(b, `,"key":`...)
		b = appendJSONString(b, a.key.String())
	}
	b = append(b, `,"level":"`...)
	b = append(b, a.level.String()...)
	b = append(b, `","method":`...)
	b = appendJSONString(b, a.method)
	b = append(b, `,"msg":"request","path":`...)
	b = appendJSONString(b, a.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(a.status), 10)
	b = append(b, `,"time":`...)
	b = appendJSONString(b, now)
	if a.proxied {
		b = append(b, `,"upstream":`...)
		b = appendJSONString(b, a.upstream)
		if a.upstreamURL != "" {
			b = append(b, `,"upstream_url":`...)
			b = appendJSONString(b, a.upstreamURL)
		}
	}
	return append(b, "}\n"...)
}

// appendText follows logrus.TextFormatter without colours: time, level
// and msg first, then the fields sorted by key.
func (f *fastAccess) appendText(b []byte, a *accessLine, now string) []byte {
	b = append(b, "time="...)
	b = appendTextValue(b, now)
	b = append(b, " level="...)
	b = append(b, a.level.String()...)
	b = append(b, " msg=request"...)
	if a.aborted {
		b = append(b, " aborted=true"...)
	}
	if a.proxied {
		b = append(b, " attempts="...)
		b = strconv.AppendInt(b, int64(a.attempts), 10)
	}
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, a.bytes, 10)
	b = append(b, " client="...)
	b = appendTextValue(b, a.client)
	b = append(b, " duration="...)
	b = appendTextValue(b, a.duration.String())
	if a.err != "" {
		b = append(b, " error="...)
		b = appendTextValue(b, a.err)
	}
	if a.group != "" {
		b = append(b, " group="...)
		b = appendTextValue(b, a.group)
	}
	if a.proxied {
		b = append(b, " key="...)
		b = appendTextValue(b, a.key.String())
	}
	b = append(b, " method="...)
	b = appendTextValue(b, a.method)
	b = append(b, " path="...)
	b = appendTextValue(b, a.path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(a.status), 10)
	if a.proxied {
		b = append(b, " upstream="...)
		b = appendTextValue(b, a.upstream)
		if a.upstreamURL != "" {
			b = append(b, " upstream_url="...)
			b = appendTextValue(b, a.upstreamURL)
		}
	}
	return append(b, '\n')
}

// appendTextValue quotes s when logrus's text formatter would: when it
// holds anything but letters, digits and -._/@^+.
func appendTextValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '/' || c == '@' || c == '^' || c == '+') {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does for the characters that can occur here (HTML-safe, as logrus's
// JSON formatter leaves encoding/json's default on).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
