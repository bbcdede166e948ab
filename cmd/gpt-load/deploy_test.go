package main

// Tests that keep the deployment files (Dockerfile, docker-compose.yml,
// .dockerignore) in agreement with the code. They read the
// files as text: no Docker is needed.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpt-load/gpt-load/internal/config"
	"github.com/gpt-load/gpt-load/internal/server"
)

const (
	dockerfilePath   = "../../Dockerfile"
	composePath      = "../../docker-compose.yml"
	dockerignorePath = "../../.dockerignore"
)

// configDefault returns the default of a variable in config.Variables.
func configDefault(t *testing.T, name string) string {
	t.Helper()
	for _, v := range config.Variables {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("config.Variables has no %s", name)
	return ""
}

func isConfigVariable(name string) bool {
	return slices.ContainsFunc(config.Variables, func(v config.Variable) bool { return v.Name == name })
}

func readDeployFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading %s: %v", filepath.Base(p), err)
	}
	return string(b)
}

// ---------------------------------------------------------------- Dockerfile

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	cmd  string // upper case: FROM, RUN, ENV, …
	args string
	line int
}

// dockerStage is one FROM and the instructions under it.
type dockerStage struct {
	from   string // the FROM arguments
	instrs []dockerInstr
}

func (s dockerStage) all(cmd string) []dockerInstr {
	var out []dockerInstr
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (s dockerStage) last(t *testing.T, cmd string) dockerInstr {
	t.Helper()
	all := s.all(cmd)
	if len(all) == 0 {
		t.Fatalf("Dockerfile stage %q has no %s", s.from, cmd)
	}
	return all[len(all)-1]
}

// parseDockerfile splits a Dockerfile into stages. Comment lines are
// dropped and lines ending in a backslash are joined, as Docker does.
func parseDockerfile(t *testing.T, text string) []dockerStage {
	t.Helper()
	var stages []dockerStage
	var cur strings.Builder
	start := 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			stages = append(stages, dockerStage{from: in.args})
			return
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile line %d: %s before the first FROM", in.line, in.cmd)
			}
			return
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() > 0) {
			continue // comments and blank lines inside a continuation
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages; want a build stage and a runtime stage", len(stages))
	}
	return stages
}

// dockerEnv parses the ENV instructions of a stage, in both the key=value
// form and the legacy "ENV key value" form.
func dockerEnv(t *testing.T, s dockerStage) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, in := range s.all("ENV") {
		fields := strings.Fields(in.args)
		if len(fields) > 0 && !strings.Contains(fields[0], "=") {
			env[fields[0]] = strings.TrimSpace(strings.TrimPrefix(in.args, fields[0]))
			continue
		}
		for _, f := range fields {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				t.Fatalf("Dockerfile line %d: cannot parse ENV item %q", in.line, f)
			}
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env
}

// healthURL matches the probe URL: host, ${PORT:-default} (with $$ in
// Compose), and the path.
var healthURL = regexp.MustCompile(`http://(127\.0\.0\.1|localhost):\$?\$\{PORT:-(\d+)\}(/[^\s"'|;]*)`)

func TestDockerfileMatchesCode(t *testing.T) {
	stages := parseDockerfile(t, readDeployFile(t, dockerfilePath))
	build, runtime := stages[0], stages[len(stages)-1]
	defPort := configDefault(t, "PORT")

	t.Run("build stage", func(t *testing.T) {
		if !strings.Contains(build.from, "--platform=$BUILDPLATFORM") && !strings.Contains(build.from, "--platform=${BUILDPLATFORM}") {
			t.Errorf("build stage FROM %q: want --platform=$BUILDPLATFORM so buildx cross-compiles without emulation", build.from)
		}
		if !strings.Contains(build.from, "golang:") {
			t.Errorf("build stage FROM %q is not a golang image", build.from)
		}
		args := map[string]bool{}
		for _, in := range build.all("ARG") {
			name, _, _ := strings.Cut(in.args, "=")
			args[name] = true
		}
		for _, a := range []string{"VERSION", "TARGETOS", "TARGETARCH"} {
			if !args[a] {
				t.Errorf("build stage declares no ARG %s", a)
			}
		}
		var goBuild string
		download := -1
		for i, in := range build.instrs {
			if in.cmd == "RUN" && strings.Contains(in.args, "go mod download") {
				download = i
			}
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				goBuild = in.args
				if download < 0 {
					t.Errorf("go build (line %d) comes before a go mod download layer", in.line)
				}
			}
		}
		if goBuild == "" {
			t.Fatal("build stage has no RUN … go build")
		}
		for _, w := range []string{"CGO_ENABLED=0", "./cmd/gpt-load", "-trimpath", "GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "-X main.version=${VERSION}"} {
			if !strings.Contains(goBuild, w) {
				t.Errorf("go build command lacks %q: %s", w, goBuild)
			}
		}
	})

	t.Run("EXPOSE is the default PORT", func(t *testing.T) {
		if got := runtime.last(t, "EXPOSE").args; got != defPort && got != defPort+"/tcp" {
			t.Errorf("EXPOSE %s; config.Variables says PORT defaults to %s", got, defPort)
		}
	})

	t.Run("HEALTHCHECK", func(t *testing.T) {
		hc := runtime.last(t, "HEALTHCHECK").args
		for _, opt := range []string{"--interval=", "--timeout=", "--start-period=", "--retries="} {
			if !strings.Contains(hc, opt) {
				t.Errorf("HEALTHCHECK lacks %s…: %s", opt, hc)
			}
		}
		_, cmd, ok := strings.Cut(hc, "CMD ")
		if !ok || strings.HasPrefix(strings.TrimSpace(cmd), "[") {
			t.Fatalf("HEALTHCHECK %q: want the shell form of CMD, so that ${PORT} is expanded at run time", hc)
		}
		m := healthURL.FindStringSubmatch(cmd)
		if m == nil {
			t.Fatalf("HEALTHCHECK %q does not probe http://127.0.0.1:${PORT:-…}/…", hc)
		}
		if m[2] != defPort {
			t.Errorf("HEALTHCHECK falls back to port %s; PORT defaults to %s", m[2], defPort)
		}
		if m[3] != server.PathHealth {
			t.Errorf("HEALTHCHECK probes %s; the health endpoint is %s", m[3], server.PathHealth)
		}
	})

	t.Run("ENV", func(t *testing.T) {
		for _, st := range stages[1:] {
			for name := range dockerEnv(t, st) {
				if !isConfigVariable(name) {
					t.Errorf("Dockerfile sets ENV %s, which gpt-load does not read (not in config.Variables)", name)
				}
			}
		}
		env := dockerEnv(t, runtime)
		if env["KEYS_FILE"] != "/app/keys.txt" {
			t.Errorf("ENV KEYS_FILE=%q; want /app/keys.txt", env["KEYS_FILE"])
		}
		if env["HOST"] != "0.0.0.0" {
			t.Errorf("ENV HOST=%q; want 0.0.0.0 so that published ports reach the proxy", env["HOST"])
		}
	})

	t.Run("runtime user, workdir, entrypoint", func(t *testing.T) {
		user := runtime.last(t, "USER").args
		name, _, _ := strings.Cut(user, ":")
		if name == "" || name == "root" || name == "0" {
			t.Errorf("runtime stage runs as USER %q; want a non-root user", user)
		}
		if wd := runtime.last(t, "WORKDIR").args; wd != "/app" {
			t.Errorf("WORKDIR %s; want /app", wd)
		}
		// The default LOG_FILE_PATH is relative to the working directory;
		// its directory must exist in the image and belong to the user.
		logDir := path.Join("/app", path.Dir(configDefault(t, "LOG_FILE_PATH")))
		var made, owned bool
		for _, in := range runtime.all("RUN") {
			made = made || strings.Contains(in.args, "mkdir -p "+logDir)
			owned = owned || regexp.MustCompile(`chown (-R )?`+regexp.QuoteMeta(name)+`(:\S+)? `+regexp.QuoteMeta(logDir)+`\b`).MatchString(in.args)
		}
		if !made || !owned {
			t.Errorf("runtime stage must create %s (created: %v) owned by %s (chowned: %v)", logDir, made, name, owned)
		}
		ep := runtime.last(t, "ENTRYPOINT").args
		var copied bool
		for _, in := range runtime.all("COPY") {
			f := strings.Fields(in.args)
			if strings.Contains(ep, `"`+f[len(f)-1]+`"`) {
				copied = true
			}
		}
		if !strings.HasPrefix(ep, "[") || !copied {
			t.Errorf("ENTRYPOINT %s: want the exec form naming the binary the stage COPYs in", ep)
		}
	})
}

// TestDockerfileVersionLdflags builds the binary with the Dockerfile's own
// -ldflags and checks that -version reports the version passed in, so a
// renamed version variable cannot go unnoticed (-X ignores unknown names).
func TestDockerfileVersionLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	stages := parseDockerfile(t, readDeployFile(t, dockerfilePath))
	var ldflags string
	for _, in := range stages[0].all("RUN") {
		if m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(in.args); m != nil {
			ldflags = m[1]
		}
	}
	if ldflags == "" {
		t.Fatal(`no -ldflags "…" in the build stage`)
	}
	// Only the link step differs from TestMain's build, so this is quick.
	const want = "v0.0.0-docker-test"
	out := filepath.Join(t.TempDir(), "gpt-load")
	cmd := exec.Command("go", "build", "-ldflags", strings.ReplaceAll(ldflags, "${VERSION}", want), "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build with the Dockerfile's ldflags: %v\n%s", err, b)
	}
	b, err := exec.Command(out, "-version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "gpt-load "+want {
		t.Errorf("-version printed %q (err %v); want %q", b, err, "gpt-load "+want)
	}
}

// ------------------------------------------------------------ compose file

// yamlLine is one significant line of a YAML file.
type yamlLine struct {
	indent int
	text   string // without the indentation
}

// yamlLines drops blank lines and comment lines. It is enough for the
// block-style YAML of docker-compose.yml; flow mappings are not parsed.
func yamlLines(text string) []yamlLine {
	var out []yamlLine
	for l := range strings.SplitSeq(text, "\n") {
		trimmed := strings.TrimSpace(l)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		out = append(out, yamlLine{len(l) - len(strings.TrimLeft(l, " ")), strings.TrimRight(trimmed, " ")})
	}
	return out
}

// yamlGet follows a path of mapping keys and returns the key's inline value
// and the lines of its block.
func yamlGet(lines []yamlLine, keys ...string) (string, []yamlLine, bool) {
	var value string
	for _, key := range keys {
		if len(lines) == 0 {
			return "", nil, false
		}
		top := lines[0].indent
		found := false
		for i, l := range lines {
			if l.indent != top {
				continue
			}
			k, v, ok := strings.Cut(l.text, ":")
			if !ok || strings.Trim(k, `"'`) != key {
				continue
			}
			value = strings.TrimSpace(v)
			end := i + 1
			for end < len(lines) && lines[end].indent > top {
				end++
			}
			lines, found = lines[i+1:end], true
			break
		}
		if !found {
			return "", nil, false
		}
	}
	return value, lines, true
}

// yamlItems returns a block's list items: the text after "- " and, for
// items that are mappings, their key: value pairs.
func yamlItems(lines []yamlLine) (items []string, maps []map[string]string) {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l.text, "- "); ok {
			items = append(items, unquoteYAML(rest))
			maps = append(maps, map[string]string{})
			l.text = rest
		} else if len(maps) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(l.text, ": "); ok {
			maps[len(maps)-1][k] = unquoteYAML(v)
		}
	}
	return items, maps
}

func unquoteYAML(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// composeEnvironment parses a service's environment block, in the mapping
// form (NAME: value) or the list form (- NAME=value).
func composeEnvironment(t *testing.T, lines []yamlLine) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, l := range lines {
		if item, ok := strings.CutPrefix(l.text, "- "); ok {
			k, v, _ := strings.Cut(unquoteYAML(item), "=")
			env[k] = v
			continue
		}
		k, v, ok := strings.Cut(l.text, ":")
		if !ok {
			t.Fatalf("cannot parse environment line %q", l.text)
		}
		env[strings.TrimSpace(k)] = unquoteYAML(v)
	}
	return env
}

func TestComposeMatchesCode(t *testing.T) {
	lines := yamlLines(readDeployFile(t, composePath))
	_, svc, ok := yamlGet(lines, "services", "gpt-load")
	if !ok {
		t.Fatal("docker-compose.yml has no service gpt-load")
	}
	dockerRuntime := parseDockerfile(t, readDeployFile(t, dockerfilePath))
	runtime := dockerRuntime[len(dockerRuntime)-1]
	imageEnv := dockerEnv(t, runtime)
	exposed := runtime.last(t, "EXPOSE").args

	_, envLines, ok := yamlGet(svc, "environment")
	if !ok {
		t.Fatal("service gpt-load has no environment")
	}
	env := composeEnvironment(t, envLines)
	for name := range env {
		if !isConfigVariable(name) {
			t.Errorf("compose sets %s, which gpt-load does not read (not in config.Variables)", name)
		}
	}

	t.Run("ports", func(t *testing.T) {
		if env["PORT"] != exposed {
			t.Errorf("compose environment PORT=%q; want the image's EXPOSE %s so the container port is fixed", env["PORT"], exposed)
		}
		_, portLines, _ := yamlGet(svc, "ports")
		ports, _ := yamlItems(portLines)
		if len(ports) != 1 {
			t.Fatalf("ports %q: want one mapping", ports)
		}
		i := strings.LastIndex(ports[0], ":")
		if i < 0 || ports[0][i+1:] != exposed {
			t.Errorf("port mapping %q does not publish container port %s", ports[0], exposed)
		}
		if host := ports[0][:i]; host != "${PORT:-"+configDefault(t, "PORT")+"}" {
			t.Errorf("host side %q: want ${PORT:-%s}", host, configDefault(t, "PORT"))
		}
	})

	t.Run("volumes", func(t *testing.T) {
		_, volLines, ok := yamlGet(svc, "volumes")
		if !ok {
			t.Fatal("service gpt-load has no volumes")
		}
		items, maps := yamlItems(volLines)
		targets := map[string]bool{}
		for i, item := range items {
			if tg := maps[i]["target"]; tg != "" {
				targets[tg] = true
				continue
			}
			parts := strings.Split(item, ":")
			if len(parts) >= 2 {
				targets[parts[1]] = true
			}
		}
		keysFile := imageEnv["KEYS_FILE"]
		if v, set := env["KEYS_FILE"]; set && v != keysFile {
			t.Errorf("compose KEYS_FILE=%q differs from the image's %q", v, keysFile)
		}
		if !targets[keysFile] {
			t.Errorf("no volume is mounted at KEYS_FILE %s (targets: %v)", keysFile, targets)
		}
		logDir := path.Join(runtime.last(t, "WORKDIR").args, path.Dir(configDefault(t, "LOG_FILE_PATH")))
		if !targets[logDir] {
			t.Errorf("no volume is mounted at the default log directory %s (targets: %v)", logDir, targets)
		}
		// The log directory is a named volume, declared at the top: a bind
		// mount of a host path makes Docker create a root-owned folder in
		// the checkout, even with file logging off, that uid 10001 cannot
		// write.
		for i, item := range items {
			src, tg := maps[i]["source"], maps[i]["target"]
			if tg == "" {
				parts := strings.Split(item, ":")
				if len(parts) < 2 {
					continue
				}
				src, tg = parts[0], parts[1]
			}
			if tg != logDir {
				continue
			}
			if src == "" || strings.ContainsAny(src, "/.~$") || maps[i]["type"] == "bind" {
				t.Errorf("the log directory %s is mounted from %q, a host path: use a named volume", logDir, src)
			} else if _, _, ok := yamlGet(lines, "volumes", src); !ok {
				t.Errorf("the named volume %q is not declared under the top-level volumes:", src)
			}
		}
	})

	t.Run("builds the checkout", func(t *testing.T) {
		// With image: beside build:, a plain `up` may pull a published image
		// of that name instead of building the checkout.
		if img, _, ok := yamlGet(svc, "image"); ok {
			t.Errorf("service gpt-load names image %s: `docker compose up` could pull it instead of building the checkout", img)
		}
		if _, _, ok := yamlGet(svc, "build"); !ok {
			t.Error("service gpt-load has no build:")
		}
		if v, _, _ := yamlGet(svc, "pull_policy"); unquoteYAML(v) != "build" {
			t.Errorf("pull_policy %q; want build, so that up always builds the checkout", v)
		}
	})

	t.Run("Compose version named", func(t *testing.T) {
		// env_file's required: needs Compose 2.24; the file must say so.
		if !strings.Contains(readDeployFile(t, composePath), "Compose 2.24 or later") ||
			!strings.Contains(readDeployFile(t, "../../docs/operations.md"), "2.24 or later") {
			t.Error("docker-compose.yml and docs/operations.md must say that Compose 2.24 or later is needed (env_file's required:)")
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		test, hcLines, ok := yamlGet(svc, "healthcheck", "test")
		if !ok {
			t.Fatal("service gpt-load has no healthcheck test")
		}
		for _, l := range hcLines {
			test += " " + l.text
		}
		m := healthURL.FindStringSubmatch(test)
		if m == nil {
			t.Fatalf("healthcheck %s does not probe http://127.0.0.1:$${PORT:-…}/…", test)
		}
		if !strings.Contains(test, "$${PORT") {
			t.Errorf("healthcheck %s: write $${PORT…} so that Compose leaves it to the container's shell", test)
		}
		if m[3] != server.PathHealth {
			t.Errorf("healthcheck probes %s; the health endpoint is %s", m[3], server.PathHealth)
		}
		if m[2] != exposed {
			t.Errorf("healthcheck falls back to port %s; the container listens on %s", m[2], exposed)
		}
	})

	t.Run("stop_grace_period", func(t *testing.T) {
		v, _, ok := yamlGet(svc, "stop_grace_period")
		if !ok {
			t.Fatal("no stop_grace_period")
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("stop_grace_period %q: %v", v, err)
		}
		secs, _ := strconv.Atoi(configDefault(t, "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT"))
		if drain := time.Duration(secs) * time.Second; d <= drain {
			t.Errorf("stop_grace_period %v is not above SERVER_GRACEFUL_SHUTDOWN_TIMEOUT's default %v", d, drain)
		}
	})

	t.Run("docker run stop timeout", func(t *testing.T) {
		// Every docker run line in the docs and the Dockerfile gives docker
		// stop as long as compose's stop_grace_period, so that Docker's
		// default 10 s does not cut the drain.
		v, _, _ := yamlGet(svc, "stop_grace_period")
		d, _ := time.ParseDuration(v)
		want := fmt.Sprintf("--stop-timeout %d", int(d.Seconds()))
		runLine := regexp.MustCompile(`docker run (?:[^\n]*\\\n)*[^\n]*`)
		files, _ := filepath.Glob(filepath.Join(docsDir, "*.md"))
		for _, f := range append(files, readmePath, dockerfilePath) {
			for _, m := range runLine.FindAllString(readDeployFile(t, f), -1) {
				if !strings.Contains(m, want) {
					t.Errorf("%s: %q has no %s (stop_grace_period %s)", filepath.Base(f), m, want, v)
				}
			}
		}
	})

	t.Run("env_file optional", func(t *testing.T) {
		_, efLines, ok := yamlGet(svc, "env_file")
		if !ok {
			t.Fatal("no env_file")
		}
		_, maps := yamlItems(efLines)
		if len(maps) != 1 || maps[0]["path"] != ".env" || maps[0]["required"] != "false" {
			t.Errorf("env_file %v: want path .env with required: false", maps)
		}
	})
}

// yamlSeq returns a sequence given inline in the flow form ([a, "b"]) or
// as a block of "- item" lines. It does not handle commas inside quotes.
func yamlSeq(value string, lines []yamlLine) []string {
	if inner, ok := strings.CutPrefix(value, "["); ok {
		inner = strings.TrimSuffix(strings.TrimSpace(inner), "]")
		var out []string
		for item := range strings.SplitSeq(inner, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, unquoteYAML(item))
			}
		}
		return out
	}
	if value != "" {
		return []string{unquoteYAML(value)}
	}
	items, _ := yamlItems(lines)
	return items
}

// TestComposeRedisService checks the optional Redis of "Scaling out": a
// redis service in the "redis" profile, without persistence, that gpt-load
// does not need in order to start.
func TestComposeRedisService(t *testing.T) {
	text := readDeployFile(t, composePath)
	lines := yamlLines(text)
	_, svc, ok := yamlGet(lines, "services", "redis")
	if !ok {
		t.Fatal("docker-compose.yml has no service redis")
	}

	t.Run("image", func(t *testing.T) {
		img, _, _ := yamlGet(svc, "image")
		if name, _, _ := strings.Cut(unquoteYAML(img), ":"); name != "redis" {
			t.Errorf("redis image %q: want the official redis image (redis:7-alpine)", img)
		}
	})

	t.Run("profile", func(t *testing.T) {
		v, pl, ok := yamlGet(svc, "profiles")
		if !ok {
			t.Fatal("service redis has no profiles: a plain `docker compose up` would start it")
		}
		if got := yamlSeq(v, pl); !slices.Equal(got, []string{"redis"}) {
			t.Errorf("redis profiles %q; want [redis]", got)
		}
		// gpt-load itself must start without any profile.
		_, gl, _ := yamlGet(lines, "services", "gpt-load")
		if _, _, has := yamlGet(gl, "profiles"); has {
			t.Error("service gpt-load has profiles; `docker compose up` must start it without one")
		}
	})

	t.Run("no hard dependency from gpt-load", func(t *testing.T) {
		_, gl, _ := yamlGet(lines, "services", "gpt-load")
		v, dl, has := yamlGet(gl, "depends_on")
		if !has {
			return
		}
		if slices.Contains(yamlSeq(v, dl), "redis") {
			t.Fatal("gpt-load depends_on redis (list form): it would not start without the redis profile")
		}
		// Mapping form: allowed only with required: false.
		if _, rl, dep := yamlGet(dl, "redis"); dep {
			if req, _, _ := yamlGet(rl, "required"); unquoteYAML(req) != "false" {
				t.Errorf("gpt-load depends_on redis without required: false: it would not start without the redis profile")
			}
		}
	})

	t.Run("no persistence", func(t *testing.T) {
		v, cl, ok := yamlGet(svc, "command")
		if !ok {
			t.Fatal("service redis has no command")
		}
		var args []string
		if strings.HasPrefix(v, "[") || v == "" {
			args = yamlSeq(v, cl)
		} else {
			for _, f := range strings.Fields(v) {
				args = append(args, unquoteYAML(f))
			}
		}
		if len(args) == 0 || args[0] != "redis-server" {
			t.Fatalf("redis command %q does not run redis-server", args)
		}
		flag := func(name string) (string, bool) {
			i := slices.Index(args, name)
			if i < 0 || i+1 >= len(args) {
				return "", false
			}
			return args[i+1], true
		}
		if v, ok := flag("--save"); !ok || v != "" {
			t.Errorf(`redis command %q: want --save "" (no RDB snapshots)`, args)
		}
		if v, ok := flag("--appendonly"); !ok || v != "no" {
			t.Errorf("redis command %q: want --appendonly no", args)
		}
	})

	t.Run("healthcheck and restart", func(t *testing.T) {
		test, hl, ok := yamlGet(svc, "healthcheck", "test")
		if !ok {
			t.Fatal("service redis has no healthcheck test")
		}
		got := strings.Join(yamlSeq(test, hl), " ")
		if !strings.Contains(got, "redis-cli ping") {
			t.Errorf("redis healthcheck %q does not run redis-cli ping", got)
		}
		if r, _, _ := yamlGet(svc, "restart"); r != "unless-stopped" {
			t.Errorf("redis restart %q; want unless-stopped", r)
		}
	})

	t.Run("documented", func(t *testing.T) {
		for _, want := range []string{"REDIS_URL=redis://redis:6379/0", "--profile redis"} {
			if !strings.Contains(text, want) {
				t.Errorf("docker-compose.yml does not mention %s in its comments", want)
			}
		}
	})
}

// ------------------------------------------------------------ .dockerignore

func TestDockerignoreKeepsSecretsOut(t *testing.T) {
	patterns := map[string]bool{}
	for l := range strings.SplitSeq(readDeployFile(t, dockerignorePath), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		patterns[strings.TrimPrefix(strings.TrimPrefix(l, "**/"), "/")] = true
	}
	for _, p := range []string{"keys.txt", ".env", ".git", "logs", "bin", "dist"} {
		if !patterns[p] {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
	// What the build needs must stay in the context.
	for _, p := range []string{"go.mod", "go.sum", "cmd", "internal", "pkg", "*.go", "**", "*"} {
		if patterns[p] {
			t.Errorf(".dockerignore excludes %s, which the image build needs", p)
		}
	}
}

// .env.example is generated from config.Variables; internal/config's
// TestGenerated and TestEnvExample keep it in agreement (make docs).

// ------------------------------------------------------- the real binary

// waitForFileContaining polls path until it holds want, or fails at the
// deadline.
func waitForFileContaining(t *testing.T, p, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not contain %q after %v; it holds:\n%s", p, want, timeout, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stopWithSIGTERM(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v; want status 0\n%s", err, p.out.String())
	}
}

func TestLogFileThroughBinary(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.txt")
	writeKeys(t, keys, testKeys...)
	logPath := filepath.Join(dir, "nested", "dir", "app.log")
	env := []string{
		"KEYS_FILE=" + keys,
		"LOG_ENABLE_FILE=true",
		"LOG_FILE_PATH=" + logPath,
		"OPENAI_BASE_URL=http://127.0.0.1:9",
		"MAX_RETRIES=1",
	}
	const started = "gpt-load started"

	// First run: a proxied request too, so that the file also gets the
	// access line and the upstream failure, where a key could leak.
	p := startBinary(t, env...)
	waitForFileContaining(t, logPath, started, 10*time.Second)
	resp, err := http.Post(p.url+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitForFileContaining(t, logPath, "/v1/chat/completions", 10*time.Second)
	stopWithSIGTERM(t, p)
	first, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}

	// Second run: the file is appended to, not truncated.
	p = startBinary(t, env...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Count(b, []byte(started)) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second start never logged to %s:\n%s", logPath, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopWithSIGTERM(t, p)

	if fi, err := os.Stat(filepath.Dir(logPath)); err != nil || !fi.IsDir() {
		t.Fatalf("log directory was not created: %v", err)
	}
	all, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(all, first) || len(all) <= len(first) {
		t.Errorf("second run did not append to the first run's log (first %d bytes, now %d)", len(first), len(all))
	}
	if n := bytes.Count(all, []byte(started)); n != 2 {
		t.Errorf("log file has %d startup lines; want 2 (one per run)", n)
	}
	if n := bytes.Count(all, []byte("stopped")); n != 2 {
		t.Errorf("log file has %d shutdown lines; want 2 (one per run)", n)
	}
	if bytes.Contains(all, []byte("\x1b[")) {
		t.Error("log file contains ANSI colour escapes")
	}
	for _, k := range testKeys {
		if bytes.Contains(all, []byte(k)) {
			t.Error("log file contains a raw key")
		}
	}
}

// TestDockerfileRuntimeSmoke runs the binary with the runtime stage's ENV
// (KEYS_FILE moved to a temporary file, as /app does not exist here) and
// fetches the HEALTHCHECK's URL, with PORT expanded, as wget would.
func TestDockerfileRuntimeSmoke(t *testing.T) {
	stages := parseDockerfile(t, readDeployFile(t, dockerfilePath))
	runtime := stages[len(stages)-1]
	keys := filepath.Join(t.TempDir(), "keys.txt")
	writeKeys(t, keys, testKeys...)
	var env []string
	for k, v := range dockerEnv(t, runtime) {
		if k == "KEYS_FILE" {
			v = keys
		}
		env = append(env, k+"="+v)
	}
	p := startBinary(t, append(env, "OPENAI_BASE_URL=http://127.0.0.1:9")...)
	port := p.url[strings.LastIndex(p.url, ":")+1:]

	m := healthURL.FindStringSubmatch(runtime.last(t, "HEALTHCHECK").args)
	if m == nil {
		t.Fatal("no health URL in HEALTHCHECK")
	}
	url := strings.Replace(m[0], fmt.Sprintf("${PORT:-%s}", m[2]), port, 1)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %d; want 200 (wget treats anything else as unhealthy)", url, resp.StatusCode)
	}
}
