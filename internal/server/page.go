package server

import (
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/gpt-load/gpt-load/internal/apierr"
	"github.com/gpt-load/gpt-load/internal/keymanager"
)

// Paging of key lists (docs/api.md, "Management endpoints").
const (
	// DefaultPageLimit is how many keys a list holds when limit is not given.
	DefaultPageLimit = 1000
	// MaxPageLimit bounds limit, and so the size of one answer.
	MaxPageLimit = 10000
	// maxQueryLen bounds q: a longer one cannot match a mask or a reason
	// worth searching, and each key is compared with it.
	maxQueryLen = 200
)

// page is a parsed page request: which keys, from where, how many.
type page struct {
	filter        keymanager.Filter
	offset, limit int
}

// parsePage reads limit, offset, state and q from query. allowed are the
// states the list can hold; state must be one of them, and with no state
// the filter keeps all of them.
func parsePage(query url.Values, allowed ...keymanager.State) (page, *apierr.Error) {
	p := page{limit: DefaultPageLimit}
	bad := func(msg string) (page, *apierr.Error) {
		return page{}, apierr.New(http.StatusBadRequest, apierr.CodeInvalidRequest, msg)
	}
	if v := query.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxPageLimit {
			return bad("limit=" + strconv.Quote(v) + ": want a whole number from 0 to " + strconv.Itoa(MaxPageLimit))
		}
		p.limit = n
	}
	if v := query.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad("offset=" + strconv.Quote(v) + ": want a whole number, 0 or more")
		}
		p.offset = n
	}
	names := ""
	for i, s := range allowed {
		if i > 0 {
			names += ", "
		}
		names += s.String()
	}
	if v := query.Get("state"); v != "" {
		for _, s := range allowed {
			if v == s.String() {
				p.filter.States = keymanager.StateBit(s)
			}
		}
		if p.filter.States == 0 {
			return bad("state=" + strconv.Quote(v) + ": want one of " + names)
		}
	} else {
		for _, s := range allowed {
			p.filter.States |= keymanager.StateBit(s)
		}
	}
	if v := query.Get("q"); v != "" {
		if len(v) > maxQueryLen || !utf8.ValidString(v) {
			return bad("q: want valid UTF-8 text of at most " + strconv.Itoa(maxQueryLen) + " bytes")
		}
		p.filter.Query = v
	}
	return p, nil
}
