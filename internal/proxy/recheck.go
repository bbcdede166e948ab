package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// recheckWorkers is how many blacklisted keys are re-checked at once: few,
// so a large blacklist does not burst against the provider.
const recheckWorkers = 4

// recheckTimeout bounds one re-check request.
const recheckTimeout = 30 * time.Second

// azureAPIVersion is the api-version sent when listing models on Azure.
const azureAPIVersion = "2024-10-21"

// anthropicVersion is the anthropic-version sent when listing models there.
const anthropicVersion = "2023-06-01"

// Recheck re-checks blacklisted keys every interval until ctx ends, with a
// request that costs no tokens (listing models); a key that gets a 2xx is
// back in rotation. A round runs only when gate (if not nil) allows it, so
// replicas can take turns. It returns when ctx ends and no check is running.
func (p *Proxy) Recheck(ctx context.Context, interval time.Duration, gate func(context.Context) bool) {
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if gate == nil || gate(ctx) {
				p.RecheckOnce(ctx)
			}
		}
	}
}

// RecheckOnce re-checks every blacklisted key now and returns how many were
// restored.
func (p *Proxy) RecheckOnce(ctx context.Context) int {
	keys := p.keys.Blacklisted()
	if len(keys) == 0 {
		return 0
	}
	work := make(chan *keymanager.Key)
	var mu sync.Mutex
	restored := 0
	var wg sync.WaitGroup
	for range min(recheckWorkers, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				target := p.recheckTarget()
				status, err := p.check(ctx, k, target)
				if err == nil && status >= 200 && status < 300 {
					p.keys.Restore(k)
					mu.Lock()
					restored++
					mu.Unlock()
					p.log.WithFields(logrus.Fields{"key": k.Preview(), "upstream": target.Host()}).Info("key restored by re-check")
					continue
				}
				if p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
					f := logrus.Fields{"key": k.Preview(), "upstream": target.Host(), "status": status}
					if err != nil {
						f["error"] = err.Error()
					}
					p.log.WithFields(f).Debug("key still failing re-check")
				}
			}
		}()
	}
feed:
	for _, k := range keys {
		select {
		case work <- k:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if restored > 0 || p.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		p.log.WithFields(logrus.Fields{"checked": len(keys), "restored": restored}).Info("blacklisted keys re-checked")
	}
	return restored
}

// recheckTarget picks a target that is not benched, without taking the
// probe slot of one whose bench ended.
func (p *Proxy) recheckTarget() *upstream.Target {
	now := p.targets.Now()
	for _, t := range p.targets.Targets() {
		if !t.Benched(now) {
			return t
		}
	}
	return p.targets.Targets()[0]
}

// check sends the no-cost request for k to t and returns the status.
func (p *Proxy) check(ctx context.Context, k *keymanager.Key, t *upstream.Target) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	u := *t.URL
	u.Path, u.RawQuery = CheckPath(t)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	t.Style.Apply(req.Header, k.Secret().Reveal(), nil)
	if t.Style == upstream.Anthropic {
		// Anthropic refuses requests without an API version.
		req.Header.Set("Anthropic-Version", anthropicVersion)
	}
	resp, err := p.base.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// CheckPath is the path and query of the model listing on t, the request
// used to test a key without spending tokens: {base}/v1/models, or
// {base}/models when the base already ends in a version; Gemini's is under
// /v1beta, Azure's under /openai with an api-version.
func CheckPath(t *upstream.Target) (path, query string) {
	base := t.URL.Path
	versioned := func() bool {
		i := strings.LastIndexByte(base, '/')
		seg := base[i+1:]
		return len(seg) >= 2 && seg[0] == 'v' && seg[1] >= '0' && seg[1] <= '9'
	}
	switch t.Style {
	case upstream.Gemini:
		if base == "" {
			return "/v1beta/models", ""
		}
	case upstream.Azure:
		if !strings.Contains(base, "/openai") {
			base += "/openai"
		}
		return base + "/models", "api-version=" + azureAPIVersion
	}
	if base != "" && versioned() {
		return base + "/models", ""
	}
	return base + "/v1/models", ""
}

// ListModels asks the upstream for its model list with a usable key, on
// a target not benched, and returns the answer's body (at most 4 MiB) and
// the target's auth style, which says its dialect (docs/groups.md,
// "GET /v1/models").
func (p *Proxy) ListModels(ctx context.Context) ([]byte, upstream.AuthStyle, error) {
	k, err := p.keys.Next()
	if err != nil {
		return nil, 0, err
	}
	t := p.recheckTarget()
	ctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	u := *t.URL
	u.Path, u.RawQuery = CheckPath(t)
	if t.Style == upstream.Gemini {
		u.RawQuery = "pageSize=1000"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	t.Style.Apply(req.Header, k.Secret().Reveal(), nil)
	if t.Style == upstream.Anthropic {
		req.Header.Set("Anthropic-Version", anthropicVersion)
		q := req.URL.Query()
		q.Set("limit", "1000")
		req.URL.RawQuery = q.Encode()
	}
	resp, err := p.base.RoundTrip(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("model list: upstream answered %d", resp.StatusCode)
	}
	return body, t.Style, nil
}
