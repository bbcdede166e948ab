package modelname

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"
)

// Limits of the multipart reader. A model name is short; header blocks
// of form fields are a few hundred bytes; RFC 2046 allows boundaries of
// at most 70 characters.
const (
	maxModelLen    = 256
	maxPartHeaders = 8 << 10
	maxBoundary    = 70
	// scanBuffer is the reader's window: the only memory a file part
	// costs, however large.
	scanBuffer = 16 << 10
)

// Boundary returns the boundary of a multipart/form-data Content-Type
// (audio transcriptions, image edits), "" for any other type. A JSON
// Content-Type is turned down without parsing or allocating.
func Boundary(contentType string) string {
	t := strings.TrimLeft(contentType, " \t")
	if len(t) < len("multipart/") || !strings.EqualFold(t[:len("multipart/")], "multipart/") {
		return ""
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return ""
	}
	if b := params["boundary"]; len(b) <= maxBoundary {
		return b
	}
	return ""
}

// FromMultipart returns the value of the first part named "model" of the
// multipart/form-data body r with boundary, "" if there is none or the
// body is not well formed before it ends. It reads r only up to the end
// of that part: a file part before it is skipped through a fixed window
// (16 KiB), never held, so a large upload costs no memory. On any body
// that mime/multipart reads without error, the answer is the first
// "model" part's content as Part.NextRawPart reads it; a value over 256
// bytes, or one in quoted-printable, is not taken as a model.
func FromMultipart(r io.Reader, boundary string) string {
	if boundary == "" || len(boundary) > maxBoundary {
		return ""
	}
	s := &partScanner{br: bufio.NewReaderSize(r, scanBuffer), dash: []byte("\r\n--" + boundary)[2:]}
	s.nl, s.nlDash = []byte("\r\n"), []byte("\r\n--"+boundary)
	if !s.preamble() {
		return ""
	}
	for {
		model, qp, ok := s.headers()
		if !ok {
			return ""
		}
		keep := 0
		if model {
			keep = maxModelLen
		}
		val, long, atDash, ok := s.content(keep)
		if !ok {
			return ""
		}
		if model {
			if long || qp {
				return ""
			}
			return string(val)
		}
		if !atDash {
			// The content ended before nl + "--boundary": that nl is
			// the rest of its line.
			if line, err := s.br.ReadSlice('\n'); err != nil || !bytes.Equal(line, s.nl) {
				return ""
			}
		}
		if line, err := s.br.ReadSlice('\n'); err != nil || !s.delimiter(line, false) {
			return "" // the closing delimiter, or a broken body: no model
		}
	}
}

// partScanner walks a multipart body the way mime/multipart does
// (RFC 2046 §5.1, with its tolerance of bare-LF line ends).
type partScanner struct {
	br *bufio.Reader
	// dash is "--boundary"; nl the line end ("\r\n", or "\n" when the
	// first delimiter line ends so); nlDash nl + dash.
	dash, nl, nlDash []byte
}

// preamble skips to the first delimiter line and past it.
func (s *partScanner) preamble() bool {
	for {
		line, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long preamble line is no delimiter: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = s.br.ReadSlice('\n')
			}
			if err != nil {
				return false
			}
			continue
		}
		if err != nil {
			return false
		}
		if s.delimiter(line, true) {
			return true
		}
		if s.final(line) {
			return false
		}
	}
}

// delimiter reports whether line is "--boundary", optional blanks, nl.
// The first one decides whether lines end in CRLF or in a bare LF.
func (s *partScanner) delimiter(line []byte, first bool) bool {
	rest, ok := bytes.CutPrefix(line, s.dash)
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	if first && len(rest) == 1 && rest[0] == '\n' {
		s.nl, s.nlDash = s.nl[1:], s.nlDash[1:]
	}
	return bytes.Equal(rest, s.nl)
}

// final reports whether line is the closing "--boundary--".
func (s *partScanner) final(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, s.dash)
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, []byte("--"))
	rest = bytes.TrimLeft(rest, " \t")
	return ok && (len(rest) == 0 || bytes.Equal(rest, s.nl))
}

// headers reads a part's header block, as net/textproto does: folded
// lines joined with a space, blanks trimmed. It reports whether the part
// is the form field "model" and whether it is quoted-printable.
func (s *partScanner) headers() (model, qp, ok bool) {
	var (
		field           []byte // the header line being read, unfolded
		cd, cte         string
		haveCD, haveCTE bool
		total           int
	)
	flush := func() bool {
		if field == nil {
			return true
		}
		k, v, found := bytes.Cut(field, []byte(":"))
		if !found {
			return false
		}
		v = bytes.TrimLeft(v, " \t")
		switch {
		case !haveCD && strings.EqualFold(string(k), "Content-Disposition"):
			cd, haveCD = string(v), true
		case !haveCTE && strings.EqualFold(string(k), "Content-Transfer-Encoding"):
			cte, haveCTE = string(v), true
		}
		field = nil
		return true
	}
	for {
		line, err := s.br.ReadSlice('\n')
		if err != nil {
			return false, false, false
		}
		if total += len(line); total > maxPartHeaders {
			return false, false, false
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if field == nil {
				return false, false, false // a fold with nothing to fold into
			}
			field = append(append(field, ' '), trimBlanks(line)...)
			continue
		}
		if !flush() {
			return false, false, false
		}
		field = append(make([]byte, 0, len(line)), trimBlanks(line)...)
	}
	if !flush() {
		return false, false, false
	}
	if haveCD {
		if disp, params, err := mime.ParseMediaType(cd); err == nil && disp == "form-data" {
			model = params["name"] == "model"
		}
	}
	return model, strings.EqualFold(cte, "quoted-printable"), true
}

func trimBlanks(b []byte) []byte { return bytes.Trim(b, " \t") }

// content reads the current part's content up to the delimiter that ends
// it, keeping its first keep bytes (long: there were more). atDash: the
// content was empty and the body is at the delimiter line itself; else it
// is at the nl before "--boundary".
func (s *partScanner) content(keep int) (kept []byte, long, atDash, ok bool) {
	take := func(b []byte) {
		if keep == 0 || long {
			return
		}
		if len(kept)+len(b) > keep {
			long = true
			return
		}
		kept = append(kept, b...)
	}
	start := true
	for {
		buf, err := s.br.Peek(scanBuffer)
		eof := err != nil
		from := 0
		if start {
			start = false
			// An empty content may meet "--boundary" without an nl.
			if bytes.HasPrefix(buf, s.dash) {
				switch afterDelimiter(buf, len(s.dash), eof) {
				case +1:
					return kept, long, true, true
				case -1:
					from = len(s.dash)
				default:
					return nil, false, false, false // cannot happen with a full window
				}
			} else if bytes.HasPrefix(s.dash, buf) {
				return nil, false, false, false // the body ends inside it
			}
		}
		for {
			j := bytes.Index(buf[from:], s.nlDash)
			if j < 0 {
				if eof {
					return nil, false, false, false // no closing delimiter
				}
				// Keep a tail that may begin a delimiter.
				n := len(buf) - len(s.nlDash) - 2
				take(buf[:n])
				if long {
					return nil, true, false, true // too long to be a model: no need to find its end
				}
				s.br.Discard(n)
				break
			}
			i := from + j
			switch afterDelimiter(buf[i:], len(s.nlDash), eof) {
			case +1:
				take(buf[:i])
				s.br.Discard(i)
				return kept, long, false, true
			case 0:
				// The window ends inside the decision: slide to it.
				take(buf[:i])
				s.br.Discard(i)
			default:
				from = i + len(s.nlDash)
				continue
			}
			break
		}
	}
}

// afterDelimiter decides, as mime/multipart does, whether buf, which
// starts with a delimiter prefix of length n, is a delimiter: +1 yes, -1
// no (content that looks like one), 0 more bytes are needed. At the end
// of the body (eof) a bare prefix is one.
func afterDelimiter(buf []byte, n int, eof bool) int {
	if len(buf) == n {
		if eof {
			return +1
		}
		return 0
	}
	switch c := buf[n]; c {
	case ' ', '\t', '\r', '\n':
		return +1
	case '-':
		if len(buf) == n+1 {
			if eof {
				return -1
			}
			return 0
		}
		if buf[n+1] == '-' {
			return +1
		}
	}
	return -1
}
