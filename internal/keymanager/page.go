package keymanager

import (
	"github.com/gpt-load/gpt-load/internal/secret"
)

// Filter picks keys for a page of monitoring output. The zero Filter
// matches every key.
type Filter struct {
	// States, when not zero, keeps the keys whose state (as a snapshot
	// would report it now) has its bit set: 1<<Active, 1<<Cooling,
	// 1<<Blacklisted.
	States uint8
	// Query, when not empty, keeps the keys whose mask or redacted reason
	// contains it, ASCII letters compared without regard to case.
	Query string
}

// StateBit is s as a Filter.States bit.
func StateBit(s State) uint8 { return 1 << s }

// Page returns the snapshots of the keys f matches, in file order, skipping
// the first offset matches and keeping at most limit, and how many keys
// match in all. It reads each key's state once and builds snapshots only
// for the page, so what it allocates depends on limit, not on the pool.
func (m *Manager) Page(f Filter, offset, limit int) (page []Snapshot, total int) {
	v := m.view.Load()
	now := m.now().UnixNano()
	page = make([]Snapshot, 0, min(limit, len(v.all)))
	var (
		mask                  [64]byte
		lastRaw, lastRedacted string // reasons repeat across keys: redact once
	)
	for _, k := range v.all {
		if f.States != 0 && f.States&StateBit(k.stateAt(now)) == 0 {
			continue
		}
		if f.Query != "" && !containsFold(k.secret.AppendMask(mask[:0]), f.Query) {
			r := k.reasonAt(now)
			if r == "" {
				continue
			}
			if r != lastRaw {
				lastRaw, lastRedacted = r, secret.Redact(r)
			}
			if !containsFold(lastRedacted, f.Query) {
				continue
			}
		}
		total++
		if total > offset && len(page) < limit {
			page = append(page, k.snapshot(now))
		}
	}
	return page, total
}

// stateAt is the state a snapshot at unix time now reports: a cooling key
// whose deadline passed is active.
func (k *Key) stateAt(now int64) State {
	s := State(k.state.Load())
	if s == Cooling && now >= k.until.Load() {
		return Active
	}
	return s
}

// reasonAt is the reason a snapshot at now reports: none for an active key.
func (k *Key) reasonAt(now int64) string {
	if k.stateAt(now) == Active {
		return ""
	}
	return k.reason()
}

// containsFold reports whether s contains sub, ASCII letters compared
// without regard to case. It does not allocate.
func containsFold[T string | []byte](s T, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for j < n && lower(s[i+j]) == lower(sub[j]) {
			j++
		}
		if j == n {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
