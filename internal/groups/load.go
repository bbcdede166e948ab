package groups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/joho/godotenv"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/keymanager"
	"github.com/gpt-load/gpt-load/internal/secret"
)

// File names inside a group's folder.
const (
	KeysFileName = "keys.txt"
	EnvFileName  = "group.env"
)

// inherited are the variables a group.env may set; unset, a group has
// the top-level value.
var inherited = []string{
	"OPENAI_BASE_URL", "UPSTREAM_AUTH_STYLE", "MAX_RETRIES", "BLACKLIST_THRESHOLD",
	"KEY_COOLDOWN", "MODEL_COOLDOWN", "QUEUE_TIMEOUT", "KEY_RECHECK_INTERVAL", "START_INDEX",
}

// Group-only variables of group.env.
const (
	varModels   = "MODELS"
	varModelMap = "MODEL_MAP"
	varAuthKey  = "AUTH_KEY"
	varFallback = "FALLBACK"
)

// Error is one problem of one group. Load's error joins them, with
// problems that concern no single group (GROUPS_DIR itself, the top-level
// keys file); Broken lists the groups named.
type Error struct {
	Group string
	File  string // the file or folder at fault
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("group %q (%s): %v", e.Group, e.File, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// Broken returns the names of the groups that err, as returned by Load,
// has problems with, each once, in the order of the problems.
func Broken(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		var ge *Error
		switch e := err.(type) {
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		default:
			if errors.As(err, &ge) && !slices.Contains(out, ge.Group) {
				out = append(out, ge.Group)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// Load reads the groups: the top-level configuration top, when it has a
// keys file, as the group "default", and each subfolder of top.GroupsDir
// (docs/groups.md, "Folder layout"). getenv is the one top was loaded
// from; a group's configuration is config.Load over its group.env and
// then getenv.
//
// Every problem of every group is reported in the returned error, one per
// line; each group's as an *Error. The specs of the groups without a
// problem are returned even then, in name order, so that a reload can keep
// the previous version of the broken ones only (Broken names them).
// Problems of top itself are config.Load's to report, not repeated here.
func Load(top *config.Config, getenv func(string) string) ([]*Spec, error) {
	var specs []*Spec
	var problems []error
	if top.KeysFile != "" {
		s := &Spec{Name: DefaultName, Config: top, Dialect: DialectOf(top)}
		p, err := keymanager.ParseFile(top.KeysFile)
		switch {
		case err != nil:
			problems = append(problems, err)
		case top.StartIndex >= len(p.Keys):
			problems = append(problems, fmt.Errorf("START_INDEX=\"%d\": must be less than the key count (%d)", top.StartIndex, len(p.Keys)))
		default:
			s.Keys, s.Duplicates = p.Keys, p.Duplicates
			specs = append(specs, s)
		}
	}
	if top.GroupsDir == "" {
		return specs, errors.Join(problems...)
	}
	entries, err := os.ReadDir(top.GroupsDir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		problems = append(problems, &config.Error{Name: "GROUPS_DIR", Value: top.GroupsDir, Why: "cannot read the folder: " + err.Error()})
		return specs, errors.Join(problems...)
	}
	// Every folder that names a group, broken or not, so that FALLBACK
	// names one that exists but is broken are not reported twice.
	exists := map[string]Dialect{}
	if top.KeysFile != "" {
		exists[DefaultName] = DialectOf(top)
	}
	var loaded []*loadedGroup
	for _, e := range entries {
		name := e.Name()
		dir := filepath.Join(top.GroupsDir, name)
		if strings.HasPrefix(name, ".") {
			continue // hidden, e.g. Kubernetes' ..data
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue // a README, or a dangling link: not a group
		}
		switch {
		case !ValidName(name):
			problems = append(problems, &Error{Group: name, File: dir,
				Err: fmt.Errorf("not a group name: letters, digits, - and _, at most %d (a folder starting with . is ignored)", maxNameLen)})
			continue
		case name == DefaultName && top.KeysFile != "":
			problems = append(problems, &Error{Group: name, File: dir,
				Err: fmt.Errorf("the top-level configuration is the group %q (KEYS_FILE=%q); unset KEYS_FILE or rename the folder", DefaultName, top.KeysFile)})
			continue
		}
		g := loadGroup(dir, name, getenv)
		exists[name] = g.spec.Dialect
		loaded = append(loaded, g)
	}
	for _, g := range loaded {
		g.checkFallback(exists)
		if len(g.problems) > 0 {
			problems = append(problems, g.problems...)
			continue
		}
		specs = append(specs, g.spec)
	}
	if len(exists) == 0 && len(problems) == 0 {
		problems = append(problems, &config.Error{Name: "GROUPS_DIR", Value: top.GroupsDir,
			Why: "holds no group and KEYS_FILE is unset: there is nothing to serve"})
	}
	slices.SortFunc(specs, func(a, b *Spec) int { return strings.Compare(a.Name, b.Name) })
	return specs, errors.Join(problems...)
}

// loadedGroup is a group being loaded, with its problems so far.
type loadedGroup struct {
	spec        *Spec
	envFile     string
	rawFallback string // FALLBACK as written
	problems    []error
}

func (g *loadedGroup) fail(file string, err error) {
	g.problems = append(g.problems, &Error{Group: g.spec.Name, File: file, Err: err})
}

// failVar reports a problem of a variable of group.env.
func (g *loadedGroup) failVar(name, value, why string) {
	g.fail(g.envFile, &config.Error{Name: name, Value: value, Why: why})
}

// loadGroup reads one group's folder. Only FALLBACK's targets are left to
// check, once every group is known.
func loadGroup(dir, name string, getenv func(string) string) *loadedGroup {
	g := &loadedGroup{spec: &Spec{Name: name, Dir: dir}, envFile: filepath.Join(dir, EnvFileName)}
	s := g.spec
	vals, err := godotenv.Read(g.envFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		vals = nil // optional: every setting from the top level
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		g.fail(g.envFile, fmt.Errorf("cannot read it: %w", err))
	}
	for _, v := range sortedKeys(vals) {
		if !slices.Contains(inherited, v) && v != varModels && v != varModelMap && v != varAuthKey && v != varFallback {
			// No value shown: it may be a secret that belongs elsewhere.
			g.fail(g.envFile, fmt.Errorf("%s: %s", v, notGroupSetting(v)))
		}
	}

	keysFile := filepath.Join(dir, KeysFileName)
	cfg, err := config.Load(func(v string) string {
		switch {
		case v == "KEYS_FILE":
			return keysFile
		case slices.Contains(inherited, v) && strings.TrimSpace(vals[v]) != "":
			return vals[v]
		}
		return getenv(v)
	})
	s.Config = cfg
	for _, err := range unwrapJoined(err) {
		// The top level's own problems are config.Load's to report once,
		// not once per group: keep those of what group.env set.
		var ce *config.Error
		if !errors.As(err, &ce) || slices.Contains(inherited, ce.Name) && strings.TrimSpace(vals[ce.Name]) != "" {
			g.fail(g.envFile, err)
		}
	}
	s.Dialect = DialectOf(cfg)

	p, err := keymanager.ParseFile(keysFile)
	switch {
	case err != nil:
		g.fail(keysFile, keysProblem(err))
	case cfg.StartIndex >= len(p.Keys):
		if strings.TrimSpace(vals["START_INDEX"]) != "" {
			g.failVar("START_INDEX", vals["START_INDEX"], fmt.Sprintf("must be less than the group's key count (%d)", len(p.Keys)))
		} else {
			g.fail(keysFile, fmt.Errorf("holds %d keys, not more than the top-level START_INDEX=%d; set START_INDEX in %s", len(p.Keys), cfg.StartIndex, EnvFileName))
		}
	default:
		s.Keys, s.Duplicates = p.Keys, p.Duplicates
	}

	g.models(vals[varModels])
	g.modelMap(vals[varModelMap])
	g.tokens(vals[varAuthKey], cfg.AuthKey)
	g.fallback(vals[varFallback])
	return g
}

// notGroupSetting says why a variable may not be in group.env.
func notGroupSetting(name string) string {
	allowed := strings.Join(inherited, ", ") + ", " + strings.Join([]string{varModels, varModelMap, varAuthKey, varFallback}, ", ")
	for _, v := range config.Variables {
		if v.Name == name {
			return "a daemon-wide setting, not a group's; a group.env may set only " + allowed
		}
	}
	return "not a gpt-load setting; a group.env may set only " + allowed
}

// keysProblem turns keymanager.ParseFile's error, which names the path
// that the *Error names already, into what is wrong with the file.
func keysProblem(err error) error {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("missing: every group needs a keys file, one key per line")
	case errors.Is(err, keymanager.ErrNoKeys):
		return errors.New("holds no key")
	case errors.As(err, &pe):
		return fmt.Errorf("cannot read it: %w", pe.Err)
	}
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

// models parses MODELS: names, or globs where only * is special.
func (g *loadedGroup) models(raw string) {
	for _, m := range config.SplitList(raw) {
		switch {
		case strings.ContainsAny(m, "?[]"):
			g.failVar(varModels, raw, fmt.Sprintf("%q: only * is a wildcard (it matches any run of characters)", m))
		case hasSpaceOrControl(m):
			g.failVar(varModels, raw, fmt.Sprintf("%q holds a space or a control character", m))
		case slices.Contains(g.spec.Models, m):
			g.failVar(varModels, raw, fmt.Sprintf("%q is listed twice", m))
		default:
			g.spec.Models = append(g.spec.Models, m)
		}
	}
}

// modelMap parses MODEL_MAP: alias=upstream-model, comma-separated.
func (g *loadedGroup) modelMap(raw string) {
	for _, item := range config.SplitList(raw) {
		alias, model, ok := strings.Cut(item, "=")
		alias, model = strings.TrimSpace(alias), strings.TrimSpace(model)
		switch {
		case !ok || alias == "" || model == "":
			g.failVar(varModelMap, raw, fmt.Sprintf("%q is not alias=upstream-model", item))
		case strings.Contains(alias, "*") || strings.Contains(model, "*"):
			g.failVar(varModelMap, raw, fmt.Sprintf("%q: an alias and its model are names, not globs", item))
		case hasSpaceOrControl(alias) || hasSpaceOrControl(model):
			g.failVar(varModelMap, raw, fmt.Sprintf("%q holds a space or a control character", item))
		case g.spec.ModelMap[alias] != "":
			g.failVar(varModelMap, raw, fmt.Sprintf("alias %q is mapped twice", alias))
		default:
			if g.spec.ModelMap == nil {
				g.spec.ModelMap = map[string]string{}
			}
			g.spec.ModelMap[alias] = model
		}
	}
}

// tokens parses the group's AUTH_KEY. Errors show tokens masked only.
func (g *loadedGroup) tokens(raw string, top secret.Key) {
	for _, t := range config.SplitList(raw) {
		switch {
		case hasSpaceOrControl(t):
			g.failVar(varAuthKey, secret.Mask(t), "a token holds a space or a control character, which no client can send in a header")
		case !top.Empty() && t == top.Reveal():
			g.failVar(varAuthKey, secret.Mask(t), "is the top-level AUTH_KEY, which may use every group already; a group's tokens are its own")
		case slices.ContainsFunc(g.spec.Tokens, func(k secret.Key) bool { return k.Reveal() == t }):
			// Listed twice: the same token, nothing to report.
		default:
			g.spec.Tokens = append(g.spec.Tokens, secret.NewKey(t))
		}
	}
}

// fallback parses FALLBACK; checkFallback checks the names.
func (g *loadedGroup) fallback(raw string) {
	g.rawFallback = raw
	for _, f := range config.SplitList(raw) {
		switch {
		case f == g.spec.Name:
			g.failVar(varFallback, raw, fmt.Sprintf("group %q falls back to itself", f))
		case slices.Contains(g.spec.Fallback, f):
			g.failVar(varFallback, raw, fmt.Sprintf("%q is listed twice", f))
		default:
			g.spec.Fallback = append(g.spec.Fallback, f)
		}
	}
}

// checkFallback checks FALLBACK's names against the groups that exist
// (dialect of each), dropping the bad ones.
func (g *loadedGroup) checkFallback(exists map[string]Dialect) {
	s := g.spec
	raw := g.rawFallback
	if len(s.Fallback) > 0 && s.Dialect == Mixed {
		g.failVar(varFallback, raw, fmt.Sprintf("group %q's upstreams speak several API dialects; set UPSTREAM_AUTH_STYLE or keep one provider per group", s.Name))
		return
	}
	for _, f := range s.Fallback {
		d, ok := exists[f]
		switch {
		case !ok:
			g.failVar(varFallback, raw, fmt.Sprintf("there is no group %q", f))
		case d != s.Dialect:
			g.failVar(varFallback, raw, fmt.Sprintf("group %q speaks another API dialect (%s) than %s", f, d, s.Dialect))
		}
	}
}

func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// unwrapJoined returns the errors errors.Join joined, or err alone.
func unwrapJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
