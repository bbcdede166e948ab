// Package sse splits a server-sent event stream into events, as the HTML
// standard's "interpreting an event stream" defines it: lines end in CRLF,
// LF or CR, a line starting with a colon is a comment, "data:" lines join
// with LF, an empty line ends an event. Bytes may arrive in pieces split at
// any point, and lines may be of any length: the parser holds at most
// MaxHeld bytes of a line and of an event's data (64 KiB unless set), and
// an event with a longer line or more data is not dispatched, so memory
// stays bounded whatever the stream sends (docs/api.md, "Bad input and
// faults").
//
// It only reads: the proxy never re-frames a stream, it looks at events to
// decide when to commit one (docs/api.md, "Streaming") and passes the
// bytes on as they came.
package sse

import "bytes"

// Event is one dispatched event. Its slices belong to the Parser and are
// valid only during the callback that receives it.
type Event struct {
	// Type is the "event:" field, empty when none was given (a "message").
	Type []byte
	// Data is the "data:" lines joined with LF, without a final LF.
	Data []byte
	// ID is the last event ID at the time of dispatch: it carries over from
	// earlier events until an "id:" field changes it.
	ID []byte
}

// bom is U+FEFF in UTF-8; one at the start of the stream is ignored.
var bom = []byte{0xEF, 0xBB, 0xBF}

// DefaultMaxHeld is Parser.MaxHeld's default.
const DefaultMaxHeld = 64 << 10

// Parser is an incremental event stream parser. The zero value is ready to
// use at the start of a stream. It is not safe for concurrent use.
type Parser struct {
	// MaxHeld is the most bytes of one line, and of one event's data, the
	// parser holds; 0 means DefaultMaxHeld. A longer line (its end
	// included, a BOM before the first counted) is skipped unread; unless
	// it is a comment, the event it belongs to is not dispatched, nor is
	// an event whose data would grow past MaxHeld.
	MaxHeld int

	line     []byte // the start of a line whose end has not arrived yet
	partial  bool   // line holds a started line (it may still be empty)
	overlong bool   // the line being read is longer than MaxHeld: skipped
	comment  bool   // the overlong line is a comment
	spoiled  bool   // the event being built will not be dispatched
	skipLF   bool   // the last line ended in CR: a leading LF belongs to it
	started  bool   // a line was completed (so a BOM can no longer come)

	typ, data, id []byte
	hasData       bool
	inEvent       bool // a field line came since the last blank line

	// Comments counts comment lines seen so far.
	Comments int
}

// Feed parses b and calls emit for every event it completes, in order. b is
// not retained.
func (p *Parser) Feed(b []byte, emit func(Event)) {
	if p.skipLF && len(b) > 0 {
		p.skipLF = false
		if b[0] == '\n' {
			b = b[1:]
		}
	}
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			p.extend(b)
			return
		}
		line := b[:i]
		if p.partial {
			p.extend(line)
			line = p.line
		} else if len(line) > p.max() {
			p.skipLine(nil, line)
		}
		end := 1
		if b[i] == '\r' {
			if i+1 < len(b) {
				if b[i+1] == '\n' {
					end = 2
				}
			} else {
				p.skipLF = true
			}
		}
		if p.overlong {
			p.endSkipped()
		} else {
			p.processLine(line, emit)
		}
		p.line, p.partial, p.overlong = p.line[:0], false, false
		b = b[i+end:]
	}
}

func (p *Parser) max() int {
	if p.MaxHeld > 0 {
		return max(p.MaxHeld, len(bom)+1)
	}
	return DefaultMaxHeld
}

// extend adds b to the line being read, unless that makes it longer than
// MaxHeld: then the line is skipped from here on.
func (p *Parser) extend(b []byte) {
	p.partial = true
	if p.overlong {
		return
	}
	if len(p.line)+len(b) > p.max() {
		p.skipLine(p.line, b)
		p.line = p.line[:0]
		return
	}
	p.line = appendBounded(p.line, b, p.max())
}

// skipLine starts skipping the line that begins with head and goes on
// with b, noting whether it is a comment.
func (p *Parser) skipLine(head, b []byte) {
	p.overlong = true
	var start [4]byte // a BOM and the first byte after it
	n := copy(start[:], head)
	n += copy(start[n:], b)
	first := start[:n]
	if !p.started {
		first = bytes.TrimPrefix(first, bom)
	}
	p.comment = len(first) > 0 && first[0] == ':'
}

// endSkipped ends a skipped line: a comment is counted; any other line
// spoils its event, whose data is let go.
func (p *Parser) endSkipped() {
	p.started = true
	if p.comment {
		p.Comments++
		return
	}
	p.inEvent = true
	p.spoil()
}

func (p *Parser) spoil() {
	p.spoiled = true
	p.data, p.hasData = p.data[:0], false
}

// appendBounded appends b to dst, growing it to at most limit bytes of
// capacity (append alone could double it past the limit).
func appendBounded(dst, b []byte, limit int) []byte {
	if need := len(dst) + len(b); need > cap(dst) {
		grown := make([]byte, len(dst), min(max(2*cap(dst), need), limit))
		copy(grown, dst)
		dst = grown
	}
	return append(dst, b...)
}

func (p *Parser) processLine(line []byte, emit func(Event)) {
	if !p.started {
		p.started = true
		line = bytes.TrimPrefix(line, bom)
	}
	if len(line) == 0 {
		p.dispatch(emit)
		return
	}
	if line[0] == ':' {
		p.Comments++
		return
	}
	p.inEvent = true
	field, value := line, []byte(nil)
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		field, value = line[:c], line[c+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "event":
		p.typ = append(p.typ[:0], value...)
	case "data":
		need := len(value)
		if p.hasData {
			need++
		}
		if p.spoiled || len(p.data)+need > p.max() {
			p.spoil()
			break
		}
		if p.hasData {
			p.data = appendBounded(p.data, []byte{'\n'}, p.max())
		}
		p.data = appendBounded(p.data, value, p.max())
		p.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.id = append(p.id[:0], value...)
		}
	}
	// "retry" and unknown fields change nothing a proxy looks at.
}

// dispatch ends the event being built. One without data is dropped, as the
// standard says, and its type with it.
func (p *Parser) dispatch(emit func(Event)) {
	if p.hasData && !p.spoiled {
		emit(Event{Type: p.typ, Data: p.data, ID: p.id})
	}
	p.typ, p.data, p.hasData, p.inEvent, p.spoiled = p.typ[:0], p.data[:0], false, false, false
}

// Pending reports whether the parser is inside an event: a line not yet
// ended, or field lines whose blank line has not come. Between two events
// it is false: a comment line and a blank line written then change no
// event the reader sees.
func (p *Parser) Pending() bool {
	return p.partial || p.inEvent
}
