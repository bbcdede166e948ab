package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gpt-load/gpt-load/internal/groups"
	"github.com/gpt-load/gpt-load/internal/upstream"
)

// modelsTTL is how long a group's upstream model list is kept.
const modelsTTL = 5 * time.Minute

// modelCache keeps each group's upstream model list, as ids.
type modelCache struct {
	mu   sync.Mutex
	byGr map[*group]cachedModels
}

type cachedModels struct {
	ids []string
	at  time.Time
}

// modelList is OpenAI's list shape.
type modelList struct {
	Object string       `json:"object"`
	Data   []modelEntry `json:"data"`
}

type modelEntry struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// listModels answers GET /v1/models without a group prefix (docs/groups.md,
// "GET /v1/models"): the union of the models the client may reach by
// model, in OpenAI's list shape: each such group's upstream list (in its
// own dialect, converted) filtered by its MODELS, plus its MODEL_MAP
// aliases; the default group's whole list when it has no MODELS.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request, gs *groupSet, c groups.Client) {
	out := modelList{Object: "list", Data: []modelEntry{}}
	seen := map[string]bool{}
	add := func(id, owner string) {
		if id != "" && !seen[id] {
			seen[id] = true
			out.Data = append(out.Data, modelEntry{ID: id, Object: "model", OwnedBy: owner})
		}
	}
	for _, g := range gs.list {
		spec := g.spec
		isDefault := spec.Name == groups.DefaultName
		if (len(spec.Models) == 0 && len(spec.ModelMap) == 0 && !isDefault) || !gs.router.Allowed(spec, c) {
			continue
		}
		for alias := range spec.ModelMap {
			add(alias, spec.Name)
		}
		if len(spec.Models) == 0 && !isDefault {
			continue
		}
		for _, id := range s.models.get(r.Context(), s, g) {
			if len(spec.Models) == 0 || spec.Serves(id) {
				add(id, spec.Name)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// get returns g's upstream model ids, from the cache while fresh; on a
// failed fetch, the last list there was (or none).
func (mc *modelCache) get(ctx context.Context, s *Server, g *group) []string {
	mc.mu.Lock()
	c, ok := mc.byGr[g]
	mc.mu.Unlock()
	if ok && time.Since(c.at) < modelsTTL {
		return c.ids
	}
	body, style, err := g.proxy.ListModels(ctx)
	if err != nil {
		s.logFor(g).WithError(err).Warn("GET /v1/models: the group's model list could not be fetched")
		return c.ids
	}
	ids := modelIDs(body, style)
	mc.mu.Lock()
	if mc.byGr == nil {
		mc.byGr = map[*group]cachedModels{}
	}
	mc.byGr[g] = cachedModels{ids: ids, at: time.Now()}
	mc.mu.Unlock()
	return ids
}

// modelIDs reads a model list in a provider's dialect: OpenAI's and
// Anthropic's {"data":[{"id":…}]}, Gemini's {"models":[{"name":"models/…"}]}.
func modelIDs(body []byte, style upstream.AuthStyle) []string {
	var v struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var ids []string
	for _, d := range v.Data {
		ids = append(ids, d.ID)
	}
	if style == upstream.Gemini || len(v.Models) > 0 {
		for _, m := range v.Models {
			ids = append(ids, strings.TrimPrefix(m.Name, "models/"))
		}
	}
	return ids
}
