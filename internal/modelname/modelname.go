// Package modelname reads which model a request asks for, cheaply: from
// the top-level "model" field of a JSON body, the "model" field of a
// multipart/form-data body (audio, images), or from the path for the APIs
// that name the model there (Gemini, Azure OpenAI).
package modelname

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/gpt-load/gpt-load/internal/ascii"
)

// Of returns the model a request for path, with the Content-Type
// contentType and body, asks for; "" when it names none. The path wins:
// Gemini and Azure bodies carry no model. A multipart/form-data body is
// read up to its "model" field (FromMultipart); any other as JSON.
func Of(path, contentType string, body []byte) string {
	if m := FromPath(path); m != "" {
		return m
	}
	if b := Boundary(contentType); b != "" {
		return FromMultipart(bytes.NewReader(body), b)
	}
	return FromBody(body)
}

// FromPath reads the model from a Gemini path (…/models/{model}:action)
// or the deployment from an Azure OpenAI path (…/deployments/{name}/…).
func FromPath(path string) string {
	start, end := PathSpan(path)
	return path[start:end]
}

// PathSpan returns where FromPath's model lies in path: path[start:end];
// start == end when there is none. Rewriting the model in place uses it,
// so that what is rewritten is exactly what was read.
func PathSpan(path string) (start, end int) {
	if i := strings.Index(path, "/models/"); i >= 0 {
		i += len("/models/")
		rest := path[i:]
		if j := strings.IndexByte(rest, ':'); j > 0 && !strings.Contains(rest[:j], "/") {
			return i, i + j
		}
	}
	if i := strings.Index(path, "/deployments/"); i >= 0 {
		i += len("/deployments/")
		rest := path[i:]
		if j := strings.IndexByte(rest, '/'); j > 0 {
			return i, i + j
		}
	}
	return 0, 0
}

// FromBody returns the string value of the top-level "model" member of a
// JSON object, "" if there is none or the JSON is not an object. It walks
// the members in order and stops at the first "model": nested values are
// skipped without being decoded, so the cost is one pass over the bytes
// before the field, and nothing after it.
func FromBody(b []byte) string {
	start, end, escaped := BodySpan(b)
	if start < 0 {
		return ""
	}
	if !escaped && utf8.Valid(b[start+1:end-1]) {
		return string(b[start+1 : end-1])
	}
	return unquote(b[start:end])
}

// BodySpan returns where FromBody's model lies in b: b[start:end] is the
// JSON string literal, quotes included, and escaped says whether it holds
// a backslash escape; start is -1 when FromBody finds no model. Rewriting
// the model in place uses it, so that what is rewritten is exactly what
// was read.
func BodySpan(b []byte) (start, end int, escaped bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return -1, -1, false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return -1, -1, false // '}' (no model), or not JSON
		}
		keyEnd, escaped := stringEnd(b, i)
		if keyEnd < 0 {
			return -1, -1, false
		}
		isModel := string(b[i+1:keyEnd-1]) == "model" || escaped && unquote(b[i:keyEnd]) == "model"
		i = skipSpace(b, keyEnd)
		if i >= len(b) || b[i] != ':' {
			return -1, -1, false
		}
		i = skipSpace(b, i+1)
		if isModel {
			if i >= len(b) || b[i] != '"' {
				return -1, -1, false
			}
			end, esc := stringEnd(b, i)
			if end < 0 {
				return -1, -1, false
			}
			return i, end, esc
		}
		if i = skipValue(b, i); i < 0 {
			return -1, -1, false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return -1, -1, false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && ascii.IsSpace(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index after the closing quote of the string that
// starts at b[i] == '"', and whether it holds an escape; -1 if unclosed.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !ascii.IsSpace(b[j]) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// unquote decodes a JSON string literal, "" if it is not one.
func unquote(lit []byte) string {
	var s string
	if json.Unmarshal(lit, &s) != nil {
		return ""
	}
	return s
}
