package h1client

import "time"

// take pops the most recently idle connection to key, closing those idle
// past the timeout; nil when none.
func (t *Transport) take(key string) *conn {
	var stale []*conn
	var c *conn
	t.mu.Lock()
	list := t.idle[key]
	for len(list) > 0 {
		c = list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		t.nidle--
		if time.Since(c.idleSince) < t.o.IdleTimeout {
			break
		}
		stale = append(stale, c)
		c = nil
	}
	t.idle[key] = list
	t.mu.Unlock()
	for _, s := range stale {
		s.nc.Close()
	}
	return c
}

// put keeps c idle for reuse, or closes it when its host has enough.
func (t *Transport) put(c *conn) {
	c.stop = nil
	c.idleSince = time.Now()
	t.mu.Lock()
	list := t.idle[c.key]
	if len(list) >= t.o.MaxIdlePerHost {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.key] = append(list, c)
	t.nidle++
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.o.IdleTimeout, t.reap)
	}
	t.mu.Unlock()
}

// reap closes connections idle past the timeout; it runs while any
// connection is idle.
func (t *Transport) reap() {
	var stale []*conn
	t.mu.Lock()
	for key, list := range t.idle {
		kept := list[:0]
		for _, c := range list {
			if time.Since(c.idleSince) >= t.o.IdleTimeout {
				stale = append(stale, c)
			} else {
				kept = append(kept, c)
			}
		}
		clear(list[len(kept):])
		t.nidle -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(t.idle, key)
		} else {
			t.idle[key] = kept
		}
	}
	if t.nidle > 0 {
		t.reaper.Reset(t.o.IdleTimeout / 2)
	} else {
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// CloseIdleConnections closes the idle connections, and the fallback's.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	all := t.idle
	t.idle = make(map[string][]*conn)
	t.nidle = 0
	t.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			c.nc.Close()
		}
	}
	if ci, ok := t.o.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// IdleConns is the number of idle connections kept, for tests.
func (t *Transport) IdleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nidle
}
