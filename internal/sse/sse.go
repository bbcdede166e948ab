// Package sse splits a server-sent event stream into events, as the HTML
// standard's "interpreting an event stream" defines it: lines end in CRLF,
// LF or CR, a line starting with a colon is a comment, "data:" lines join
// with LF, an empty line ends an event. Bytes may arrive in pieces split at
// any point, and lines may be of any length.
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

// Parser is an incremental event stream parser. The zero value is ready to
// use at the start of a stream. It is not safe for concurrent use.
type Parser struct {
	line    []byte // the start of a line whose end has not arrived yet
	partial bool   // line holds a started line (it may still be empty)
	skipLF  bool   // the last line ended in CR: a leading LF belongs to it
	started bool   // a line was completed (so a BOM can no longer come)

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
			p.line = append(p.line, b...)
			p.partial = true
			return
		}
		line := b[:i]
		if p.partial {
			p.line = append(p.line, line...)
			line = p.line
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
		p.processLine(line, emit)
		p.line, p.partial = p.line[:0], false
		b = b[i+end:]
	}
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
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
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
	if p.hasData {
		emit(Event{Type: p.typ, Data: p.data, ID: p.id})
	}
	p.typ, p.data, p.hasData, p.inEvent = p.typ[:0], p.data[:0], false, false
}

// Pending reports whether the parser is inside an event: a line not yet
// ended, or field lines whose blank line has not come. Between two events
// it is false: a comment line and a blank line written then change no
// event the reader sees.
func (p *Parser) Pending() bool {
	return p.partial || p.inEvent
}
