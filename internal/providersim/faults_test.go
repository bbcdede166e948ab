package providersim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClientTrouble checks the refusals that are the request's doing:
// flagged content for every key, another project's file, and multipart
// transcriptions with their model checks.
func TestClientTrouble(t *testing.T) {
	s := start(t, Config{
		Models: []string{"gpt-4o-mini", "gpt-4o", "whisper-1"},
		Keys: []Key{
			{Key: keyGood, Files: []string{"file-mine1"}},
			{Key: keyNoGPT4o, DeniedModels: []string{"whisper-1"}},
			{Key: keyProject, DeniedModels: []string{"whisper-1"}, DeniedAs: DeniedAsProject},
		},
	})
	url := s.URLs()[0]
	flagged := `{"model":"gpt-4o","messages":[{"role":"user","content":"you are FLAGGED stupid"}]}`
	for _, k := range []string{keyGood, keyNoGPT4o} {
		a := post(t, url, k, flagged)
		var e struct {
			Error struct {
				Code     int    `json:"code"`
				Message  string `json:"message"`
				Metadata struct {
					Reasons   []string `json:"reasons"`
					ModelSlug string   `json:"model_slug"`
				} `json:"metadata"`
			} `json:"error"`
			UserID string `json:"user_id"`
		}
		if err := json.Unmarshal([]byte(a.body), &e); err != nil || a.status != 403 || e.Error.Code != 403 ||
			!strings.Contains(e.Error.Message, `flagged for "harassment"`) || e.Error.Metadata.ModelSlug != "gpt-4o" || e.UserID == "" {
			t.Errorf("flagged content = %d %s; want OpenRouter's moderation 403", a.status, a.body)
		}
	}
	file := func(id string) string {
		return `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"` + id + `"}}]}]}`
	}
	if a := post(t, url, keyGood, file("file-mine1")); a.status != 200 {
		t.Errorf("own file = %d %s; want 200", a.status, a.body)
	}
	if a := post(t, url, keyGood, file("file-other7")); a.status != 403 ||
		!strings.Contains(a.body, `"status":"PERMISSION_DENIED"`) || !strings.Contains(a.body, "access the File file-other7") {
		t.Errorf("another project's file = %d %s; want 403 PERMISSION_DENIED naming it", a.status, a.body)
	}
	s2 := start(t, Config{ForeignFileAs: ForeignFileOpenAI, Keys: []Key{{Key: keyGood}}})
	if a := post(t, s2.URLs()[0], keyGood, file("file-other7")); a.status != 404 || a.msg != "No such File object: file-other7" {
		t.Errorf("another project's file, OpenAI = %d %s; want 404 No such File object", a.status, a.body)
	}

	transcribe := func(key, model string) answer {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if model != "" {
			mw.WriteField("model", model)
		}
		fw, _ := mw.CreateFormFile("file", "hello.wav")
		fw.Write([]byte("RIFF....WAVEfmt "))
		mw.Close()
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/audio/transcriptions", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode, body: string(b)}
		var e apiError
		if json.Unmarshal(b, &e) == nil && e.Error.Code != nil {
			a.code = *e.Error.Code
		}
		return a
	}
	tests := []struct {
		name, key, model string
		status           int
		code             string
	}{
		{"allowed", keyGood, "whisper-1", 200, ""},
		{"denied", keyNoGPT4o, "whisper-1", 404, "model_not_found"},
		{"denied to the project", keyProject, "whisper-1", 403, "model_not_found"},
		{"unknown model", keyGood, "whisper-9", 404, "model_not_found"},
		{"no model", keyGood, "", 400, ""},
	}
	for _, tc := range tests {
		t.Run("transcription "+tc.name, func(t *testing.T) {
			if a := transcribe(tc.key, tc.model); a.status != tc.status || a.code != tc.code {
				t.Errorf("transcription = %d %q %s; want %d %q", a.status, a.code, a.body, tc.status, tc.code)
			}
		})
	}
	st := s.Snapshot()
	for k, v := range map[string]int64{"flagged": 2, "foreign_file": 1, "ok": 2, "model_denied": 2, "unknown_model": 1, "bad_request": 1} {
		if st.Outcomes[k] != v {
			t.Errorf("outcome %s = %d; want %d (all: %v)", k, st.Outcomes[k], v, st.Outcomes)
		}
	}
}

// TestFaults checks each fault mode, SetStorm and the limited records.
func TestFaults(t *testing.T) {
	s := start(t, Config{
		StallMax: Duration(300 * time.Millisecond),
		Accounts: []Account{{Name: "a", Requests: 1, Window: Duration(time.Minute), Headers: true}},
		Keys:     []Key{{Key: keyGood}, {Key: keyLimited, Account: "a"}},
	})
	url := s.URLs()[0]
	do := func(body string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+keyGood)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	set := func(f Fault) {
		t.Helper()
		if err := s.SetFault(0, f); err != nil {
			t.Fatalf("SetFault(0, %q): %v", f, err)
		}
	}
	for _, f := range []Fault{FaultResetBefore, FaultResetAfter} {
		set(f)
		if _, _, err := do(chatJSON("gpt-4o", false)); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: err = %v; want a reset", f, err)
		}
	}
	set(FaultStallHeaders)
	began := time.Now()
	if _, _, err := do(chatJSON("gpt-4o", false)); err == nil || time.Since(began) < 250*time.Millisecond {
		t.Errorf("stall_headers: err = %v after %v; want an error after StallMax", err, time.Since(began))
	}
	set(FaultStallBody)
	if resp, _, err := do(chatJSON("gpt-4o", true)); resp == nil && err == nil || err == nil {
		t.Errorf("stall_body: err = %v; want a 200 whose body ends short", err)
	}
	set(Fault5xx)
	seen := map[int]bool{}
	for range 3 {
		resp, _, err := do(chatJSON("gpt-4o", false))
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.StatusCode] = true
	}
	if !seen[500] || !seen[502] || !seen[503] {
		t.Errorf("5xx answered %v; want 500, 502 and 503", seen)
	}
	set(FaultGateway401)
	if resp, _, err := do(chatJSON("gpt-4o", false)); err != nil || resp.StatusCode != 401 {
		t.Errorf("gateway_401 = %v %v; want 401", resp, err)
	}
	set(FaultDown)
	if _, _, err := do(chatJSON("gpt-4o", false)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("down: err = %v; want connection refused", err)
	}
	set(FaultNone)
	if resp, _, err := do(chatJSON("gpt-4o", false)); err != nil || resp.StatusCode != 200 {
		t.Errorf("after the faults = %v %v; want 200", resp, err)
	}

	s.SetStorm(true, 3)
	a := post(t, url, keyGood, chatJSON("gpt-4o", false))
	if a.status != 429 || a.header.Get("Retry-After") != "3" {
		t.Errorf("storm = %d Retry-After %q; want 429 with 3", a.status, a.header.Get("Retry-After"))
	}
	s.SetStorm(false, 0)
	post(t, url, keyLimited, chatJSON("gpt-4o", false)) // the headers show 0 left
	st, err := FetchStats(context.Background(), http.DefaultClient, s.ControlURL())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]int64{"reset": 2, "stalled": 2, "server_error": 3, "gateway_401": 1, "storm": 1} {
		if st.Outcomes[k] != v {
			t.Errorf("outcome %s = %d; want %d (all: %v)", k, st.Outcomes[k], v, st.Outcomes)
		}
	}
	if st.Keys[0].Limited != 1 || st.Keys[1].Limited != 1 || st.Keys[1].LastLimitedMS < 0 {
		t.Errorf("limited = %d, %d (last %d ms); want 1 each", st.Keys[0].Limited, st.Keys[1].Limited, st.Keys[1].LastLimitedMS)
	}
}
