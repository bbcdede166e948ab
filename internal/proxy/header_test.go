package proxy

import (
	"net/http"
	"reflect"
	"testing"
)

// moveHeader hands the answer's fields to the client's map: a field the
// client's map holds already (our CORS middleware's Vary) keeps its values
// and gets the answer's after them, as ReverseProxy's copy would; the
// answer keeps only Content-Type, which ReverseProxy reads to flush event
// streams and copies itself.
func TestMoveHeader(t *testing.T) {
	dst := http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"*"}}
	src := http.Header{
		"Vary":           {"Accept-Encoding"},
		"Content-Type":   {"text/event-stream"},
		"X-Request-Id":   {"req_1"},
		"Set-Cookie":     {"a=1", "b=2"},
		"X-Gptload-Test": {""},
	}
	moveHeader(dst, src)
	want := http.Header{
		"Vary":                        {"Origin", "Accept-Encoding"},
		"Access-Control-Allow-Origin": {"*"},
		"X-Request-Id":                {"req_1"},
		"Set-Cookie":                  {"a=1", "b=2"},
		"X-Gptload-Test":              {""},
	}
	if !reflect.DeepEqual(dst, want) {
		t.Errorf("client header = %v; want %v", dst, want)
	}
	if want := (http.Header{"Content-Type": {"text/event-stream"}}); !reflect.DeepEqual(src, want) {
		t.Errorf("answer header after the move = %v; want only %v", src, want)
	}
}
