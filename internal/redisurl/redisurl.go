// Package redisurl reads the two highly available forms of REDIS_URL: a
// Sentinel set watching a master (redis-sentinel://) and a Redis Cluster
// (redis-cluster://). One server (redis://, rediss://) is go-redis's own
// URL, read by redis.ParseURL. Config validates with this package and the
// cluster package connects with it, so the two cannot disagree on what a
// URL means. No error quotes the password.
package redisurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// The schemes of the highly available forms.
const (
	SentinelScheme = "redis-sentinel"
	ClusterScheme  = "redis-cluster"
)

// URL is a parsed redis-sentinel:// or redis-cluster:// URL.
type URL struct {
	Scheme string   // SentinelScheme or ClusterScheme
	Addrs  []string // host:port of the sentinels, or of some cluster nodes
	// Username and Password authenticate to the Redis servers holding the
	// data (the master and its replicas, or the cluster nodes), not to the
	// sentinels.
	Username, Password string
	Master             string // the master's name as the sentinels know it; Sentinel only
	DB                 int    // Sentinel only: a Redis Cluster has database 0 only
}

// Scheme returns raw's scheme in lower case, or "" when raw has none.
func Scheme(raw string) string {
	s, _, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	return strings.ToLower(s)
}

// Parse reads a redis-sentinel://[user:password@]host:port,host:port/MASTER[?db=N]
// or redis-cluster://[user:password@]host:port,host:port URL. The error
// says what is wrong without quoting the value (the caller shows it,
// through Redact).
func Parse(raw string) (URL, error) {
	u := URL{Scheme: Scheme(raw)}
	if u.Scheme != SentinelScheme && u.Scheme != ClusterScheme {
		return URL{}, fmt.Errorf("scheme must be %s or %s", SentinelScheme, ClusterScheme)
	}
	_, rest, _ := strings.Cut(raw, "://")
	// The user information ends at the last @: hosts, the master's name
	// and db=N hold none, and a password may hold an unescaped / or ?.
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		var err error
		if u.Username, u.Password, err = userinfo(rest[:i]); err != nil {
			return URL{}, err
		}
		rest = rest[i+1:]
	}
	rest, query, _ := strings.Cut(rest, "?")
	if strings.Contains(rest, "#") || strings.Contains(query, "#") {
		return URL{}, errors.New("has a fragment (#...)")
	}
	hosts, path, _ := strings.Cut(rest, "/")
	for h := range strings.SplitSeq(hosts, ",") {
		addr, err := hostPort(strings.TrimSpace(h))
		if err != nil {
			return URL{}, err
		}
		u.Addrs = append(u.Addrs, addr)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return URL{}, errors.New("query does not parse")
	}
	if u.Scheme == ClusterScheme {
		if strings.Trim(path, "/") != "" {
			return URL{}, errors.New("a Redis Cluster has database 0 only: write no path")
		}
		if len(q) > 0 {
			return URL{}, errors.New("takes no query")
		}
		return u, nil
	}
	if u.Master, err = url.PathUnescape(strings.TrimSuffix(path, "/")); err != nil || u.Master == "" || strings.Contains(u.Master, "/") {
		return URL{}, errors.New("needs the master's name as its path (redis-sentinel://host:port,host:port/MASTER)")
	}
	for k, v := range q {
		if k != "db" || len(v) != 1 {
			return URL{}, fmt.Errorf("query %q: only db=N is understood, once", k)
		}
		if u.DB, err = strconv.Atoi(v[0]); err != nil || u.DB < 0 {
			return URL{}, errors.New("db must be a number, 0 or more")
		}
	}
	return u, nil
}

// userinfo splits and decodes "user:password" or ":password".
func userinfo(s string) (user, password string, err error) {
	user, password, _ = strings.Cut(s, ":")
	if user, err = url.PathUnescape(user); err != nil {
		return "", "", errors.New("user name is not valid %-encoding")
	}
	if password, err = url.PathUnescape(password); err != nil {
		return "", "", errors.New("password is not valid %-encoding")
	}
	return user, password, nil
}

// hostPort checks one host:port of the list.
func hostPort(s string) (string, error) {
	if s == "" {
		return "", errors.New("needs at least one host:port, and no empty entry in the list")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port must be a number from 1 to 65535", s)
	}
	return net.JoinHostPort(host, port), nil
}

// Redact returns raw with any user information replaced by ****, for
// errors and logs.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = "****" + rest[at:]
	}
	return scheme + "://" + rest
}
