package groups

import "github.com/gpt-load/gpt-load/internal/modelname"

// RewriteJSONModel returns body with the value of its top-level "model"
// member, the one modelname.FromBody reads, replaced by newModel; every
// other byte stays as the client sent it. ok is false, and body is
// returned as is, when the body names no model that way. The result is a
// new slice; body is not modified.
func RewriteJSONModel(body []byte, newModel string) (out []byte, ok bool) {
	start, end, _ := modelname.BodySpan(body)
	if start < 0 {
		return body, false
	}
	out = make([]byte, 0, len(body)-(end-start)+quotedLen(newModel))
	out = append(out, body[:start]...)
	out = appendQuoted(out, newModel)
	return append(out, body[end:]...), true
}

// RewritePathModel returns path with the model that modelname.FromPath
// reads replaced by newModel: a Gemini model (/v1beta/models/NAME:action)
// or an Azure deployment (/openai/deployments/NAME/…). ok is false, and
// path is returned as is, when the path names no model.
func RewritePathModel(path, newModel string) (string, bool) {
	start, end := modelname.PathSpan(path)
	if start == end {
		return path, false
	}
	return path[:start] + newModel + path[end:], true
}

const hexDigits = "0123456789abcdef"

// quotedLen is len(appendQuoted(nil, s)).
func quotedLen(s string) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n += 2
		case c < 0x20:
			n += 6
		default:
			n++
		}
	}
	return n
}

// appendQuoted appends s as a JSON string literal: quotes, backslashes and
// control characters escaped, everything else (UTF-8 included) as is.
// Invalid UTF-8 is kept too; upstreams see what the operator wrote.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
