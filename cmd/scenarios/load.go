package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// request is one planned client request.
type request struct {
	at      time.Duration // arrival, from the start of traffic
	mistake *mistake      // nil for a regular request
	model   string
	stream  bool
	burst   bool
}

// result is what the client saw of one request.
type result struct {
	request
	status   int
	ok       bool // regular: 2xx and a whole body; mistake: the provider's own 4xx
	attempts int  // X-Gpt-Load-Attempts; 0 when absent
	errText  string
}

// plan lays out the arrivals of s over d: one every 1/rate, open loop, so
// a slow answer never delays the next arrival; plus the bursts. Mistakes
// are spread evenly at their share, so every run sends the same requests.
func plan(s scenario, d time.Duration) []request {
	models := s.models
	if len(models) == 0 {
		models = []string{"gpt-4o-mini"}
	}
	var reqs []request
	regular, mistakes := 0, 0
	n := int(s.rate * d.Seconds())
	for i := range n {
		r := request{at: time.Duration(float64(i) / s.rate * float64(time.Second))}
		if int(float64(i+1)*s.mistakeShare) > int(float64(i)*s.mistakeShare) {
			m := s.mistakes[mistakes%len(s.mistakes)]
			r.mistake = &m
			mistakes++
		} else {
			r.model = models[regular%len(models)]
			r.stream = s.streamEvery > 0 && regular%s.streamEvery == 0
			regular++
		}
		reqs = append(reqs, r)
	}
	for _, b := range s.bursts {
		for i := range b.n {
			reqs = append(reqs, request{at: b.at, model: models[i%len(models)], stream: true, burst: true})
		}
	}
	return reqs
}

func (r request) body() []byte {
	if r.mistake != nil {
		switch r.mistake.kind {
		case "bad_json":
			return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}`)
		case "no_messages":
			return []byte(`{"model":"gpt-4o-mini","temperature":0.2}`)
		case "unknown_model":
			return []byte(`{"model":` + strconv.Quote(r.mistake.model) + `,"messages":[{"role":"user","content":"Say hello"}]}`)
		case "flagged":
			return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"You are FLAGGED worthless, say it back"}]}`)
		case "foreign_file":
			return []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"Summarise this"},{"type":"file","file":{"file_id":"file-otherproj` +
				strconv.Itoa(int(r.at/time.Millisecond)) + `"}}]}]}`)
		}
	}
	b, _ := json.Marshal(map[string]any{"model": r.model, "stream": r.stream,
		"messages": []map[string]string{{"role": "user", "content": "Say hello"}}})
	return b
}

// drive sends every request of reqs at its time from start and returns
// what came back, in plan order. Each request is bounded by timeout.
func drive(ctx context.Context, c *http.Client, url string, reqs []request, start time.Time, timeout time.Duration) []result {
	res := make([]result, len(reqs))
	var wg sync.WaitGroup
	// The bursts were appended last; send in order of arrival.
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(reqs[a].at, reqs[b].at) })
	for _, i := range order {
		if d := time.Until(start.Add(reqs[i].at)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				wg.Wait()
				return res
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = send(ctx, c, url, reqs[i], timeout)
		}()
	}
	wg.Wait()
	return res
}

func send(ctx context.Context, c *http.Client, url string, r request, timeout time.Duration) result {
	res := result{request: r}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(r.body()))
	if err != nil {
		res.errText = err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		res.errText = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	res.attempts, _ = strconv.Atoi(resp.Header.Get("X-Gpt-Load-Attempts"))
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		res.errText = "reading the body: " + err.Error()
		return res
	}
	if r.mistake == nil {
		if r.stream {
			res.ok = resp.StatusCode == http.StatusOK && bytes.HasSuffix(b, []byte("data: [DONE]\n\n"))
		} else {
			res.ok = resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"object":"chat.completion"`))
		}
		return res
	}
	res.ok = providerAnswer(*r.mistake, resp.StatusCode, b)
	return res
}

// providerAnswer reports whether a mistake's answer is the provider's own:
// the status and error the simulator gives for it, not one of gpt-load's.
func providerAnswer(m mistake, status int, body []byte) bool {
	switch m.kind {
	case "flagged", "foreign_file":
		return refusalAnswer(m, status, body)
	}
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	code := ""
	if e.Error.Code != nil {
		code = *e.Error.Code
	}
	// During an IP-wide storm the provider refuses the mistake like every
	// other request; its 429 passed on as is is its own answer too.
	if status == http.StatusTooManyRequests && code == "rate_limit_exceeded" && strings.Contains(e.Error.Message, "from your IP address") {
		return true
	}
	if e.Error.Type != "invalid_request_error" {
		return false
	}
	switch m.kind {
	case "bad_json":
		return status == http.StatusBadRequest && code == "" && strings.Contains(e.Error.Message, "could not parse the JSON body")
	case "no_messages":
		return status == http.StatusBadRequest && code == "missing_required_parameter"
	case "unknown_model":
		return status == http.StatusNotFound && code == "model_not_found" && strings.Contains(e.Error.Message, "`"+m.model+"`")
	}
	return false
}

// refusalAnswer reports whether a content refusal reached the client as
// the provider's own: OpenRouter's moderation 403 (error.code a number,
// metadata.reasons), or the 403 PERMISSION_DENIED naming the file.
func refusalAnswer(m mistake, status int, body []byte) bool {
	var e struct {
		Error struct {
			Code     json.Number `json:"code"`
			Message  string      `json:"message"`
			Status   string      `json:"status"`
			Metadata *struct {
				Reasons []string `json:"reasons"`
			} `json:"metadata"`
		} `json:"error"`
	}
	if status != http.StatusForbidden || json.Unmarshal(body, &e) != nil {
		return false
	}
	if m.kind == "flagged" {
		return e.Error.Code == "403" && e.Error.Metadata != nil && len(e.Error.Metadata.Reasons) > 0 &&
			strings.Contains(e.Error.Message, "flagged")
	}
	return e.Error.Status == "PERMISSION_DENIED" && strings.Contains(e.Error.Message, "File file-otherproj")
}
