package redisurl

import (
	"reflect"
	"strings"
	"testing"
)

var parseTests = []struct {
	name, raw string
	want      URL
	wantErr   string
}{
	{"sentinel", "redis-sentinel://s1:26379,s2:26379,s3:26379/mymaster",
		URL{Scheme: SentinelScheme, Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, Master: "mymaster"}, ""},
	{"sentinel password db", "redis-sentinel://:pw@10.0.0.1:26379/mymaster?db=3",
		URL{Scheme: SentinelScheme, Addrs: []string{"10.0.0.1:26379"}, Password: "pw", Master: "mymaster", DB: 3}, ""},
	{"sentinel user and escaped password", "redis-sentinel://app:p%40ss@[::1]:26379/m/",
		URL{Scheme: SentinelScheme, Addrs: []string{"[::1]:26379"}, Username: "app", Password: "p@ss", Master: "m"}, ""},
	{"password with slash and question mark", "redis-sentinel://:a/b?c@h:1/m",
		URL{Scheme: SentinelScheme, Addrs: []string{"h:1"}, Password: "a/b?c", Master: "m"}, ""},
	{"spaces around hosts", "redis-cluster://n1:7000, n2:7001",
		URL{Scheme: ClusterScheme, Addrs: []string{"n1:7000", "n2:7001"}}, ""},
	{"cluster", "redis-cluster://:pw@n1:7000,n2:7001/",
		URL{Scheme: ClusterScheme, Addrs: []string{"n1:7000", "n2:7001"}, Password: "pw"}, ""},
	{"upper-case scheme", "REDIS-CLUSTER://n1:7000",
		URL{Scheme: ClusterScheme, Addrs: []string{"n1:7000"}}, ""},

	{"plain redis", "redis://h:6379/0", URL{}, "scheme must be"},
	{"no master", "redis-sentinel://s1:26379", URL{}, "master's name"},
	{"empty master", "redis-sentinel://s1:26379/", URL{}, "master's name"},
	{"master with slash", "redis-sentinel://s1:26379/a/b", URL{}, "master's name"},
	{"no host", "redis-sentinel:///mymaster", URL{}, "at least one host:port"},
	{"empty entry", "redis-cluster://n1:7000,,n2:7001", URL{}, "no empty entry"},
	{"no port", "redis-cluster://n1", URL{}, `"n1" is not host:port`},
	{"bad port", "redis-cluster://n1:0", URL{}, "port must be"},
	{"db not a number", "redis-sentinel://s:1/m?db=x", URL{}, "db must be a number"},
	{"negative db", "redis-sentinel://s:1/m?db=-1", URL{}, "db must be a number"},
	{"unknown query", "redis-sentinel://s:1/m?dial_timeout=3", URL{}, "only db=N"},
	{"cluster db", "redis-cluster://n1:7000/2", URL{}, "database 0 only"},
	{"cluster query", "redis-cluster://n1:7000?db=1", URL{}, "takes no query"},
	{"fragment", "redis-cluster://n1:7000#x", URL{}, "fragment"},
	{"bad escape in password", "redis-cluster://:%zz@n1:7000", URL{}, "password is not valid"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Parse(%q) error = %v; want %q", tt.raw, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.raw, got, err, tt.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"redis-sentinel://:secret@s1:1,s2:2/m?db=1", "redis-sentinel://****@s1:1,s2:2/m?db=1"},
		{"redis-cluster://user:a/b?c@n:1", "redis-cluster://****@n:1"},
		{"redis-cluster://n:1", "redis-cluster://n:1"},
		{"no scheme", "no scheme"},
	}
	for _, tt := range tests {
		if got := Redact(tt.raw); got != tt.want {
			t.Errorf("Redact(%q) = %q; want %q", tt.raw, got, tt.want)
		}
	}
}

// FuzzParse checks that no error and no redacted URL shows the password,
// and that what parses has what a client needs.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := Parse(raw)
		scheme, rest, ok := strings.Cut(raw, "://")
		if at := strings.LastIndexByte(rest, '@'); ok && at >= 0 {
			if want := scheme + "://****" + rest[at:]; Redact(raw) != want {
				t.Errorf("Redact(%q) = %q; want %q", raw, Redact(raw), want)
			}
			// The password, where it cannot be told from the rest.
			_, pw, _ := strings.Cut(rest[:at], ":")
			if len(pw) >= 4 && !strings.Contains(scheme+rest[at:], pw) && err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("Parse(%q) error %q shows the password", raw, err)
			}
		}
		if err != nil {
			return
		}
		if len(u.Addrs) == 0 || (u.Scheme == SentinelScheme) != (u.Master != "") {
			t.Errorf("Parse(%q) = %+v; want addresses, and a master name exactly for Sentinel", raw, u)
		}
	})
}
