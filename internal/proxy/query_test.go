package proxy

import (
	"net/url"
	"strings"
	"testing"
)

// queryCases seed TestWithoutKeyParam and FuzzWithoutKeyParam.
var queryCases = []struct{ in, want string }{
	{"", ""},
	{"limit=2", "limit=2"},
	{"key=t", ""},
	{"key=t&limit=2", "limit=2"},
	{"limit=2&key=t", "limit=2"},
	{"KEY=t&limit=2", "limit=2"},
	{"Key=t&kEy=u&limit=2", "limit=2"},
	{"k%65y=t&limit=2", "limit=2"},
	{"%6B%45%59=t&limit=2", "limit=2"},
	{"key&limit=2", "limit=2"},
	{"key=&limit=2", "limit=2"},
	{"keys=1&monkey=2&key2=3", "keys=1&monkey=2&key2=3"},
	{"a=%zz&key=t&b=c+d&b=%20", "a=%zz&b=c+d&b=%20"},
	{"q=key&x=the+key", "q=key&x=the+key"},
	{"k+ey=1", "k+ey=1"},
	{"&&key=t&&", "&&&"},
}

func TestWithoutKeyParam(t *testing.T) {
	for _, tc := range queryCases {
		if got := withoutKeyParam(tc.in); got != tc.want {
			t.Errorf("withoutKeyParam(%q) = %q; want %q", tc.in, got, tc.want)
		}
		checkWithoutKeyParam(t, tc.in, withoutKeyParam(tc.in))
	}
}

// checkWithoutKeyParam is the oracle: no parameter decoding to "key" in
// any case is left, and the other parameters are kept in order, byte for
// byte.
func checkWithoutKeyParam(t *testing.T, in, got string) {
	t.Helper()
	var want []string
	for _, part := range strings.Split(in, "&") {
		name, _, _ := strings.Cut(part, "=")
		dec, err := url.QueryUnescape(name)
		if err != nil {
			dec = name
		}
		if strings.ToLower(dec) != "key" {
			want = append(want, part)
		}
	}
	if w := strings.Join(want, "&"); got != w {
		t.Errorf("withoutKeyParam(%q) = %q; want %q", in, got, w)
	}
}

func FuzzWithoutKeyParam(f *testing.F) {
	for _, tc := range queryCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkWithoutKeyParam(t, in, withoutKeyParam(in))
	})
}

func BenchmarkWithoutKeyParam(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		withoutKeyParam("api-version=2024-02-01&limit=20")
	}
}
